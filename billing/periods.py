"""Billing days and months: where they begin, in the billing time zone.

The billing time zone is the active pricing schedule's (so peak hours, daily free credits
and monthly caps share one clock), else `BILLING_TIME_ZONE`. This module imports only
`billing.models` from the app, so the ledger, plans, pricing and reports can all use it
without importing one another for a time-zone helper.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings

from .models import PricingSchedule


def billing_time_zone(name: str | None = None) -> ZoneInfo:
    """Where billing days and months begin: the active schedule's zone, else the setting.
    `name`: the active schedule's zone when the caller has read it already."""
    if name is None:
        name = (
            PricingSchedule.objects.filter(is_active=True)
            .values_list("time_zone", flat=True)
            .first()
        )
    return ZoneInfo(name or settings.BILLING_TIME_ZONE)


def month_start(now: datetime, zone: ZoneInfo | None = None) -> datetime:
    """The start of `now`'s calendar month in the billing time zone (caps, team spend,
    queue fairness); `zone` when the caller has it already."""
    local = now.astimezone(zone or billing_time_zone())
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def day_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The billing day holding `now`: its local midnight and the next one (DST-safe)."""
    local = now.astimezone(billing_time_zone())
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=1, hours=2)).replace(hour=0)
    return start, end
