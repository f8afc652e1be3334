"""A model of the ledger in plain Python, driven side by side with the real one.

After every step every money rule is checked: the caches agree with entries and lots
(the audit), nothing is negative, lots hold what the model says (consumption order,
pinning, expiry), holds are charged no more than they hold, and replays change nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from accounts.actions import create_workspace
from billing import ledger
from billing.models import DEFAULT_LOT_PRIORITY, CreditLot, Hold, LedgerEntry
from conftest import make_user

SOURCES = ["daily_free", "promotion", "purchase"]


@dataclass
class ModelLot:
    pk: int
    priority: int
    expiring: bool
    remaining: int
    amount: int
    expired: bool = False

    def order(self) -> tuple:
        return (self.priority, 0 if self.expiring else 1, self.pk)


@dataclass
class ModelHold:
    pk: int
    amount: int
    allocations: list[tuple[int, int]]
    status: str = "pending"
    charged: int = 0


@dataclass
class Model:
    lots: dict[int, ModelLot] = field(default_factory=dict)
    holds: dict[int, ModelHold] = field(default_factory=dict)

    def usable(self) -> list[ModelLot]:
        return sorted(
            (lot for lot in self.lots.values() if lot.remaining > 0 and not lot.expired),
            key=ModelLot.order,
        )

    def available(self) -> int:
        return sum(lot.remaining for lot in self.usable())

    def take(self, amount: int) -> list[tuple[int, int]]:
        taken = []
        for lot in self.usable():
            if amount == 0:
                break
            part = min(amount, lot.remaining)
            lot.remaining -= part
            amount -= part
            taken.append((lot.pk, part))
        return taken


class LedgerMachine(RuleBasedStateMachine):
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.owner = make_user(f"{uuid.uuid4().hex[:10]}@example.com")
        self.staff = make_user(f"staff-{uuid.uuid4().hex[:10]}@example.com")
        self.staff.is_staff = True
        self.staff.save(update_fields=["is_staff"])
        self.workspace = create_workspace(self.owner, "Machine")
        self.model = Model()
        self.replays: list = []

    def _key(self) -> str:
        return uuid.uuid4().hex

    def _snapshot(self) -> tuple:
        wallet = ledger.get_wallet(self.workspace)
        return (
            wallet.balance,
            wallet.held,
            LedgerEntry.objects.filter(wallet=wallet).count(),
            tuple(CreditLot.objects.filter(wallet=wallet).order_by("pk").values_list("remaining")),
            tuple(Hold.objects.filter(wallet=wallet).order_by("pk").values_list("status")),
        )

    @initialize(amount=st.integers(1, 60), source=st.sampled_from(SOURCES))
    def opening_grant(self, amount: int, source: str) -> None:
        self.grant(amount, source, expiring=True)

    @rule(amount=st.integers(1, 60), source=st.sampled_from(SOURCES), expiring=st.booleans())
    def grant(self, amount: int, source: str, expiring: bool) -> None:
        expiring = expiring or source == "daily_free"
        key = self._key()
        kwargs = dict(
            source=source,
            idempotency_key=key,
            expires_at=timezone.now() + timedelta(hours=1) if expiring else None,
        )
        lot = ledger.grant_credits(self.workspace, amount, **kwargs)
        self.model.lots[lot.pk] = ModelLot(
            lot.pk, DEFAULT_LOT_PRIORITY[source], expiring, amount, amount
        )
        self.replays.append(lambda: ledger.grant_credits(self.workspace, amount, **kwargs))

    @rule(target=holds, amount=st.integers(1, 50))
    def hold(self, amount: int):
        key = self._key()
        if amount > self.model.available():
            before = self._snapshot()
            try:
                ledger.place_hold(self.workspace, amount, idempotency_key=key)
            except ledger.InsufficientCredits as exc:
                assert exc.available == self.model.available()
            else:
                raise AssertionError("a hold above the available credits was placed")
            assert self._snapshot() == before
            return None
        hold = ledger.place_hold(self.workspace, amount, idempotency_key=key)
        self.model.holds[hold.pk] = ModelHold(hold.pk, amount, self.model.take(amount))
        self.replays.append(lambda: ledger.place_hold(self.workspace, amount, idempotency_key=key))
        return hold.pk

    def _close(self, hold_id: int, charge: int, status: str) -> None:
        model_hold = self.model.holds[hold_id]
        charge = min(charge, model_hold.amount)
        left = charge
        for lot_pk, part in model_hold.allocations:
            charged = min(left, part)
            left -= charged
            lot = self.model.lots[lot_pk]
            if not lot.expired:
                lot.remaining += part - charged
        model_hold.status = status
        model_hold.charged = charge

    @rule(hold_id=consumes(holds), amount=st.integers(0, 100))
    def settle(self, hold_id, amount: int) -> None:
        if hold_id is None:
            return
        key = self._key()
        hold = ledger.settle_hold(hold_id, amount, idempotency_key=key)
        self._close(hold_id, amount, "settled")
        assert hold.charged == min(amount, hold.amount)
        self.replays.append(lambda: ledger.settle_hold(hold_id, amount, idempotency_key=key))

    @rule(hold_id=consumes(holds))
    def release(self, hold_id) -> None:
        if hold_id is None:
            return
        key = self._key()
        ledger.release_hold(hold_id, idempotency_key=key)
        self._close(hold_id, 0, "released")
        self.replays.append(lambda: ledger.release_hold(hold_id, idempotency_key=key))

    @rule()
    def expire(self) -> None:
        ledger.expire_lots(timezone.now() + timedelta(hours=2))
        for lot in self.model.lots.values():
            if lot.expiring and not lot.expired:
                lot.expired = True
                lot.remaining = 0

    @rule(delta=st.integers(-60, 60).filter(bool))
    def adjust(self, delta: int) -> None:
        key = self._key()
        if delta < 0 and -delta > self.model.available():
            before = self._snapshot()
            try:
                ledger.adjust_credits(
                    self.workspace, delta, actor=self.staff, reason="test", idempotency_key=key
                )
            except ledger.InsufficientCredits:
                pass
            else:
                raise AssertionError("an adjustment took more than was available")
            assert self._snapshot() == before
            return
        entry = ledger.adjust_credits(
            self.workspace, delta, actor=self.staff, reason="test", idempotency_key=key
        )
        if delta > 0:
            self.model.lots[entry.lot_id] = ModelLot(
                entry.lot_id, DEFAULT_LOT_PRIORITY["adjustment"], False, delta, delta
            )
        else:
            self.model.take(-delta)
        self.replays.append(
            lambda: ledger.adjust_credits(
                self.workspace, delta, actor=self.staff, reason="test", idempotency_key=key
            )
        )

    @rule(data=st.data())
    def replay(self, data) -> None:
        if not self.replays:
            return
        action = data.draw(st.sampled_from(self.replays))
        before = self._snapshot()
        action()
        assert self._snapshot() == before

    @invariant()
    def money_rules_hold(self) -> None:
        wallet = ledger.get_wallet(self.workspace)
        assert ledger.audit_wallet(wallet) == []
        assert wallet.balance >= 0 and wallet.held >= 0
        lots = {lot.pk: lot for lot in CreditLot.objects.filter(wallet=wallet)}
        assert set(lots) == set(self.model.lots)
        for pk, model_lot in self.model.lots.items():
            assert lots[pk].remaining == model_lot.remaining, f"lot {pk}"
            assert 0 <= lots[pk].remaining <= lots[pk].amount
        assert wallet.balance == sum(lot.remaining for lot in self.model.lots.values())
        pending = [h for h in self.model.holds.values() if h.status == "pending"]
        assert wallet.held == sum(h.amount for h in pending)
        for hold in Hold.objects.filter(wallet=wallet):
            model_hold = self.model.holds[hold.pk]
            assert (hold.status, hold.charged) == (model_hold.status, model_hold.charged)
            assert hold.charged <= hold.amount


def test_ledger_state_machine_keeps_every_money_rule(db, ledger_path):
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
