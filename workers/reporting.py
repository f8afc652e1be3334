"""Operations figures for upstream providers: how often each one delivers, how fast, and
what it costs against the credits its takes were charged.

`provider_stats(since)` feeds the operations page's provider table
(`templates/ops/_providers.html`). Times are from submission to the provider's result;
a job the provider turned away (429, 5xx, timeout: the take failed over) counts against its
success rate, a job the user canceled does not.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Sum

from .models import JobStatus, Provider, ProviderJob


@dataclass(frozen=True)
class ProviderStats:
    provider: Provider
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
    jobs = (
        ProviderJob.objects.dangerously_unscoped()
        .filter(submitted_at__gte=since)
        .exclude(status=JobStatus.CANCELED)
        .values_list("provider_id", "status", "submitted_at", "finished_at", "cost")
    )
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    durations: dict[int, list[float]] = defaultdict(list)
    costs: dict[int, Decimal] = defaultdict(Decimal)
    for provider_id, status, submitted_at, finished_at, cost in jobs:
        counts[provider_id][status] += 1
        costs[provider_id] += cost
        if status == JobStatus.SUCCEEDED and finished_at:
            durations[provider_id].append((finished_at - submitted_at).total_seconds())
    charged = dict(
        ProviderJob.objects.dangerously_unscoped()
        .filter(submitted_at__gte=since, status=JobStatus.SUCCEEDED)
        .order_by()
        .values("provider_id")
        .annotate(credits=Sum("take__charged"))
        .values_list("provider_id", "credits")
    )
    rows = []
    for provider in Provider.objects.filter(pk__in=counts).order_by("name"):
        seen = counts[provider.pk]
        finished = sum(seen[s] for s in (JobStatus.SUCCEEDED, JobStatus.FAILED,
                                         JobStatus.BLOCKED, JobStatus.FAILED_OVER))  # fmt: skip
        rows.append(
            ProviderStats(
                provider=provider,
                jobs=sum(seen.values()),
                succeeded=seen[JobStatus.SUCCEEDED],
                failed=seen[JobStatus.FAILED],
                blocked=seen[JobStatus.BLOCKED],
                failed_over=seen[JobStatus.FAILED_OVER],
                success_rate=seen[JobStatus.SUCCEEDED] / finished if finished else None,
                p50_seconds=percentile(durations[provider.pk], 0.50),
                p95_seconds=percentile(durations[provider.pk], 0.95),
                cost=costs[provider.pk],
                credits_charged=charged.get(provider.pk) or 0,
            )
        )
    return rows
