"""Figures for the operations page: queues, take states, nodes, and the last day by hour.

Read-only and platform-wide (staff only), so queries here are deliberately unscoped.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count
from django.utils import timezone

from billing.models import Plan
from generation.models import Node, Take, TakeStatus

from .dispatch import takes_on_nodes

HOURS = 24


def queue_depth_by_class() -> list[dict]:
    """Queued takes per priority class, highest class first, named by the plans in it."""
    names = defaultdict(list)
    for priority, name in Plan.objects.values_list("queue_priority", "name"):
        names[priority].append(name)
    rows = (
        Take.objects.dangerously_unscoped()
        .filter(status=TakeStatus.QUEUED)
        .order_by()
        .values("priority")
        .annotate(n=Count("pk"))
    )
    depth = {row["priority"]: row["n"] for row in rows}
    classes = sorted(set(depth) | set(names), reverse=True)
    return [
        {
            "priority": p,
            "label": " / ".join(names.get(p, [])) or str(p),
            "queued": depth.get(p, 0),
        }
        for p in classes
    ]


def takes_by_state(*, now: datetime | None = None) -> list[dict]:
    """Takes per state: everything in flight, and what ended in the last day."""
    now = now or timezone.now()
    since = now - timedelta(hours=HOURS)
    counts = dict(
        Take.objects.dangerously_unscoped()
        .exclude(
            status__in=[
                TakeStatus.SUCCEEDED,
                TakeStatus.FAILED,
                TakeStatus.CANCELED,
                TakeStatus.EXPIRED,
            ],
            finished_at__lt=since,
        )
        .order_by()
        .values("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return [
        {"status": value, "label": label, "count": counts.get(value, 0)}
        for value, label in TakeStatus.choices
    ]


def node_status() -> list[dict]:
    """Each node: state, last health answer, slots in use and utilization."""
    nodes = list(Node.objects.select_related("pool"))
    busy = takes_on_nodes([n.pk for n in nodes])
    return [
        {
            "node": node,
            "busy": busy.get(node.pk, 0),
            "utilization": round(100 * busy.get(node.pk, 0) / node.slots) if node.slots else 0,
        }
        for node in nodes
    ]


@dataclass(frozen=True)
class Hour:
    start: datetime
    charged: int
    gpu_cost: Decimal
    gpu_seconds: float


def last_day_by_hour(*, now: datetime | None = None) -> list[Hour]:
    """Credits charged and estimated GPU cost (node seconds × node cost) per hour, oldest first.

    A take counts in the hour it finished; failed takes cost GPU time but charge nothing.
    """
    now = now or timezone.now()
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)
    charged: dict[datetime, int] = defaultdict(int)
    cost: dict[datetime, Decimal] = defaultdict(Decimal)
    seconds: dict[datetime, float] = defaultdict(float)
    rows = (
        Take.objects.dangerously_unscoped()
        .filter(finished_at__gte=first)
        .values_list("finished_at", "dispatched_at", "charged", "node__cost_per_gpu_second")
    )
    for finished, dispatched, credits, rate in rows.iterator():
        hour = finished.replace(minute=0, second=0, microsecond=0)
        charged[hour] += credits
        if dispatched is not None:
            busy = max(0.0, (finished - dispatched).total_seconds())
            seconds[hour] += busy
            cost[hour] += Decimal(str(busy)) * (rate or Decimal(0))
    return [
        Hour(
            start=first + timedelta(hours=i),
            charged=charged[first + timedelta(hours=i)],
            gpu_cost=cost[first + timedelta(hours=i)].quantize(Decimal("0.01")),
            gpu_seconds=seconds[first + timedelta(hours=i)],
        )
        for i in range(HOURS)
    ]


def hourly_chart(hours: list[Hour], *, width: int = 720, height: int = 220) -> dict:
    """Bar geometry for the inline SVG chart: charged credits and GPU cost side by side."""
    pad_left, pad_bottom, pad_top = 40, 24, 10
    plot_w, plot_h = width - pad_left - 8, height - pad_bottom - pad_top
    top = max([1, *(h.charged for h in hours), *(float(h.gpu_cost) for h in hours)])
    slot = plot_w / max(1, len(hours))
    bar = max(1.0, slot / 2 - 1)
    bars = []
    for i, h in enumerate(hours):
        x = pad_left + i * slot
        ch = plot_h * h.charged / top
        gh = plot_h * float(h.gpu_cost) / top
        bars.append(
            {
                "hour": h,
                "x1": round(x, 1),
                "x2": round(x + bar, 1),
                "w": round(bar, 1),
                "y1": round(pad_top + plot_h - ch, 1),
                "h1": round(ch, 1),
                "y2": round(pad_top + plot_h - gh, 1),
                "h2": round(gh, 1),
                "label": timezone.localtime(h.start).strftime("%H") if i % 3 == 0 else "",
                "lx": round(x + slot / 2, 1),
            }
        )
    return {
        "width": width,
        "height": height,
        "bars": bars,
        "top": round(top, 2),
        "base_y": pad_top + plot_h,
        "top_y": pad_top,
        "left": pad_left,
        "right": width - 8,
        "label_y": height - 6,
    }
