from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Membership
from billing import ledger
from billing.ledger import (
    IdempotencyConflict,
    InsufficientCredits,
    LedgerError,
    SpendingCapExceeded,
    adjust_credits,
    audit_wallets,
    expire_lots,
    get_wallet,
    grant_credits,
    place_hold,
    release_hold,
    settle_hold,
)
from billing.models import (
    AppendOnlyError,
    Consumption,
    CreditLot,
    CreditSource,
    EntryKind,
    Hold,
    HoldStatus,
    LedgerEntry,
)

# Every test runs on both implementations of hold and settle (see conftest.ledger_path).
pytestmark = pytest.mark.usefixtures("ledger_path")


def snapshot(workspace):
    wallet = get_wallet(workspace)
    return (
        wallet.balance,
        wallet.held,
        LedgerEntry.objects.count(),
        CreditLot.objects.count(),
        Hold.objects.count(),
        list(CreditLot.objects.order_by("pk").values_list("remaining", flat=True)),
    )


@pytest.fixture
def funded(acme):
    grant_credits(acme, 100, source=CreditSource.PURCHASE, idempotency_key="buy-1")
    return acme


def test_grant_creates_lot_entry_and_balance(acme, charlie):
    lot = grant_credits(acme, 50, source=CreditSource.PROMOTION, idempotency_key="g1")
    wallet = get_wallet(acme)
    assert (wallet.balance, lot.remaining, lot.priority) == (50, 50, 30)
    entry = LedgerEntry.objects.get(kind=EntryKind.GRANT, idempotency_key="g1")
    assert (entry.amount, entry.balance_after, entry.lot) == (50, 50, lot)
    assert audit_wallets() == []


def test_hold_then_settle_charges_at_most_the_hold_and_returns_the_rest(funded, bob):
    hold = place_hold(funded, 30, idempotency_key="h1", member=bob)
    wallet = get_wallet(funded)
    assert (wallet.balance, wallet.held) == (70, 30)
    hold = settle_hold(hold, 45, idempotency_key="s1")
    wallet.refresh_from_db()
    assert (hold.status, hold.charged) == (HoldStatus.SETTLED, 30)
    assert (wallet.balance, wallet.held) == (70, 0)
    hold2 = place_hold(funded, 20, idempotency_key="h2")
    settle_hold(hold2.pk, 12, idempotency_key="s2")
    wallet.refresh_from_db()
    assert wallet.balance == 58
    assert sum(c.amount for c in Consumption.objects.filter(hold=hold2)) == 12
    assert audit_wallets() == []


def test_release_returns_everything(funded):
    hold = place_hold(funded, 40, idempotency_key="h1")
    hold = release_hold(hold, idempotency_key="r1", reason="take failed")
    wallet = get_wallet(funded)
    assert (hold.status, hold.charged, wallet.balance, wallet.held) == ("released", 0, 100, 0)
    assert audit_wallets() == []


def test_replaying_each_action_with_the_same_key_changes_nothing(funded, staff):
    grant_credits(funded, 100, source=CreditSource.PURCHASE, idempotency_key="buy-1")
    hold = place_hold(funded, 10, idempotency_key="h1")
    before = snapshot(funded)
    assert place_hold(funded, 10, idempotency_key="h1").pk == hold.pk
    assert snapshot(funded) == before
    settle_hold(hold, 5, idempotency_key="s1")
    before = snapshot(funded)
    assert settle_hold(hold, 5, idempotency_key="s1").charged == 5
    assert snapshot(funded) == before
    other = place_hold(funded, 10, idempotency_key="h2")
    release_hold(other, idempotency_key="r2")
    before = snapshot(funded)
    release_hold(other, idempotency_key="r2")
    assert snapshot(funded) == before
    adjust_credits(funded, 7, actor=staff, reason="goodwill", idempotency_key="a1")
    before = snapshot(funded)
    adjust_credits(funded, 7, actor=staff, reason="goodwill", idempotency_key="a1")
    assert snapshot(funded) == before


def test_same_key_with_different_parameters_conflicts(funded):
    place_hold(funded, 10, idempotency_key="h1")
    with pytest.raises(IdempotencyConflict):
        place_hold(funded, 11, idempotency_key="h1")
    with pytest.raises(IdempotencyConflict):
        grant_credits(funded, 99, source=CreditSource.PURCHASE, idempotency_key="buy-1")


def test_insufficient_credits_refuses_and_changes_nothing(funded):
    before = snapshot(funded)
    with pytest.raises(InsufficientCredits) as info:
        place_hold(funded, 101, idempotency_key="h1")
    assert (info.value.needed, info.value.available) == (101, 100)
    assert "101" in str(info.value)
    assert snapshot(funded) == before


@pytest.mark.parametrize("amount", [0, -5, 1.5, True])
def test_bad_amounts_are_refused_and_change_nothing(funded, amount):
    before = snapshot(funded)
    with pytest.raises(LedgerError):
        grant_credits(funded, amount, source=CreditSource.PURCHASE, idempotency_key="x")
    with pytest.raises(LedgerError):
        place_hold(funded, amount, idempotency_key="y")
    assert snapshot(funded) == before


def test_unknown_source_is_refused(funded):
    before = snapshot(funded)
    with pytest.raises(LedgerError, match="Unknown credit source"):
        grant_credits(funded, 5, source="gift", idempotency_key="x")
    assert snapshot(funded) == before


def test_member_spending_cap_is_enforced_at_hold_time(funded, bob, alice):
    Membership.objects.filter(workspace=funded, user=bob).update(monthly_spend_cap=25)
    hold = place_hold(funded, 20, idempotency_key="h1", member=bob)
    settle_hold(hold, 15, idempotency_key="s1")
    place_hold(funded, 10, idempotency_key="h2", member=bob)
    before = snapshot(funded)
    with pytest.raises(SpendingCapExceeded) as info:
        place_hold(funded, 1, idempotency_key="h3", member=bob)
    assert (info.value.cap, info.value.spent, info.value.needed) == (25, 25, 1)
    assert "cap" in str(info.value)
    assert snapshot(funded) == before
    place_hold(funded, 50, idempotency_key="h4", member=alice)


def test_outsider_cannot_spend_from_a_workspace(funded, charlie):
    with pytest.raises(LedgerError, match="not a member"):
        place_hold(funded, 1, idempotency_key="h1", member=charlie)


def test_lots_are_consumed_by_priority_then_expiry(acme):
    now = timezone.now()
    grant_credits(acme, 10, source=CreditSource.PURCHASE, idempotency_key="buy")
    grant_credits(
        acme,
        10,
        source=CreditSource.PROMOTION,
        idempotency_key="promo-late",
        expires_at=now + timedelta(days=9),
    )
    grant_credits(
        acme,
        10,
        source=CreditSource.PROMOTION,
        idempotency_key="promo-soon",
        expires_at=now + timedelta(days=2),
    )
    grant_credits(
        acme,
        5,
        source=CreditSource.DAILY_FREE,
        idempotency_key="daily",
        expires_at=now + timedelta(hours=5),
    )
    hold = place_hold(acme, 22, idempotency_key="h")
    taken = {a.lot.idempotency_key: a.amount for a in hold.allocations.all()}
    assert taken == {"daily": 5, "promo-soon": 10, "promo-late": 7}


def test_expiry_cannot_break_an_existing_hold(acme):
    now = timezone.now()
    grant_credits(
        acme,
        10,
        source=CreditSource.DAILY_FREE,
        idempotency_key="daily",
        expires_at=now + timedelta(hours=1),
    )
    grant_credits(acme, 10, source=CreditSource.PURCHASE, idempotency_key="buy")
    hold = place_hold(acme, 8, idempotency_key="h")
    assert expire_lots(now + timedelta(hours=2)) == 1
    wallet = get_wallet(acme)
    assert (wallet.balance, wallet.held) == (10, 8)
    settle_hold(hold, 3, idempotency_key="s")
    wallet.refresh_from_db()
    # 3 charged from the expired daily lot; the 5 returned to it expire at once.
    assert (wallet.balance, wallet.held) == (10, 0)
    assert CreditLot.objects.get(idempotency_key="daily").remaining == 0
    assert audit_wallets() == []


def test_adjust_requires_staff_and_reason_and_records_them(funded, staff, alice):
    before = snapshot(funded)
    with pytest.raises(LedgerError, match="staff"):
        adjust_credits(funded, 5, actor=alice, reason="x", idempotency_key="a")
    with pytest.raises(LedgerError, match="reason"):
        adjust_credits(funded, 5, actor=staff, reason="  ", idempotency_key="a")
    with pytest.raises(InsufficientCredits):
        adjust_credits(funded, -101, actor=staff, reason="fraud", idempotency_key="a")
    assert snapshot(funded) == before
    entry = adjust_credits(funded, -40, actor=staff, reason="chargeback", idempotency_key="a")
    assert (entry.actor, entry.reason, entry.amount) == (staff, "chargeback", -40)
    assert get_wallet(funded).balance == 60
    assert audit_wallets() == []


def test_settling_a_released_hold_is_refused(funded):
    hold = place_hold(funded, 10, idempotency_key="h")
    release_hold(hold, idempotency_key="r")
    with pytest.raises(LedgerError, match="already released"):
        settle_hold(hold, 5, idempotency_key="s")


def test_ledger_entries_are_append_only(funded):
    entry = LedgerEntry.objects.first()
    entry.amount = 1_000_000
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()


def test_actions_work_inside_a_request_with_the_tenancy_guard_on(acme, bob, staff):
    from accounts.tenancy import tenancy_guard
    from billing.plans import plan_for

    with tenancy_guard():
        grant_credits(acme, 30, source=CreditSource.PURCHASE, idempotency_key="g")
        hold = place_hold(acme, 20, idempotency_key="h", member=bob)
        settle_hold(hold, 5, idempotency_key="s")
        release_hold(place_hold(acme, 5, idempotency_key="h2"), idempotency_key="r")
        adjust_credits(acme, -1, actor=staff, reason="fix", idempotency_key="a")
        assert plan_for(acme).slug == "free"
        assert ledger.available_credits(acme) == 24


def test_a_key_used_by_another_workspace_conflicts(funded, charlie):
    other = charlie.workspaces.get()
    grant_credits(other, 10, source=CreditSource.PURCHASE, idempotency_key="c")
    place_hold(funded, 5, idempotency_key="shared")
    before = snapshot(other)
    with pytest.raises(IdempotencyConflict):
        place_hold(other, 5, idempotency_key="shared")
    with pytest.raises(IdempotencyConflict):
        grant_credits(other, 100, source=CreditSource.PURCHASE, idempotency_key="buy-1")
    assert snapshot(other) == before
