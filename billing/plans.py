"""Which plan a workspace is on, and the credits plans grant.

Plan-period credits are granted once per period (the key names the subscription and the
period start) and expire at the period's end. Daily free credits are granted once per
workspace per local day (in the billing time zone) and expire at that day's end.
Admin-sourced subscriptions roll over here; payment-sourced ones are moved by the payment
provider's webhooks, which call `renew_subscription` with the provider's period.
"""

from __future__ import annotations

import calendar
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Workspace

from .ledger import LedgerError, grant_credits
from .models import (
    LIVE_SUBSCRIPTION_STATUSES,
    CreditLot,
    CreditSource,
    Plan,
    Subscription,
    SubscriptionSource,
    SubscriptionStatus,
)
from .periods import billing_time_zone, day_bounds

# The plan of a workspace with no subscription when no "free" Plan row exists yet:
# the most restrictive entitlements, so a missing row never gives anything away.
BUILTIN_FREE_PLAN = dict(
    slug="free",
    name="Free",
    monthly_credits=0,
    daily_free_credits=0,
    max_concurrent_takes=1,
    queue_priority=0,
    max_resolution="480p",
    max_duration=5,
    max_takes_per_batch=1,
    watermark=True,
    off_peak_allowed=False,
    off_peak_free=False,
    api_access=False,
    team_seats=1,
    retention_days=7,
    prices={"CNY": 0, "USD": 0},
    is_active=True,
)


def free_plan() -> Plan:
    plan = Plan.objects.filter(slug=settings.BILLING_FREE_PLAN_SLUG).first()
    return plan or Plan(**BUILTIN_FREE_PLAN)


def live_subscription(workspace) -> Subscription | None:
    return (
        Subscription.objects.for_workspace(workspace)
        .filter(status__in=LIVE_SUBSCRIPTION_STATUSES)
        .select_related("plan")
        .first()
    )


def plan_for(workspace) -> Plan:
    """The live subscription's plan, else the Free plan."""
    subscription = live_subscription(workspace)
    return subscription.plan if subscription else free_plan()


def plans_for(workspace_ids) -> dict[int, Plan]:
    """Workspace id → its plan, as `plan_for` says, in one query (two if any is on Free).

    For the dispatcher, which weighs many workspaces at once.
    """
    ids = set(workspace_ids)
    result = {
        subscription.workspace_id: subscription.plan
        for subscription in Subscription.objects.dangerously_unscoped()
        .filter(workspace_id__in=ids, status__in=LIVE_SUBSCRIPTION_STATUSES)
        .select_related("plan")
    }
    if ids - result.keys():
        free = free_plan()
        result.update({workspace_id: free for workspace_id in ids - result.keys()})
    return result


def add_months(moment: datetime, months: int = 1) -> datetime:
    """Same day next month, clamped to the month's last day (Jan 31 → Feb 28)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def grant_period_credits(subscription: Subscription) -> CreditLot | None:
    """The plan's monthly credits for the subscription's current period (once)."""
    amount = subscription.plan.monthly_credits
    if not amount or subscription.status not in LIVE_SUBSCRIPTION_STATUSES:
        return None
    if subscription.current_period_end <= timezone.now():
        return None
    start = subscription.current_period_start
    key = f"plan_period:{subscription.pk}:{start.isoformat()}"
    # The period was granted already, perhaps under the plan it had before an upgrade (the
    # upgrade tops it up with its own lot): the period's grant stands as it was.
    granted = CreditLot.objects.for_workspace(subscription.workspace).filter(idempotency_key=key)
    if granted.exists():
        return granted.get()
    return grant_credits(
        subscription.workspace,
        amount,
        source=CreditSource.PLAN_PERIOD,
        idempotency_key=key,
        effective_at=min(start, timezone.now()),
        expires_at=subscription.current_period_end,
        reason=f"{subscription.plan.name} credits for the period from {start:%Y-%m-%d}",
    )


@transaction.atomic
def start_subscription(
    workspace,
    plan: Plan,
    *,
    source: str = SubscriptionSource.ADMIN,
    period_start: datetime | None = None,
    period_end: datetime | None = None,
    external_id: str = "",
) -> Subscription:
    """Put a workspace on a plan (ending any live subscription) and grant its credits."""
    if source not in SubscriptionSource.values:
        raise LedgerError(_("Unknown subscription source %(s)r.") % {"s": source})
    if not plan.is_active:
        raise LedgerError(_("The %(plan)s plan is not available.") % {"plan": plan.display_name})
    now = timezone.now()
    start = period_start or now
    end = period_end or add_months(start)
    if end <= start:
        raise LedgerError(_("The period must end after it starts."))
    Workspace.objects.select_for_update().filter(pk=workspace.pk).first()
    Subscription.objects.for_workspace(workspace).filter(
        status__in=LIVE_SUBSCRIPTION_STATUSES
    ).update(status=SubscriptionStatus.CANCELED, canceled_at=now)
    subscription = Subscription.objects.dangerously_unscoped().create(
        workspace=workspace,
        plan=plan,
        current_period_start=start,
        current_period_end=end,
        source=source,
        external_id=external_id,
    )
    grant_period_credits(subscription)
    return subscription


@transaction.atomic
def renew_subscription(
    subscription: Subscription, *, period_start: datetime, period_end: datetime
) -> Subscription:
    """Move a subscription to a new period and grant that period's credits (once)."""
    if period_end <= period_start:
        raise LedgerError(_("The period must end after it starts."))
    Subscription.objects.dangerously_unscoped().filter(pk=subscription.pk).update(
        current_period_start=period_start, current_period_end=period_end
    )
    subscription.refresh_from_db()
    grant_period_credits(subscription)
    return subscription


def roll_over_subscriptions(now: datetime | None = None) -> int:
    """Advance admin-sourced subscriptions whose period ended (or cancel them if asked)."""
    now = now or timezone.now()
    due = Subscription.objects.dangerously_unscoped().filter(
        source=SubscriptionSource.ADMIN,
        status__in=LIVE_SUBSCRIPTION_STATUSES,
        current_period_end__lte=now,
    )
    count = 0
    for pk in list(due.values_list("pk", flat=True)):
        with transaction.atomic():
            sub = (
                Subscription.objects.dangerously_unscoped()
                .select_for_update()
                .select_related("plan", "workspace")
                .get(pk=pk)
            )
            if sub.current_period_end > now or sub.status not in LIVE_SUBSCRIPTION_STATUSES:
                continue
            if sub.cancel_at_period_end:
                sub.status = SubscriptionStatus.CANCELED
                sub.canceled_at = now
                sub.save(update_fields=["status", "canceled_at", "updated_at"])
            else:
                start, end = sub.current_period_start, sub.current_period_end
                while end <= now:
                    start, end = end, add_months(end)
                sub.current_period_start, sub.current_period_end = start, end
                sub.save(update_fields=["current_period_start", "current_period_end", "updated_at"])
                grant_period_credits(sub)
            count += 1
    return count


def grant_plan_period_credits(now: datetime | None = None) -> int:
    """Make sure every live subscription has its current period's credits."""
    now = now or timezone.now()
    granted = 0
    live = (
        Subscription.objects.dangerously_unscoped()
        .filter(
            status__in=LIVE_SUBSCRIPTION_STATUSES,
            current_period_start__lte=now,
            current_period_end__gt=now,
            plan__monthly_credits__gt=0,
        )
        .select_related("plan", "workspace")
    )
    for subscription in live:
        if grant_period_credits(subscription) is not None:
            granted += 1
    return granted


def grant_daily_free(workspace, plan: Plan, *, now: datetime | None = None) -> CreditLot | None:
    """Today's free credits for one personal workspace (once per local day, expiring at
    midnight). Teams get none: free credits are per person, not per workspace made."""
    if not plan.daily_free_credits:
        return None
    if not Workspace.objects.filter(pk=workspace.pk, is_personal=True).exists():
        return None
    now = now or timezone.now()
    day_start, day_end = day_bounds(now)
    local = day_start
    return grant_credits(
        workspace,
        plan.daily_free_credits,
        source=CreditSource.DAILY_FREE,
        idempotency_key=f"daily_free:{workspace.pk}:{local.date().isoformat()}",
        effective_at=day_start,
        expires_at=day_end,
        reason=f"Daily free credits for {local.date().isoformat()}",
    )


def grant_daily_free_credits(now: datetime | None = None) -> int:
    """Daily free credits for every personal workspace whose plan includes them (one per
    user: a user has one personal workspace); returns new grants."""
    now = now or timezone.now()
    today = now.astimezone(billing_time_zone()).date().isoformat()
    live = {
        s.workspace_id: s.plan
        for s in Subscription.objects.dangerously_unscoped()
        .filter(status__in=LIVE_SUBSCRIPTION_STATUSES)
        .select_related("plan")
    }
    free = free_plan()
    done = {
        key.split(":")[1]
        for key in CreditLot.objects.dangerously_unscoped()
        .filter(source=CreditSource.DAILY_FREE, idempotency_key__endswith=f":{today}")
        .values_list("idempotency_key", flat=True)
    }
    granted = 0
    personal = Workspace.objects.filter(is_personal=True).order_by("pk")
    for workspace_id in personal.values_list("pk", flat=True).iterator():
        plan = live.get(workspace_id, free)
        if not plan.daily_free_credits or str(workspace_id) in done:
            continue
        grant_daily_free(Workspace(pk=workspace_id), plan, now=now)
        granted += 1
    return granted
