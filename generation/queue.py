"""The queue's order: one function for the dispatcher and for the positions creators see.

Queued takes are taken by plan priority class, then the workspace with the least usage
this billing period (seconds dispatched since `billing.periods.month_start`), then age. Off-peak
takes are eligible only inside an off-peak window. `queue_positions` numbers the eligible
queued takes in exactly that order, in one query for any number of takes, so the "#3 in
queue" on a card is the place the dispatcher will give it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import connection
from django.db.models import F, OuterRef, QuerySet, Subquery, Window
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone

from billing import periods, pricing

from .models import Take, TakeStatus, WorkspaceUsage

ORDER = ("-priority", "usage", "created_at", "id")


def _ordering() -> list:
    return [
        F("priority").desc(),
        F("usage").asc(),
        F("created_at").asc(),
        F("id").asc(),
    ]


def with_usage(queryset: QuerySet, now: datetime) -> QuerySet:
    """Annotate each take with its workspace's seconds dispatched this period (the
    `WorkspaceUsage` counter: one index lookup per row, not a sum over the period)."""
    usage = WorkspaceUsage.objects.dangerously_unscoped().filter(
        workspace=OuterRef("workspace"), period_start=periods.month_start(now)
    )
    return queryset.annotate(usage=Coalesce(Subquery(usage.values("seconds")[:1]), 0))


def record_usage(take: Take, now: datetime, previously_dispatched_at: datetime | None) -> None:
    """Count a take the dispatcher just sent in its workspace's usage of the period, once:
    a retry in the same period (it was dispatched since the period began) adds nothing."""
    period = periods.month_start(now)
    if previously_dispatched_at is not None and previously_dispatched_at >= period:
        return
    table = connection.ops.quote_name(WorkspaceUsage._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (workspace_id, period_start, seconds) VALUES (%s, %s, %s) "  # noqa: S608
            f"ON CONFLICT (workspace_id, period_start) "
            f"DO UPDATE SET seconds = {table}.seconds + excluded.seconds",
            [
                take.workspace_id,
                connection.ops.adapt_datetimefield_value(period),
                take.duration_seconds,
            ],
        )


def queue_order(queryset: QuerySet, now: datetime) -> QuerySet:
    """Priority class, then the workspace with least usage this period, then age."""
    return with_usage(queryset, now).order_by(*ORDER)


def eligible_queued(now: datetime) -> QuerySet:
    """Queued takes allowed to start now (off-peak ones only inside an off-peak window)."""
    queryset = Take.objects.dangerously_unscoped().filter(status=TakeStatus.QUEUED)
    if not pricing.is_off_peak(now):
        queryset = queryset.exclude(mode=pricing.Mode.OFF_PEAK)
    return queryset


def queue_positions(takes: Iterable[Take], now: datetime | None = None) -> dict:
    """Take id → 1-based place in the dispatcher's order, for the queued ones among `takes`
    that may start now (an off-peak take outside a window has none). One query."""
    ids = [take.pk for take in takes if take.status == TakeStatus.QUEUED]
    if not ids:
        return {}
    now = now or timezone.now()
    numbered = with_usage(eligible_queued(now), now).annotate(
        position=Window(RowNumber(), order_by=_ordering())
    )
    # Number the whole eligible queue, then pick ours: a filter on the same query would
    # number only the picked rows (SQL applies WHERE before window functions).
    inner, params = numbered.order_by().values_list("pk", "position").query.sql_with_params()
    field = Take._meta.pk
    keys = [field.get_db_prep_value(pk, connection) for pk in ids]
    marks = ", ".join(["%s"] * len(keys))
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT q."pk", q."position" FROM ({inner}) q WHERE q."pk" IN ({marks})',  # noqa: S608
            [*params, *keys],
        )
        return {field.to_python(pk): position for pk, position in cursor.fetchall()}


def queue_position(take: Take, now: datetime | None = None) -> int | None:
    return queue_positions([take], now).get(take.pk)
