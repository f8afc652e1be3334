"""The queue's order: one function for the dispatcher and for the positions creators see.

Queued takes are taken by plan priority class, then the workspace with the least usage
this billing period (seconds dispatched since `billing.periods.month_start`), then age. Off-peak
takes are eligible only inside an off-peak window. `queue_positions` numbers the eligible
queued takes in exactly that order, in one query for any number of takes, so the "#3 in
queue" on a card is the place the dispatcher will give it.

The usage is the `WorkspaceUsage` counter; each take carries a copy of its workspace's
(`Take.queue_usage`, of the period `Take.queue_period`) so a claim reads the queue in order
from one index (`take_queue`) however long it is. The copy is made at submission
(`usage_key`); `record_usage` updates the workspace's live takes (queued or in flight) in
the statement that counts a dispatch, under the workspace's row lock the claim holds; and
`refresh_keys`, run before every claim, recomputes the queued takes whose copy is of
another period or missing (after a month turns; takes made elsewhere). The positions read
the copy where it is of the current period and the counter otherwise, which is what
`refresh_keys` makes the copy before the claim reads it, so "#3 in queue" stays the place
the claim gives it. (A take submitted while its workspace's dispatch is committing may keep
the usage from before that dispatch until the workspace's next one: both the positions and
the claims read that same key.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Case, F, OuterRef, QuerySet, Subquery, When, Window
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone

from billing import periods, pricing

from .models import IN_FLIGHT, Take, TakeStatus, WorkspaceUsage

ORDER = ("-priority", "queue_usage", "created_at", "id")
NOT_READ = object()
# Takes whose sort key moves with their workspace's usage: queued ones, and in-flight ones
# (which may be put back in the queue).
LIVE = (TakeStatus.QUEUED, *IN_FLIGHT)


def _usage_of_workspace(period: datetime) -> Subquery:
    """The take's workspace's seconds of `period` (the `WorkspaceUsage` counter), 0 if none."""
    usage = WorkspaceUsage.objects.dangerously_unscoped().filter(
        workspace=OuterRef("workspace"), period_start=period
    )
    return Coalesce(Subquery(usage.values("seconds")[:1]), 0)


def with_usage(queryset: QuerySet, now: datetime) -> QuerySet:
    """Annotate each take with its workspace's seconds dispatched this period: its copy
    when that is of this period, else the counter (what `refresh_keys` will copy)."""
    period = periods.month_start(now)
    return queryset.annotate(
        usage=Case(
            When(queue_period=period, then=F("queue_usage")),
            default=_usage_of_workspace(period),
        )
    )


def usage_key(workspace_id, now: datetime) -> tuple[int, datetime]:
    """(usage, period) a take the workspace submits now is queued with. One query when the
    workspace's latest counter is of a period that began less than 28 days ago (it is then
    this month's: no month is shorter), a second one (the billing time zone) otherwise."""
    latest = (
        WorkspaceUsage.objects.dangerously_unscoped()
        .filter(workspace_id=workspace_id)
        .order_by("-period_start")
        .values_list("seconds", "period_start")
        .first()
    )
    if latest is not None and latest[1] <= now < latest[1] + timedelta(days=28):
        return latest
    period = periods.month_start(now)
    return (latest[0] if latest is not None and latest[1] == period else 0), period


# (now, period) of the claim under way: its usage is counted in the period its queue was
# read in, without asking for the billing time zone again.
_claim: ContextVar[tuple[datetime, datetime] | None] = ContextVar("queue_claim", default=None)


@contextmanager
def claiming(now: datetime, period: datetime) -> Iterator[None]:
    """Within a claim at `now` whose queue was read in `period` (`refresh_keys`)."""
    token = _claim.set((now, period))
    try:
        yield
    finally:
        _claim.reset(token)


def _period(now: datetime) -> datetime:
    held = _claim.get()
    return held[1] if held is not None and held[0] == now else periods.month_start(now)


def refresh_keys(now: datetime, period: datetime | None = None) -> datetime:
    """Recompute the sort key of queued takes whose copy is of another period or missing
    (none but after a month turned or takes made elsewhere: one probe of the
    `take_queue_key` index). Takes another transaction holds are left (SKIP LOCKED), so
    a claim never waits here. Returns the period (`period`: the caller's, when it knows it
    already). Plain SQL: it runs before every claim."""
    period = period or periods.month_start(now)
    value = connection.ops.adapt_datetimefield_value(period)
    takes = connection.ops.quote_name(Take._meta.db_table)
    usage = connection.ops.quote_name(WorkspaceUsage._meta.db_table)
    stale = (
        f"SELECT id FROM {takes} WHERE status = %s AND (queue_period IS NULL "  # noqa: S608
        f"OR queue_period < %s OR queue_period > %s)"
    )
    if connection.features.has_select_for_update_skip_locked:
        stale += " FOR UPDATE SKIP LOCKED"
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {takes} SET queue_period = %s, queue_usage = COALESCE("  # noqa: S608
            f"(SELECT u.seconds FROM {usage} u WHERE u.workspace_id = {takes}.workspace_id "
            f"AND u.period_start = %s), 0) WHERE id IN ({stale})",
            [value, value, TakeStatus.QUEUED.value, value, value],
        )
    return period


def record_usage(take: Take, now: datetime, previously_dispatched_at: datetime | None) -> None:
    """Count a take the dispatcher just sent in its workspace's usage of the period, once:
    a retry in the same period (it was dispatched since the period began) adds nothing.
    The workspace's live takes get the new usage as their sort key (the caller holds the
    workspace's row lock, so two claims never interleave here)."""
    period = _period(now)
    if previously_dispatched_at is not None and previously_dispatched_at >= period:
        return
    table = connection.ops.quote_name(WorkspaceUsage._meta.db_table)
    takes = connection.ops.quote_name(Take._meta.db_table)
    value = connection.ops.adapt_datetimefield_value(period)
    count = (
        f"INSERT INTO {table} (workspace_id, period_start, seconds) VALUES (%s, %s, %s) "  # noqa: S608
        f"ON CONFLICT (workspace_id, period_start) "
        f"DO UPDATE SET seconds = {table}.seconds + excluded.seconds RETURNING seconds"
    )
    live = f"WHERE workspace_id = %s AND status IN ({', '.join(['%s'] * len(LIVE))})"  # noqa: S608
    counted = [take.workspace_id, value, take.duration_seconds]
    keyed = [take.workspace_id, *(status.value for status in LIVE)]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # one round trip: the count feeds the keys
            cursor.execute(
                f"WITH counted AS ({count}) UPDATE {takes} SET queue_period = %s, "  # noqa: S608
                f"queue_usage = (SELECT seconds FROM counted) {live}",
                [*counted, value, *keyed],
            )
            return
        cursor.execute(count, counted)
        (seconds,) = cursor.fetchone()
        cursor.execute(
            f"UPDATE {takes} SET queue_period = %s, queue_usage = %s {live}",  # noqa: S608
            [value, seconds, *keyed],
        )


def queue_order(queryset: QuerySet, period: datetime) -> QuerySet:
    """Priority class, then the workspace with least usage this period, then age: the
    `take_queue` index's order. Takes whose key is not of `period` (which `refresh_keys`
    returned) are left out: another transaction is refreshing them."""
    return queryset.filter(queue_period=period).order_by(*ORDER)


def eligible_queued(now: datetime, schedule=NOT_READ) -> QuerySet:
    """Queued takes allowed to start now (off-peak ones only inside an off-peak window).
    `schedule`: the active pricing schedule (`pricing.active_schedule()`) if read already."""
    queryset = Take.objects.dangerously_unscoped().filter(status=TakeStatus.QUEUED)
    if schedule is NOT_READ:
        schedule = pricing.active_schedule()
    if pricing.current_window(schedule, now)[0] != pricing.WindowKind.OFF_PEAK:
        queryset = queryset.exclude(mode=pricing.Mode.OFF_PEAK)
    return queryset


def queue_positions(takes: Iterable[Take], now: datetime | None = None) -> dict:
    """Take id → 1-based place in the dispatcher's order, for the queued ones among `takes`
    that may start now (an off-peak take outside a window has none). One query."""
    ids = [take.pk for take in takes if take.status == TakeStatus.QUEUED]
    if not ids:
        return {}
    now = now or timezone.now()
    ordering = [F("priority").desc(), F("usage").asc(), F("created_at").asc(), F("id").asc()]
    numbered = with_usage(eligible_queued(now), now).annotate(
        position=Window(RowNumber(), order_by=ordering)
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
