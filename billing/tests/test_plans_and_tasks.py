from __future__ import annotations

from datetime import datetime, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing import tasks
from billing.ledger import available_credits, get_wallet, grant_credits, place_hold
from billing.models import (
    CreditLot,
    CreditSource,
    Plan,
    Subscription,
    SubscriptionSource,
    SubscriptionStatus,
    Wallet,
)
from billing.plans import add_months, grant_period_credits, plan_for, start_subscription

SH = ZoneInfo("Asia/Shanghai")


def test_plan_for_falls_back_to_free_and_follows_the_subscription(acme, charlie, plans):
    assert plan_for(acme).slug == "free"
    start_subscription(acme, plans["pro"])
    assert plan_for(acme).slug == "pro"
    assert plan_for(Subscription.objects.get().workspace).queue_priority == 20
    charlie_ws = charlie.workspaces.get()
    assert plan_for(charlie_ws).slug == "free"


def test_plan_for_without_a_free_row_gives_nothing_away(acme):
    assert not Plan.objects.exists()
    plan = plan_for(acme)
    assert (plan.slug, plan.off_peak_allowed, plan.max_resolution) == ("free", False, "480p")


def test_plan_period_credits_are_granted_once_and_expire_at_period_end(acme, plans):
    sub = start_subscription(acme, plans["standard"])
    assert tasks.grant_plan_period_credits() == 1  # replay of the same period's grant
    lots = CreditLot.objects.filter(source=CreditSource.PLAN_PERIOD)
    assert [(lot.amount, lot.expires_at) for lot in lots] == [(660, sub.current_period_end)]
    assert get_wallet(acme).balance == 660


def test_period_grant_after_an_upgrade_mid_period_returns_the_original_grant(acme, plans):
    sub = start_subscription(acme, plans["standard"])
    original = CreditLot.objects.get(workspace=acme, source=CreditSource.PLAN_PERIOD)
    sub.plan = plans["pro"]  # what a payment-side upgrade does to the live subscription
    sub.save(update_fields=["plan"])
    assert grant_period_credits(sub) == original  # no IdempotencyConflict for the new amount
    tasks.grant_plan_period_credits()
    assert get_wallet(acme).balance == 660


# 2026-03-04 23:30 in Shanghai is 15:30 UTC; the users, workspaces and plans are made then.
@pytest.mark.frozen_at("2026-03-04T15:30:00+00:00")
def test_daily_free_credits_once_per_local_day_expiring_at_local_midnight(acme, charlie, plans):
    start_subscription(acme, plans["standard"])  # no daily free on Standard
    first = tasks.grant_daily_free_credits()
    assert tasks.grant_daily_free_credits() == 0
    lots = CreditLot.objects.filter(source=CreditSource.DAILY_FREE)
    workspaces = {lot.workspace_id for lot in lots}
    assert acme.pk not in workspaces and charlie.workspaces.get().pk in workspaces
    assert first == len(workspaces)
    assert {lot.expires_at for lot in lots} == {datetime(2026, 3, 5, 0, 0, tzinfo=SH)}
    with time_machine.travel(datetime(2026, 3, 4, 16, 30, tzinfo=ZoneInfo("UTC")), tick=False):
        assert tasks.expire_lots() == len(workspaces)
        assert tasks.grant_daily_free_credits() == len(workspaces)  # a new local day
        assert available_credits(charlie.workspaces.get()) == 20


def test_admin_subscription_rolls_over_and_old_credits_expire(acme, plans):
    start = timezone.now() - timedelta(days=40)
    sub = start_subscription(
        acme, plans["standard"], period_start=start, period_end=add_months(start)
    )
    assert get_wallet(acme).balance == 0  # that period is over; nothing to grant
    assert tasks.roll_over_subscriptions() == 1
    sub.refresh_from_db()
    assert sub.current_period_start <= timezone.now() < sub.current_period_end
    assert get_wallet(acme).balance == 660
    with time_machine.travel(sub.current_period_end + timedelta(minutes=1), tick=False):
        assert tasks.expire_lots() == 1
        assert tasks.roll_over_subscriptions() == 1
        assert get_wallet(acme).balance == 660
        assert CreditLot.objects.filter(source=CreditSource.PLAN_PERIOD).count() == 2


def test_cancel_at_period_end_ends_the_subscription(acme, plans):
    start = timezone.now() - timedelta(days=40)
    sub = start_subscription(
        acme, plans["pro"], period_start=start, period_end=start + timedelta(days=30)
    )
    Subscription.objects.filter(pk=sub.pk).update(cancel_at_period_end=True)
    tasks.roll_over_subscriptions()
    sub.refresh_from_db()
    assert sub.status == SubscriptionStatus.CANCELED
    assert plan_for(acme).slug == "free"


def test_payment_subscriptions_are_not_rolled_by_beat(acme, plans):
    start = timezone.now() - timedelta(days=40)
    sub = start_subscription(
        acme,
        plans["pro"],
        source=SubscriptionSource.PAYMENT,
        period_start=start,
        period_end=start + timedelta(days=30),
    )
    assert tasks.roll_over_subscriptions() == 0
    sub.refresh_from_db()
    assert sub.current_period_end < timezone.now()


def test_add_months_clamps_to_month_end():
    assert add_months(datetime(2026, 1, 31, tzinfo=SH)) == datetime(2026, 2, 28, tzinfo=SH)
    assert add_months(datetime(2026, 12, 15, tzinfo=SH)) == datetime(2027, 1, 15, tzinfo=SH)


def test_ledger_audit_is_clean_then_names_every_drifted_wallet(acme, charlie):
    grant_credits(acme, 50, source=CreditSource.PURCHASE, idempotency_key="a")
    place_hold(acme, 20, idempotency_key="h")
    other = charlie.workspaces.get()
    grant_credits(other, 5, source=CreditSource.PURCHASE, idempotency_key="c")
    out = StringIO()
    call_command("ledger_audit", stdout=out)
    assert "2 wallets, all consistent" in out.getvalue()

    Wallet.objects.filter(workspace=acme).update(balance=31)
    CreditLot.objects.filter(workspace=other).update(remaining=4)
    err = StringIO()
    with pytest.raises(CommandError) as exit_info:
        call_command("ledger_audit", stderr=err)
    assert exit_info.value.returncode == 1
    text = err.getvalue()
    assert f"wallet #{get_wallet(acme).pk}" in text and f"wallet #{get_wallet(other).pk}" in text
    assert "balance 31 ≠ sum of entries 30" in text
    assert "sum of lots' remaining 4" in text


def test_ledger_audit_flags_orphaned_holds(acme, settings):
    grant_credits(acme, 50, source=CreditSource.PURCHASE, idempotency_key="a")
    place_hold(acme, 20, idempotency_key="h")
    settings.BILLING_HOLD_ORPHAN_HOURS = 1
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        err = StringIO()
        with pytest.raises(CommandError):
            call_command("ledger_audit", stderr=err)
    assert "is orphaned" in err.getvalue()


def test_demo_seed_is_idempotent(db):
    from billing.demo import seed
    from billing.models import CreditPackage, RateCard
    from conftest import make_user
    from generation.models import VideoModel

    demo = make_user("demo@retake.local")
    seed(StringIO())
    seed(StringIO())
    assert Plan.objects.count() == 4 and CreditPackage.objects.count() == 3
    assert Plan.objects.get(slug="standard").prices == {"CNY": 6600, "USD": 999}
    assert RateCard.objects.count() == VideoModel.objects.count() >= 4
    workspace = demo.workspaces.get()
    assert plan_for(workspace).slug == "standard"
    assert get_wallet(workspace).balance == 660 + 500
