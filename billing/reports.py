"""Read-only views of a wallet for people: lots, holds, ledger history, usage this period.

Nothing here writes; the ledger's own functions do. Every query is scoped to the workspace.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, time

from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from .models import CreditLot, EntryKind, Hold, HoldStatus, LedgerEntry
from .periods import billing_time_zone, month_start
from .plans import live_subscription, plan_for


def live_lots(workspace, *, now: datetime | None = None) -> QuerySet[CreditLot]:
    """Lots with credits left and not expired, in the order they are spent."""
    now = now or timezone.now()
    return (
        CreditLot.objects.for_workspace(workspace)
        .filter(remaining__gt=0, expired_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    )


def pending_holds(workspace) -> QuerySet[Hold]:
    """Credits reserved for takes that have not finished yet."""
    return Hold.objects.for_workspace(workspace).filter(status=HoldStatus.PENDING)


@dataclass(frozen=True)
class LedgerFilter:
    kind: str = ""
    since: date | None = None
    until: date | None = None

    @classmethod
    def from_query(cls, query) -> LedgerFilter:
        """Parse ?kind=&since=&until=; unknown or malformed values are ignored."""
        kind = query.get("kind", "")
        return cls(
            kind=kind if kind in EntryKind.values else "",
            since=_date(query.get("since")),
            until=_date(query.get("until")),
        )


def _date(raw) -> date | None:
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def ledger_entries(workspace, flt: LedgerFilter) -> QuerySet[LedgerEntry]:
    """The wallet's entries, newest first, filtered by kind and local calendar dates."""
    tz = billing_time_zone()
    entries = LedgerEntry.objects.for_workspace(workspace).select_related("hold", "lot", "actor")
    if flt.kind:
        entries = entries.filter(kind=flt.kind)
    if flt.since:
        entries = entries.filter(created_at__gte=datetime.combine(flt.since, time.min, tz))
    if flt.until:
        entries = entries.filter(created_at__lte=datetime.combine(flt.until, time.max, tz))
    return entries.order_by("-created_at", "-id")


def charge_of(entry: LedgerEntry) -> int:
    """Credits a settle entry charged: what left both the balance and the held credits."""
    if entry.kind != EntryKind.SETTLE:
        return 0
    return -(entry.amount + entry.held_delta)


CSV_COLUMNS = ["time", "kind", "amount", "held_change", "charged", "balance_after", "reason"]


def ledger_csv(entries) -> str:
    """The entries as CSV (UTC ISO times), for spreadsheets and accountants."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        writer.writerow(
            [
                entry.created_at.isoformat(),
                entry.kind,
                entry.amount,
                entry.held_delta,
                charge_of(entry),
                entry.balance_after,
                _safe_cell(entry.reason),
            ]
        )
    return out.getvalue()


def _safe_cell(text: str) -> str:
    """Keep a spreadsheet from reading a reason as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


@dataclass(frozen=True)
class PeriodUsage:
    plan: object
    subscription: object
    start: datetime
    end: datetime | None
    charged: int
    takes: int


def usage_this_period(workspace, *, now: datetime | None = None) -> PeriodUsage:
    """Credits charged and takes charged since the plan period (or calendar month) began."""
    now = now or timezone.now()
    subscription = live_subscription(workspace)
    if subscription is not None:
        start, end = subscription.current_period_start, subscription.current_period_end
    else:
        start, end = month_start(now), None
    figures = (
        Hold.objects.for_workspace(workspace)
        .filter(status=HoldStatus.SETTLED, closed_at__gte=start)
        .aggregate(charged=Sum("charged"), takes=Count("id"))
    )
    start = start.astimezone(billing_time_zone())
    return PeriodUsage(
        plan=plan_for(workspace),
        subscription=subscription,
        start=start,
        end=end,
        charged=figures["charged"] or 0,
        takes=figures["takes"] or 0,
    )
