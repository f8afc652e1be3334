"""Operations figures per place a take can run — each upstream provider and each GPU node:
how often its attempts deliver, how fast, and what they cost against the credits their
takes were charged. Both come from the attempt records (`ProviderJob`).

`provider_stats(since)` and `node_stats(since)` feed the operations page's provider and
node tables (`templates/ops/_providers.html`, `_node_attempts.html`, both the one table
of `_attempt_stats.html`). Times are from
submission to the result; an attempt turned away (429, 5xx, timeout, a node that went
silent: the take moved on) counts against the success rate, one the user canceled does not.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Sum

from generation.models import Node

from .models import JobStatus, Provider, ProviderJob


@dataclass(frozen=True)
class ProviderStats:
    """One provider's (or node's: `provider` is then the `Node`) attempts in a period."""

    provider: Provider | Node
    jobs: int
    succeeded: int
    failed: int
    blocked: int
    failed_over: int
    success_rate: float | None
    p50_seconds: float | None
    p95_seconds: float | None
    cost: Decimal
    credits_charged: int

    @property
    def margin(self) -> Decimal:
        """Credits charged minus what the provider cost, in credits."""
        return Decimal(self.credits_charged) - self.cost


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (`share` in 0–1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def provider_stats(since: datetime) -> list[ProviderStats]:
    """One row per provider with jobs submitted since `since`, by name."""
    return _stats("provider_id", Provider.objects.all(), since)


def node_stats(since: datetime) -> list[ProviderStats]:
    """One row per GPU node with attempts sent since `since`, by name."""
    return _stats("node_id", Node.objects.all(), since)


def _stats(field: str, targets, since: datetime) -> list[ProviderStats]:
    jobs = (
        ProviderJob.objects.dangerously_unscoped()
        .filter(submitted_at__gte=since, **{f"{field}__isnull": False})
        .exclude(status=JobStatus.CANCELED)
        .values_list(field, "status", "submitted_at", "finished_at", "cost")
    )
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    durations: dict[int, list[float]] = defaultdict(list)
    costs: dict[int, Decimal] = defaultdict(Decimal)
    for target_id, status, submitted_at, finished_at, cost in jobs:
        counts[target_id][status] += 1
        costs[target_id] += cost
        if status == JobStatus.SUCCEEDED and finished_at:
            durations[target_id].append((finished_at - submitted_at).total_seconds())
    charged = dict(
        ProviderJob.objects.dangerously_unscoped()
        .filter(submitted_at__gte=since, status=JobStatus.SUCCEEDED, **{f"{field}__isnull": False})
        .order_by()
        .values(field)
        .annotate(credits=Sum("take__charged"))
        .values_list(field, "credits")
    )
    rows = []
    for target in targets.filter(pk__in=counts).order_by("name"):
        seen = counts[target.pk]
        finished = sum(seen[s] for s in (JobStatus.SUCCEEDED, JobStatus.FAILED,
                                         JobStatus.BLOCKED, JobStatus.FAILED_OVER))  # fmt: skip
        rows.append(
            ProviderStats(
                provider=target,
                jobs=sum(seen.values()),
                succeeded=seen[JobStatus.SUCCEEDED],
                failed=seen[JobStatus.FAILED],
                blocked=seen[JobStatus.BLOCKED],
                failed_over=seen[JobStatus.FAILED_OVER],
                success_rate=seen[JobStatus.SUCCEEDED] / finished if finished else None,
                p50_seconds=percentile(durations[target.pk], 0.50),
                p95_seconds=percentile(durations[target.pk], 0.95),
                cost=costs[target.pk],
                credits_charged=charged.get(target.pk) or 0,
            )
        )
    return rows
