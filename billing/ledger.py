"""The wallet and its ledger: grant, hold, settle, release, expire and adjust.

Every write to credits goes through these functions. Each runs in `transaction.atomic()`
(not durable, so `submit_takes` can compose several in one transaction), locks the
wallet row first (then holds, then lots, always in that order, so two actions never
deadlock), and writes one append-only `LedgerEntry` per change.

Bookkeeping: `Wallet.balance` is the sum of the lots' `remaining` (credits not pinned by
a hold, possibly not yet effective) and `Wallet.held` the sum of pending holds. A hold
moves credits from lots into `HoldAllocation` rows (pinned: lot expiry cannot touch
them); settling charges the pinned credits in consumption order and returns the rest to
their lots; releasing returns everything. Credits returned to a lot that expired in the
meantime expire at once, with their own entry.

Idempotency: a grant's key is unique on `CreditLot`, a hold's on `Hold`, every entry's
per kind on `LedgerEntry`. Replaying a call with the same key returns the first result;
the same key with different parameters raises `IdempotencyConflict`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Membership

from .models import (
    DEFAULT_LOT_PRIORITY,
    Consumption,
    CreditLot,
    CreditSource,
    EntryKind,
    Hold,
    HoldAllocation,
    HoldStatus,
    LedgerEntry,
    Wallet,
)

MAX_KEY_LENGTH = 200


class LedgerError(Exception):
    """An action was refused; the message is readable by a person. Nothing changed."""


class InsufficientCredits(LedgerError):
    def __init__(self, needed: int, available: int) -> None:
        self.needed = needed
        self.available = available
        super().__init__(
            _("Not enough credits: this needs %(needed)d and %(available)d are available.")
            % {"needed": needed, "available": available}
        )


class SpendingCapExceeded(LedgerError):
    def __init__(self, cap: int, spent: int, needed: int) -> None:
        self.cap = cap
        self.spent = spent
        self.needed = needed
        super().__init__(
            _(
                "Your monthly spending cap in this workspace is %(cap)d credits; you have "
                "used %(spent)d this month and this needs %(needed)d more."
            )
            % {"cap": cap, "spent": spent, "needed": needed}
        )


class IdempotencyConflict(LedgerError):
    """The idempotency key was already used for a different request."""


# --- validation --------------------------------------------------------------------------


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise LedgerError(_("An idempotency key is required."))
    if len(key) > MAX_KEY_LENGTH:
        raise LedgerError(
            _("Idempotency keys are at most %(n)d characters.") % {"n": MAX_KEY_LENGTH}
        )
    return key


def _check_positive(amount: int, what: str) -> int:
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise LedgerError(_("%(what)s must be a whole number of credits.") % {"what": what})
    if amount <= 0:
        raise LedgerError(_("%(what)s must be more than zero.") % {"what": what})
    return amount


def _check_aware(value: datetime | None, what: str) -> None:
    if value is not None and timezone.is_naive(value):
        raise LedgerError(_("%(what)s needs a time zone.") % {"what": what})


def _conflict(key: str) -> IdempotencyConflict:
    return IdempotencyConflict(
        _("The idempotency key %(key)s was already used with different parameters.") % {"key": key}
    )


# --- wallet and lots ---------------------------------------------------------------------


def get_wallet(workspace) -> Wallet:
    """The workspace's wallet, created on first use."""
    wallet, _created = Wallet.objects.for_workspace(workspace).get_or_create(workspace=workspace)
    return wallet


def _lock_wallet(workspace) -> Wallet:
    get_wallet(workspace)
    return Wallet.objects.for_workspace(workspace).select_for_update().get()


def _lock_wallet_by_id(wallet_id: int) -> Wallet:
    return Wallet.objects.dangerously_unscoped().select_for_update().get(pk=wallet_id)


def _usable_lots(wallet: Wallet, now: datetime) -> list[CreditLot]:
    """Lots that can pay now, locked, in consumption order (money rule 4)."""
    return list(
        CreditLot.objects.dangerously_unscoped()
        .select_for_update()
        .filter(wallet=wallet, remaining__gt=0, expired_at__isnull=True, effective_at__lte=now)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .order_by(*CreditLot._meta.ordering)
    )


def available_credits(workspace, *, now: datetime | None = None) -> int:
    """Credits the workspace could hold right now (effective, unexpired, unpinned)."""
    now = now or timezone.now()
    return (
        CreditLot.objects.for_workspace(workspace)
        .filter(remaining__gt=0, expired_at__isnull=True, effective_at__lte=now)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .aggregate(total=Sum("remaining"))["total"]
        or 0
    )


def _entry(wallet: Wallet, kind: str, amount: int, key: str, **fields) -> LedgerEntry:
    return LedgerEntry.objects.dangerously_unscoped().create(
        wallet=wallet,
        workspace_id=wallet.workspace_id,
        kind=kind,
        amount=amount,
        balance_after=wallet.balance,
        idempotency_key=key,
        **fields,
    )


def _save_wallet(wallet: Wallet) -> None:
    wallet.save(update_fields=["balance", "held", "updated_at"])


# --- grant -------------------------------------------------------------------------------


@transaction.atomic
def grant_credits(
    workspace,
    amount: int,
    *,
    source: str,
    idempotency_key: str,
    expires_at: datetime | None = None,
    effective_at: datetime | None = None,
    reason: str = "",
    actor=None,
    priority: int | None = None,
) -> CreditLot:
    """Add a lot of credits. Manual corrections use `adjust_credits` instead."""
    _check_positive(amount, _("A grant"))
    _check_key(idempotency_key)
    if source not in CreditSource.values:
        raise LedgerError(_("Unknown credit source %(s)r.") % {"s": source})
    if source == CreditSource.ADJUSTMENT:
        raise LedgerError(_("Adjustments go through adjust_credits, which records who and why."))
    _check_aware(expires_at, _("The expiry"))
    _check_aware(effective_at, _("The effective time"))
    now = timezone.now()
    effective_at = effective_at or now
    if expires_at is not None and expires_at <= effective_at:
        raise LedgerError(_("Credits must expire after they take effect."))

    wallet = _lock_wallet(workspace)
    existing = CreditLot.objects.dangerously_unscoped().filter(idempotency_key=idempotency_key)
    lot = existing.first()
    if lot is not None:
        if (lot.workspace_id, lot.amount, lot.source, lot.expires_at) != (
            workspace.pk,
            amount,
            source,
            expires_at if expires_at is not None else lot.expires_at,
        ):
            raise _conflict(idempotency_key)
        return lot
    if expires_at is not None and expires_at <= now:
        raise LedgerError(_("These credits would already have expired."))

    try:
        with transaction.atomic():  # the same key racing in through another wallet
            lot = CreditLot.objects.dangerously_unscoped().create(
                wallet=wallet,
                workspace=workspace,
                source=source,
                amount=amount,
                remaining=amount,
                priority=DEFAULT_LOT_PRIORITY[source] if priority is None else priority,
                effective_at=effective_at,
                expires_at=expires_at,
                idempotency_key=idempotency_key,
                reason=reason[:500],
                created_by=actor if getattr(actor, "pk", None) else None,
            )
    except IntegrityError as exc:
        raise _conflict(idempotency_key) from exc
    wallet.balance += amount
    _save_wallet(wallet)
    _entry(
        wallet,
        EntryKind.GRANT,
        amount,
        idempotency_key,
        lot=lot,
        actor=lot.created_by,
        reason=reason[:500],
        params={"source": source},
    )
    return lot


# --- hold --------------------------------------------------------------------------------


def month_start(now: datetime) -> datetime:
    """The start of `now`'s calendar month in the billing time zone (caps and team spend)."""
    from .pricing import billing_time_zone

    local = now.astimezone(billing_time_zone())
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def member_spent_this_month(workspace, member, *, now: datetime | None = None) -> int:
    """Settled charges plus pending holds by `member` in this calendar month."""
    now = now or timezone.now()
    holds = Hold.objects.for_workspace(workspace).filter(
        member=member, created_at__gte=month_start(now)
    )
    pending = holds.filter(status=HoldStatus.PENDING).aggregate(s=Sum("amount"))["s"] or 0
    settled = holds.filter(status=HoldStatus.SETTLED).aggregate(s=Sum("charged"))["s"] or 0
    return pending + settled


def spend_by_member(workspace, *, now: datetime | None = None) -> dict[int, dict[str, int]]:
    """Per member id, this calendar month: `charged` (settled holds) and `held` (pending).

    The team page's figures; the same month and holds as `member_spent_this_month`.
    """
    now = now or timezone.now()
    rows = (
        Hold.objects.for_workspace(workspace)
        .filter(member__isnull=False, created_at__gte=month_start(now))
        .order_by()
        .values("member_id")
        .annotate(
            charged=Sum("charged", filter=Q(status=HoldStatus.SETTLED)),
            held=Sum("amount", filter=Q(status=HoldStatus.PENDING)),
        )
    )
    return {
        row["member_id"]: {"charged": row["charged"] or 0, "held": row["held"] or 0} for row in rows
    }


@transaction.atomic
def place_hold(
    workspace,
    amount: int,
    *,
    idempotency_key: str,
    member=None,
    reason: str = "",
    expires_at: datetime | None = None,
) -> Hold:
    """Reserve credits before a take runs, pinning the lots they come from.

    Raises InsufficientCredits or SpendingCapExceeded, changing nothing.
    """
    _check_positive(amount, _("A hold"))
    _check_key(idempotency_key)
    _check_aware(expires_at, _("The hold's expiry"))
    now = timezone.now()

    wallet = _lock_wallet(workspace)
    hold = Hold.objects.dangerously_unscoped().filter(idempotency_key=idempotency_key).first()
    if hold is not None:
        if (hold.workspace_id, hold.amount, hold.member_id) != (
            workspace.pk,
            amount,
            getattr(member, "pk", None),
        ):
            raise _conflict(idempotency_key)
        return hold

    if member is not None:
        membership = Membership.objects.filter(workspace=workspace, user=member).first()
        if membership is None:
            raise LedgerError(_("%(user)s is not a member of this workspace.") % {"user": member})
        cap = membership.monthly_spend_cap
        if cap is not None:
            spent = member_spent_this_month(workspace, member, now=now)
            if spent + amount > cap:
                raise SpendingCapExceeded(cap=cap, spent=spent, needed=amount)

    lots = _usable_lots(wallet, now)
    available = sum(lot.remaining for lot in lots)
    if available < amount:
        raise InsufficientCredits(needed=amount, available=available)

    try:
        with transaction.atomic():  # the same key racing in through another wallet
            hold = Hold.objects.dangerously_unscoped().create(
                wallet=wallet,
                workspace=workspace,
                amount=amount,
                member=member,
                reason=reason[:500],
                expires_at=expires_at,
                created_at=now,
                idempotency_key=idempotency_key,
            )
    except IntegrityError as exc:
        raise _conflict(idempotency_key) from exc
    need = amount
    for lot in lots:
        if need == 0:
            break
        take = min(need, lot.remaining)
        lot.remaining -= take
        lot.save(update_fields=["remaining"])
        HoldAllocation.objects.dangerously_unscoped().create(hold=hold, lot=lot, amount=take)
        need -= take
    wallet.balance -= amount
    wallet.held += amount
    _save_wallet(wallet)
    _entry(
        wallet,
        EntryKind.HOLD,
        -amount,
        idempotency_key,
        held_delta=amount,
        hold=hold,
        actor=member if getattr(member, "pk", None) else None,
        reason=reason[:500],
    )
    return hold


# --- settle / release --------------------------------------------------------------------


def _hold_id(hold: Hold | int) -> int:
    if isinstance(hold, Hold):
        return hold.pk
    if isinstance(hold, int) and not isinstance(hold, bool):
        return hold
    raise LedgerError(_("Pass a hold or a hold id."))


def _close_hold(
    hold_id: int,
    charge: int,
    *,
    key: str,
    kind: str,
    final_status: str,
    reason: str = "",
    requested: int | None = None,
) -> Hold:
    """Charge `charge` credits of a pending hold (in consumption order), return the rest."""
    wallet_id = (
        Hold.objects.dangerously_unscoped().filter(pk=hold_id).values_list("wallet_id", flat=True)
    ).first()
    if wallet_id is None:
        raise LedgerError(_("There is no hold #%(id)d.") % {"id": hold_id})
    wallet = _lock_wallet_by_id(wallet_id)
    done = LedgerEntry.objects.dangerously_unscoped().filter(kind=kind, idempotency_key=key)
    entry = done.first()
    if entry is not None:
        if entry.hold_id != hold_id or entry.params.get("requested") != requested:
            raise _conflict(key)
        return Hold.objects.dangerously_unscoped().get(pk=hold_id)

    hold = Hold.objects.dangerously_unscoped().select_for_update().get(pk=hold_id)
    if hold.status != HoldStatus.PENDING:
        raise LedgerError(
            _("Hold #%(id)d is already %(status)s.")
            % {"id": hold.pk, "status": hold.get_status_display().lower()}
        )
    now = timezone.now()
    charge = min(charge, hold.amount)
    allocations = list(hold.allocations.select_related("lot").order_by("id"))
    lots = {
        lot.pk: lot
        for lot in CreditLot.objects.dangerously_unscoped()
        .select_for_update()
        .filter(pk__in=[a.lot_id for a in allocations])
        .order_by("pk")
    }
    left_to_charge = charge
    returned_total = 0
    charged_from: list[tuple[CreditLot, int]] = []
    expired_returns: list[tuple[CreditLot, int]] = []
    for allocation in allocations:
        lot = lots[allocation.lot_id]
        charged = min(left_to_charge, allocation.amount)
        returned = allocation.amount - charged
        left_to_charge -= charged
        allocation.charged = charged
        allocation.returned = returned
        allocation.save(update_fields=["charged", "returned"])
        if charged:
            charged_from.append((lot, charged))
        if returned:
            lot.remaining += returned
            lot.save(update_fields=["remaining"])
            returned_total += returned
            if lot.expired_at is not None or (lot.expires_at and lot.expires_at <= now):
                expired_returns.append((lot, returned))

    wallet.balance += returned_total
    wallet.held -= hold.amount
    _save_wallet(wallet)
    entry = _entry(
        wallet,
        kind,
        returned_total,
        key,
        held_delta=-hold.amount,
        hold=hold,
        reason=reason[:500],
        params={"requested": requested, "charged": charge},
    )
    for lot, amount in charged_from:
        Consumption.objects.dangerously_unscoped().create(
            entry=entry, lot=lot, hold=hold, amount=amount
        )
    for lot, amount in expired_returns:
        _expire_lot_amount(wallet, lot, amount, now, key=f"hold:{hold.pk}:lot:{lot.pk}")

    hold.status = final_status
    hold.charged = charge
    hold.closed_at = now
    hold.save(update_fields=["status", "charged", "closed_at"])
    return hold


@transaction.atomic
def settle_hold(hold: Hold | int, amount: int, *, idempotency_key: str) -> Hold:
    """Charge `min(amount, hold.amount)` from the pinned lots and release the rest."""
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise LedgerError(_("A charge must be a whole number of credits, zero or more."))
    _check_key(idempotency_key)
    return _close_hold(
        _hold_id(hold),
        amount,
        key=idempotency_key,
        kind=EntryKind.SETTLE,
        final_status=HoldStatus.SETTLED,
        requested=amount,
    )


@transaction.atomic
def release_hold(hold: Hold | int, *, idempotency_key: str, reason: str = "") -> Hold:
    """Return every pinned credit of a pending hold (a failed or cancelled take)."""
    _check_key(idempotency_key)
    return _close_hold(
        _hold_id(hold),
        0,
        key=idempotency_key,
        kind=EntryKind.RELEASE,
        final_status=HoldStatus.RELEASED,
        reason=reason,
    )


def expire_holds(now: datetime | None = None) -> int:
    """Release, as expired, pending holds whose `expires_at` has passed."""
    now = now or timezone.now()
    ids = list(
        Hold.objects.dangerously_unscoped()
        .filter(status=HoldStatus.PENDING, expires_at__lte=now)
        .values_list("pk", flat=True)
    )
    count = 0
    for hold_id in ids:
        with transaction.atomic():
            try:
                _close_hold(
                    hold_id,
                    0,
                    key=f"hold-expiry:{hold_id}",
                    kind=EntryKind.RELEASE,
                    final_status=HoldStatus.EXPIRED,
                    reason="hold expired",
                )
            except LedgerError:
                continue  # settled or released meanwhile
        count += 1
    return count


# --- expiry ------------------------------------------------------------------------------


def _expire_lot_amount(wallet: Wallet, lot: CreditLot, amount: int, now: datetime, *, key: str):
    lot.remaining -= amount
    if lot.expired_at is None:
        lot.expired_at = now
    lot.save(update_fields=["remaining", "expired_at"])
    wallet.balance -= amount
    _save_wallet(wallet)
    _entry(wallet, EntryKind.EXPIRY, -amount, key, lot=lot, reason="credits expired")


def expire_lots(now: datetime | None = None) -> int:
    """Expire the unpinned remainder of every lot past its expiry; returns lots expired.

    Pinned credits stay with their holds (money rule 5) and expire when returned.
    """
    now = now or timezone.now()
    due = (
        CreditLot.objects.dangerously_unscoped()
        .filter(expired_at__isnull=True, expires_at__lte=now)
        .values_list("wallet_id", flat=True)
        .distinct()
    )
    count = 0
    for wallet_id in list(due):
        with transaction.atomic():
            wallet = _lock_wallet_by_id(wallet_id)
            lots = (
                CreditLot.objects.dangerously_unscoped()
                .select_for_update()
                .filter(wallet=wallet, expired_at__isnull=True, expires_at__lte=now)
                .order_by("pk")
            )
            for lot in lots:
                if lot.remaining:
                    _expire_lot_amount(wallet, lot, lot.remaining, now, key=f"lot:{lot.pk}")
                else:
                    lot.expired_at = now
                    lot.save(update_fields=["expired_at"])
                count += 1
    return count


# --- adjust ------------------------------------------------------------------------------


@transaction.atomic
def adjust_credits(
    workspace,
    delta: int,
    *,
    actor,
    reason: str,
    idempotency_key: str,
    expires_at: datetime | None = None,
) -> LedgerEntry:
    """A staff correction, up or down, naming who made it and why (money rule 9).

    A positive delta adds an adjustment lot; a negative one consumes unpinned credits in
    consumption order and cannot take more than is available.
    """
    if not isinstance(delta, int) or isinstance(delta, bool) or delta == 0:
        raise LedgerError(_("An adjustment must be a whole, non-zero number of credits."))
    if actor is None or not getattr(actor, "is_staff", False):
        raise LedgerError(_("Only staff can adjust credits."))
    reason = (reason or "").strip()
    if not reason:
        raise LedgerError(_("An adjustment needs a reason."))
    _check_key(idempotency_key)
    _check_aware(expires_at, _("The expiry"))
    now = timezone.now()
    if expires_at is not None and expires_at <= now:
        raise LedgerError(_("These credits would already have expired."))

    wallet = _lock_wallet(workspace)
    done = LedgerEntry.objects.dangerously_unscoped().filter(
        kind=EntryKind.ADJUSTMENT, idempotency_key=idempotency_key
    )
    entry = done.first()
    if entry is not None:
        if (entry.workspace_id, entry.amount) != (workspace.pk, delta):
            raise _conflict(idempotency_key)
        return entry

    if delta > 0:
        lot = CreditLot.objects.dangerously_unscoped().create(
            wallet=wallet,
            workspace=workspace,
            source=CreditSource.ADJUSTMENT,
            amount=delta,
            remaining=delta,
            priority=DEFAULT_LOT_PRIORITY[CreditSource.ADJUSTMENT],
            effective_at=now,
            expires_at=expires_at,
            idempotency_key=f"adjustment:{idempotency_key}",
            reason=reason[:500],
            created_by=actor,
        )
        wallet.balance += delta
        _save_wallet(wallet)
        return _entry(
            wallet,
            EntryKind.ADJUSTMENT,
            delta,
            idempotency_key,
            lot=lot,
            actor=actor,
            reason=reason[:500],
        )

    lots = _usable_lots(wallet, now)
    available = sum(lot.remaining for lot in lots)
    if available < -delta:
        raise InsufficientCredits(needed=-delta, available=available)
    need = -delta
    taken: list[tuple[CreditLot, int]] = []
    for lot in lots:
        if need == 0:
            break
        take = min(need, lot.remaining)
        lot.remaining -= take
        lot.save(update_fields=["remaining"])
        taken.append((lot, take))
        need -= take
    wallet.balance += delta
    _save_wallet(wallet)
    entry = _entry(
        wallet, EntryKind.ADJUSTMENT, delta, idempotency_key, actor=actor, reason=reason[:500]
    )
    for lot, amount in taken:
        Consumption.objects.dangerously_unscoped().create(entry=entry, lot=lot, amount=amount)
    return entry


# --- audit -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WalletDrift:
    wallet_id: int
    workspace_id: int
    problems: tuple[str, ...]


def audit_wallet(wallet: Wallet, *, now: datetime | None = None) -> list[str]:
    """Every way this wallet's caches disagree with its rows (empty when clean)."""
    now = now or timezone.now()
    problems: list[str] = []
    entries = LedgerEntry.objects.dangerously_unscoped().filter(wallet=wallet)
    sums = entries.aggregate(amount=Sum("amount"), held=Sum("held_delta"))
    entry_balance = sums["amount"] or 0
    entry_held = sums["held"] or 0
    lots_remaining = (
        CreditLot.objects.dangerously_unscoped()
        .filter(wallet=wallet)
        .aggregate(s=Sum("remaining"))["s"]
        or 0
    )
    holds = Hold.objects.dangerously_unscoped().filter(wallet=wallet)
    pending = holds.filter(status=HoldStatus.PENDING)
    pending_total = pending.aggregate(s=Sum("amount"))["s"] or 0
    if wallet.balance != entry_balance:
        problems.append(f"balance {wallet.balance} ≠ sum of entries {entry_balance}")
    if wallet.balance != lots_remaining:
        problems.append(f"balance {wallet.balance} ≠ sum of lots' remaining {lots_remaining}")
    if wallet.held != entry_held:
        problems.append(f"held {wallet.held} ≠ sum of entries' held changes {entry_held}")
    if wallet.held != pending_total:
        problems.append(f"held {wallet.held} ≠ sum of pending holds {pending_total}")
    if wallet.balance < 0 or wallet.held < 0:
        problems.append("negative balance or held credits")

    grace = settings.BILLING_HOLD_ORPHAN_HOURS
    allocations = HoldAllocation.objects.dangerously_unscoped().filter(hold__wallet=wallet)
    for hold in holds.exclude(status=HoldStatus.PENDING).filter(
        pk__in=allocations.filter(amount__gt=0)
        .exclude(amount=F("charged") + F("returned"))
        .values("hold_id")
    ):
        problems.append(f"hold #{hold.pk} is {hold.status} but still pins credits")
    for hold in pending.annotate(pinned=Sum("allocations__amount")):
        if hold.pinned != hold.amount:
            problems.append(f"pending hold #{hold.pk} pins {hold.pinned} of {hold.amount}")
        overdue = hold.expires_at and hold.expires_at <= now - timedelta(hours=1)
        if overdue or hold.created_at <= now - timedelta(hours=grace):
            problems.append(f"pending hold #{hold.pk} is orphaned (open since {hold.created_at})")
    for hold in holds.filter(status=HoldStatus.SETTLED):
        paid = (
            Consumption.objects.dangerously_unscoped()
            .filter(hold=hold)
            .aggregate(s=Sum("amount"))["s"]
            or 0
        )
        if paid != hold.charged:
            problems.append(f"settled hold #{hold.pk} charged {hold.charged}, lots paid {paid}")
    return problems


def audit_wallets(*, now: datetime | None = None) -> list[WalletDrift]:
    """Audit every wallet; returns the ones that drifted."""
    drifted = []
    for wallet in Wallet.objects.dangerously_unscoped().order_by("pk"):
        problems = audit_wallet(wallet, now=now)
        if problems:
            drifted.append(WalletDrift(wallet.pk, wallet.workspace_id, tuple(problems)))
    return drifted
