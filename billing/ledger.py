"""The wallet and its ledger: grant, hold, settle, release, expire and adjust.

Every write to credits goes through these functions. Each runs in `transaction.atomic()`
(not durable, so `submit_takes` can compose several in one transaction) and writes one
append-only `LedgerEntry` per change. Lots are only changed by a transaction holding
their wallet's row lock, so the wallet lock is taken before any lot; closing a hold locks
the hold row (a conditional `UPDATE` on its status) before the wallet, and nothing else
locks an existing hold, so two actions never deadlock.

Hold and settle are the hot path (every take does both): each is a handful of statements,
set-based over lots and allocations, with conditional `UPDATE … RETURNING` instead of
reading rows into Python and writing them back. Idempotency is checked only when a
statement refuses (a unique key taken, a hold no longer pending, too few credits): the
first result of a key is then looked up and returned, so a replay costs a rollback, not
a query on every call.

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

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import IntegrityError, connection, transaction
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
from .periods import month_start

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


class ApiKeyCapExceeded(LedgerError):
    def __init__(self, cap: int, spent: int, needed: int) -> None:
        self.cap = cap
        self.spent = spent
        self.needed = needed
        super().__init__(
            _(
                "This API key's monthly spending cap is %(cap)d credits; %(spent)d were used "
                "through it this month and this needs %(needed)d more."
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
    """The workspace's wallet, row-locked (created first if it does not exist yet)."""
    wallet = Wallet.objects.for_workspace(workspace).select_for_update(no_key=True).first()
    if wallet is None:
        get_wallet(workspace)
        wallet = Wallet.objects.for_workspace(workspace).select_for_update(no_key=True).get()
    return wallet


def _lock_wallet_by_id(wallet_id: int) -> Wallet:
    return Wallet.objects.dangerously_unscoped().select_for_update(no_key=True).get(pk=wallet_id)


def _usable_lots(wallet: Wallet, now: datetime) -> list[CreditLot]:
    """Lots that can pay now, locked, in consumption order (money rule 4)."""
    return list(
        CreditLot.objects.dangerously_unscoped()
        .select_for_update()
        .filter(wallet=wallet, remaining__gt=0, expired_at__isnull=True, effective_at__lte=now)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .order_by(*CreditLot._meta.ordering)
    )


def _sql(statement: str, params: list) -> list[tuple]:
    """Run one statement (PostgreSQL and SQLite share this dialect) and return its rows.

    `{wallet}`, `{lot}`, `{hold}`, `{allocation}`, `{consumption}`, `{entry}` name the
    tables, `{hold_columns}` lists a hold's columns.
    """
    sql = statement.format(**_tables())
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


@cache
def _tables() -> dict[str, str]:
    models = {
        "wallet": Wallet,
        "lot": CreditLot,
        "hold": Hold,
        "allocation": HoldAllocation,
        "consumption": Consumption,
        "entry": LedgerEntry,
    }
    names = {name: connection.ops.quote_name(m._meta.db_table) for name, m in models.items()}
    names["hold_columns"] = ", ".join(_HOLD_COLUMNS)
    return names


def _db_time(value: datetime):
    return connection.ops.adapt_datetimefield_value(value)


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


def lock_wallet(workspace) -> Wallet:
    """Lock the workspace's wallet until the transaction ends: every credit change of the
    workspace waits behind it (for callers that must check something, then move credits,
    with nothing in between)."""
    return _lock_wallet(workspace)


@transaction.atomic
def revoke_lot_credits(
    workspace, lot_id: int, amount: int, *, idempotency_key: str, reason: str, params: dict
) -> tuple[int, LedgerEntry | None]:
    """Take up to `amount` unspent credits back out of one lot (a refunded or disputed
    payment's); returns how many were taken and their `revoke` entry (None if none).

    Locks the wallet, then the lot (the ledger's lock order). Credits already spent,
    expired or pinned by a hold are not in `lot.remaining` and cannot come back.
    """
    _check_key(idempotency_key)
    wallet = _lock_wallet(workspace)
    lot = CreditLot.objects.dangerously_unscoped().select_for_update().get(pk=lot_id, wallet=wallet)
    taken = min(amount, lot.remaining)
    if taken <= 0:
        return 0, None
    lot.remaining -= taken
    lot.save(update_fields=["remaining"])
    wallet.balance -= taken
    _save_wallet(wallet)
    entry = _entry(
        wallet, EntryKind.REVOKE, -taken, idempotency_key, lot=lot, reason=reason, params=params
    )
    return taken, entry


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


def member_spent_this_month(workspace, member, *, now: datetime | None = None) -> int:
    """Settled charges plus pending holds by `member` in this calendar month."""
    return _spent_this_month(workspace, now, member=member)


def api_key_spent_this_month(workspace, api_key, *, now: datetime | None = None) -> int:
    """Settled charges plus pending holds placed through `api_key` this calendar month."""
    return _spent_this_month(workspace, now, api_key=api_key)


def _spent_this_month(workspace, now: datetime | None, **who) -> int:
    now = now or timezone.now()
    sums = (
        Hold.objects.for_workspace(workspace)
        .filter(created_at__gte=month_start(now), **who)
        .aggregate(
            pending=Sum("amount", filter=Q(status=HoldStatus.PENDING)),
            settled=Sum("charged", filter=Q(status=HoldStatus.SETTLED)),
        )
    )
    return (sums["pending"] or 0) + (sums["settled"] or 0)


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


def place_hold(
    workspace,
    amount: int,
    *,
    idempotency_key: str,
    member=None,
    api_key=None,
    reason: str = "",
) -> Hold:
    """Reserve credits before a take runs, pinning the lots they come from.

    Raises InsufficientCredits, SpendingCapExceeded (the member's cap) or ApiKeyCapExceeded
    (the cap of the API key it is placed through), changing nothing.
    """
    _check_positive(amount, _("A hold"))
    _check_key(idempotency_key)
    args = (workspace, amount, idempotency_key, member, reason[:500], api_key)
    if _set_based():
        # Refusals come back as values from a transaction that wrote nothing, so no
        # savepoint is needed for the caller's transaction to survive them.
        with transaction.atomic(savepoint=False):
            outcome = _place_hold_set_based(*args)
        if isinstance(outcome, Hold):
            return outcome
        return _replayed_hold(outcome, workspace, amount, idempotency_key, member)
    try:
        with transaction.atomic():
            return _place_hold(*args)
    except (IntegrityError, LedgerError) as exc:
        return _replayed_hold(exc, workspace, amount, idempotency_key, member)


def _replayed_hold(refusal: Exception, workspace, amount, key, member) -> Hold:
    """Refused, or the key is taken: a replay returns the key's first hold, else raise."""
    hold = Hold.objects.dangerously_unscoped().filter(idempotency_key=key).first()
    if hold is None:
        raise refusal
    if (hold.workspace_id, hold.amount, hold.member_id) != (
        workspace.pk,
        amount,
        getattr(member, "pk", None),
    ):
        raise _conflict(key) from refusal
    return hold


USE_SET_BASED_SQL = True


def _set_based() -> bool:
    """PostgreSQL runs hold and settle as one data-modifying statement after the locks;
    other databases (SQLite, the embedded mode) run the portable statements."""
    return USE_SET_BASED_SQL and connection.vendor == "postgresql"


def _member_cap(workspace, member) -> int | None:
    row = (
        Membership.objects.filter(workspace=workspace, user=member)
        .values_list("monthly_spend_cap")
        .first()
    )
    if row is None:
        raise LedgerError(_("%(user)s is not a member of this workspace.") % {"user": member})
    return row[0]


def _caps_refusal(workspace, member, member_cap, api_key, amount, now) -> LedgerError | None:
    """Under the wallet lock (concurrent holds of one member or key serialize): a cap this
    hold would pass, or None."""
    if member_cap is not None:
        spent = member_spent_this_month(workspace, member, now=now)
        if spent + amount > member_cap:
            return SpendingCapExceeded(cap=member_cap, spent=spent, needed=amount)
    if api_key is not None and api_key.monthly_spend_cap is not None:
        spent = api_key_spent_this_month(workspace, api_key, now=now)
        if spent + amount > api_key.monthly_spend_cap:
            return ApiKeyCapExceeded(cap=api_key.monthly_spend_cap, spent=spent, needed=amount)
    return None


def _place_hold_set_based(
    workspace, amount, key, member, reason, api_key=None
) -> Hold | LedgerError:
    """Two statements: lock the wallet if its balance covers the hold, then one statement
    that inserts the hold (unless the key is taken or too few credits are usable now),
    its allocations from the usable lots in consumption order, takes them out of the lots,
    debits the wallet and inserts the entry. Returns the refusal instead of raising it."""
    now = timezone.now()
    cap = None
    if member is not None:
        try:
            cap = _member_cap(workspace, member)
        except LedgerError as exc:
            return exc
    locked = _sql(
        "SELECT id, balance FROM {wallet} WHERE workspace_id = %s AND balance >= %s "
        "FOR NO KEY UPDATE",
        [workspace.pk, amount],
    )
    if not locked:
        return InsufficientCredits(needed=amount, available=available_credits(workspace, now=now))
    [(wallet_id, balance)] = locked
    refusal = _caps_refusal(workspace, member, cap, api_key, amount, now)
    if refusal is not None:
        return refusal
    params = {
        "wallet": wallet_id,
        "workspace": workspace.pk,
        "amount": amount,
        "member": getattr(member, "pk", None),
        "api_key": getattr(api_key, "pk", None),
        "reason": reason,
        "now": now,
        "key": key,
        "balance_after": balance - amount,
    }
    [(hold_id, available)] = _sql(
        """
        WITH usable AS (
            SELECT id, remaining, SUM(remaining) OVER (
                ORDER BY priority, expires_at ASC NULLS LAST, effective_at, id) AS upto
            FROM {lot}
            WHERE wallet_id = %(wallet)s AND remaining > 0 AND expired_at IS NULL
              AND effective_at <= %(now)s AND (expires_at IS NULL OR expires_at > %(now)s)
        ), enough AS (
            SELECT COALESCE(MAX(upto), 0) AS available FROM usable
        ), new_hold AS (
            INSERT INTO {hold} (wallet_id, workspace_id, amount, status, charged, member_id,
                                api_key_id, reason, created_at, idempotency_key)
            SELECT %(wallet)s, %(workspace)s, %(amount)s, 'pending', 0, %(member)s,
                   %(api_key)s, %(reason)s, %(now)s, %(key)s
            FROM enough WHERE available >= %(amount)s
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING id
        ), pinned AS (
            INSERT INTO {allocation} (hold_id, lot_id, amount, charged, returned)
            SELECT new_hold.id, usable.id, CASE WHEN upto <= %(amount)s THEN remaining
                   ELSE %(amount)s - (upto - remaining) END, 0, 0
            FROM new_hold, usable WHERE upto - remaining < %(amount)s ORDER BY upto
            RETURNING lot_id, amount
        ), taken AS (
            UPDATE {lot} SET remaining = {lot}.remaining - pinned.amount
            FROM pinned WHERE {lot}.id = pinned.lot_id
        ), debited AS (
            UPDATE {wallet} SET balance = balance - %(amount)s, held = held + %(amount)s,
                                updated_at = %(now)s
            FROM new_hold WHERE {wallet}.id = %(wallet)s
        ), entry AS (
            INSERT INTO {entry} (wallet_id, workspace_id, kind, amount, held_delta,
                                 balance_after, hold_id, actor_id, reason, params,
                                 idempotency_key, created_at)
            SELECT %(wallet)s, %(workspace)s, 'hold', -%(amount)s, %(amount)s,
                   %(balance_after)s, new_hold.id, %(member)s, %(reason)s, '{{}}',
                   %(key)s, %(now)s
            FROM new_hold
        )
        SELECT (SELECT id FROM new_hold), (SELECT available FROM enough)
        """,
        params,
    )
    if hold_id is None:
        if available < amount:
            return InsufficientCredits(needed=amount, available=available)
        return _conflict(key)  # the key is taken: a replay, or a conflict
    hold = Hold(
        id=hold_id,
        wallet_id=wallet_id,
        workspace_id=workspace.pk,
        amount=amount,
        member_id=params["member"],
        api_key_id=params["api_key"],
        reason=reason,
        created_at=now,
        idempotency_key=key,
    )
    hold._state.adding = False
    hold._state.db = connection.alias
    return hold


def _place_hold(workspace, amount, key, member, reason, api_key=None) -> Hold:
    """The portable hold, five statements without a member: debit the wallet (its row
    lock), insert the hold, insert its allocations from the usable lots in consumption
    order, take them out of those lots, insert the entry."""
    now = timezone.now()
    cap = _member_cap(workspace, member) if member is not None else None
    debited = _sql(
        "UPDATE {wallet} SET balance = balance - %s, held = held + %s, updated_at = %s "
        "WHERE workspace_id = %s AND balance >= %s RETURNING id, balance",
        [amount, amount, _db_time(now), workspace.pk, amount],
    )
    if not debited:
        raise InsufficientCredits(needed=amount, available=available_credits(workspace, now=now))
    [(wallet_id, balance)] = debited
    refusal = _caps_refusal(workspace, member, cap, api_key, amount, now)
    if refusal is not None:
        raise refusal

    hold = Hold(
        wallet_id=wallet_id,
        workspace=workspace,
        amount=amount,
        member=member,
        api_key=api_key,
        reason=reason[:500],
        created_at=now,
        idempotency_key=key,
    )
    hold.save(force_insert=True)
    pinned = _sql(
        "INSERT INTO {allocation} (hold_id, lot_id, amount, charged, returned) "
        "SELECT %s, id, CASE WHEN upto <= %s THEN remaining ELSE %s - (upto - remaining) END, "
        "0, 0 FROM (SELECT id, remaining, SUM(remaining) OVER (ORDER BY priority, "
        "expires_at ASC NULLS LAST, effective_at, id) AS upto FROM {lot} "
        "WHERE wallet_id = %s AND remaining > 0 AND expired_at IS NULL AND effective_at <= %s "
        "AND (expires_at IS NULL OR expires_at > %s)) AS usable "
        "WHERE upto - remaining < %s ORDER BY upto RETURNING amount",
        [hold.pk, amount, amount, wallet_id, _db_time(now), _db_time(now), amount],
    )
    available = sum(row[0] for row in pinned)
    if available < amount:  # the balance counts lots not yet effective or due to expire
        raise InsufficientCredits(needed=amount, available=available)
    _sql(
        "UPDATE {lot} SET remaining = {lot}.remaining - a.amount FROM {allocation} AS a "
        "WHERE a.hold_id = %s AND {lot}.id = a.lot_id",
        [hold.pk],
    )
    _insert_entry(
        wallet_id,
        workspace.pk,
        EntryKind.HOLD,
        -amount,
        balance,
        key,
        held_delta=amount,
        hold_id=hold.pk,
        actor_id=member.pk if getattr(member, "pk", None) else None,
        reason=reason[:500],
        created_at=now,
    )
    return hold


def _insert_entry(
    wallet_id: int,
    workspace_id: int,
    kind: str,
    amount: int,
    balance_after: int,
    key: str,
    **fields,
) -> LedgerEntry:
    entry = LedgerEntry(
        wallet_id=wallet_id,
        workspace_id=workspace_id,
        kind=kind,
        amount=amount,
        balance_after=balance_after,
        idempotency_key=key,
        **fields,
    )
    entry.save(force_insert=True)
    return entry


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
    args = (hold_id, charge, key, kind, final_status, reason[:500], requested)
    if _set_based():
        with transaction.atomic(savepoint=False):
            outcome = _close_set_based(*args)
        if isinstance(outcome, Hold):
            return outcome
        return _replayed_close(outcome, hold_id, key, kind, requested)
    try:
        with transaction.atomic():
            return _close(*args)
    except (IntegrityError, LedgerError) as exc:
        return _replayed_close(exc, hold_id, key, kind, requested)


def _replayed_close(refusal: Exception, hold_id: int, key: str, kind: str, requested) -> Hold:
    """No longer pending, or the key is taken: a replay returns the hold as it closed."""
    done = LedgerEntry.objects.dangerously_unscoped().filter(kind=kind, idempotency_key=key)
    entry = done.first()
    if entry is None:
        raise refusal
    if entry.hold_id != hold_id or entry.params.get("requested") != requested:
        raise _conflict(key) from refusal
    return Hold.objects.dangerously_unscoped().get(pk=hold_id)


_HOLD_COLUMNS = [f.column for f in Hold._meta.concrete_fields]
_HOLD_FIELDS = [f.attname for f in Hold._meta.concrete_fields]
_CLOSE_PENDING = (
    "UPDATE {hold} SET status = %s, closed_at = %s, "
    "charged = CASE WHEN amount < %s THEN amount ELSE %s END "
    "WHERE id = %s AND status = %s RETURNING {hold_columns}"
)


def _close_pending(hold_id: int, charge: int, final_status: str, now: datetime) -> Hold | None:
    """Close the hold if it is still pending (its row lock); None when it is not."""
    closed = _sql(
        _CLOSE_PENDING,
        [final_status, _db_time(now), charge, charge, hold_id, HoldStatus.PENDING],
    )
    if not closed:
        return None
    return Hold.from_db(connection.alias, _HOLD_FIELDS, _converted(Hold, closed[0]))


def _not_pending(hold_id: int) -> LedgerError:
    hold = Hold.objects.dangerously_unscoped().filter(pk=hold_id).first()
    if hold is None:
        return LedgerError(_("There is no hold #%(id)d.") % {"id": hold_id})
    return LedgerError(
        _("Hold #%(id)d is already %(status)s.")
        % {"id": hold.pk, "status": hold.get_status_display().lower()}
    )


def _close_set_based(
    hold_id, charge, key, kind, final_status, reason, requested
) -> Hold | LedgerError:
    """Two statements: close the hold if pending and credit its wallet (the wallet's
    update reads the closed hold, so the hold's row lock is taken first), then one
    statement that splits the allocations into charged and returned, returns credits to
    their lots, inserts the entry and the lots that paid for it."""
    now = timezone.now()
    closed = _sql(
        """
        WITH closed AS (
            UPDATE {hold} SET status = %(status)s, closed_at = %(now)s,
                charged = CASE WHEN amount < %(charge)s THEN amount ELSE %(charge)s END
            WHERE id = %(hold)s AND status = %(pending)s
            RETURNING {hold_columns}
        ), credited AS (
            UPDATE {wallet} SET balance = balance + closed.amount - closed.charged,
                held = held - closed.amount, updated_at = %(now)s
            FROM closed WHERE {wallet}.id = closed.wallet_id
            RETURNING {wallet}.balance
        )
        SELECT closed.*, credited.balance FROM closed, credited
        """,
        {
            "status": final_status,
            "now": now,
            "charge": charge,
            "hold": hold_id,
            "pending": HoldStatus.PENDING,
        },
    )
    if not closed:
        return _not_pending(hold_id)
    *columns, balance = closed[0]
    hold = Hold.from_db(connection.alias, _HOLD_FIELDS, columns)
    returned_total = hold.amount - hold.charged
    [(entry_id, lapsed_lots, lapsed_amounts)] = _sql(
        """
        WITH split AS (
            SELECT id, lot_id, amount, CASE WHEN upto <= %(charged)s THEN amount
                   WHEN upto - amount >= %(charged)s THEN 0
                   ELSE %(charged)s - (upto - amount) END AS charged
            FROM (SELECT id, lot_id, amount, SUM(amount) OVER (ORDER BY id) AS upto
                  FROM {allocation} WHERE hold_id = %(hold)s) AS running
        ), closed AS (
            UPDATE {allocation} SET charged = split.charged,
                                   returned = split.amount - split.charged
            FROM split WHERE {allocation}.id = split.id
        ), refilled AS (
            UPDATE {lot} SET remaining = {lot}.remaining + split.amount - split.charged
            FROM split WHERE {lot}.id = split.lot_id AND split.amount > split.charged
            RETURNING {lot}.id, split.amount - split.charged AS returned,
                      ({lot}.expired_at IS NOT NULL OR {lot}.expires_at <= %(now)s) AS lapsed
        ), entry AS (
            INSERT INTO {entry} (wallet_id, workspace_id, kind, amount, held_delta,
                                 balance_after, hold_id, reason, params, idempotency_key,
                                 created_at)
            VALUES (%(wallet)s, %(workspace)s, %(kind)s, %(returned)s, -%(amount)s,
                    %(balance)s, %(hold)s, %(reason)s, %(params)s, %(key)s, %(now)s)
            ON CONFLICT (kind, idempotency_key) DO NOTHING
            RETURNING id
        ), paid AS (
            INSERT INTO {consumption} (entry_id, lot_id, hold_id, amount)
            SELECT entry.id, split.lot_id, %(hold)s, split.charged
            FROM entry, split WHERE split.charged > 0 ORDER BY split.id
        )
        SELECT (SELECT id FROM entry),
               ARRAY(SELECT id FROM refilled WHERE lapsed ORDER BY id),
               ARRAY(SELECT returned FROM refilled WHERE lapsed ORDER BY id)
        """,
        {
            "hold": hold_id,
            "charged": hold.charged,
            "now": now,
            "wallet": hold.wallet_id,
            "workspace": hold.workspace_id,
            "kind": kind,
            "returned": returned_total,
            "amount": hold.amount,
            "balance": balance,
            "reason": reason,
            "params": json.dumps({"requested": requested, "charged": hold.charged}),
            "key": key,
        },
    )
    if entry_id is None:  # the key settled another hold: nothing here may stand
        raise _conflict(key)
    if lapsed_lots:  # credits returned to a lot that expired meanwhile expire at once
        wallet = _lock_wallet_by_id(hold.wallet_id)
        lots = CreditLot.objects.dangerously_unscoped().in_bulk(lapsed_lots)
        for lot_id, amount in zip(lapsed_lots, lapsed_amounts, strict=True):
            key = f"hold:{hold_id}:lot:{lot_id}"
            _expire_lot_amount(wallet, lots[lot_id], amount, now, key=key)
    return hold


def _close(hold_id, charge, key, kind, final_status, reason, requested) -> Hold:
    """Five statements at most: close the hold (its row lock), credit the wallet (its row
    lock), split each allocation into charged and returned, return credits to their lots,
    insert the entry and, when something was charged, the lots that paid for it."""
    now = timezone.now()
    hold = _close_pending(hold_id, charge, final_status, now)
    if hold is None:
        raise _not_pending(hold_id)
    returned_total = hold.amount - hold.charged
    [(balance,)] = _sql(
        "UPDATE {wallet} SET balance = balance + %s, held = held - %s, updated_at = %s "
        "WHERE id = %s RETURNING balance",
        [returned_total, hold.amount, _db_time(now), hold.wallet_id],
    )
    # Allocations were made in consumption order: charge the first ones, return the rest.
    _sql(
        "UPDATE {allocation} SET charged = split.charged, returned = split.amount - split.charged "
        "FROM (SELECT id, amount, CASE WHEN upto <= %s THEN amount WHEN upto - amount >= %s "
        "THEN 0 ELSE %s - (upto - amount) END AS charged FROM (SELECT id, amount, "
        "SUM(amount) OVER (ORDER BY id) AS upto FROM {allocation} WHERE hold_id = %s) AS o) "
        "AS split WHERE {allocation}.id = split.id",
        [hold.charged, hold.charged, hold.charged, hold_id],
    )
    expired: list[int] = []
    if returned_total:
        # (SQLite misjudges expressions in the RETURNING of an UPDATE … FROM: plain columns.)
        refilled = _sql(
            "UPDATE {lot} SET remaining = {lot}.remaining + a.returned FROM {allocation} AS a "
            "WHERE a.hold_id = %s AND a.returned > 0 AND {lot}.id = a.lot_id "
            "RETURNING {lot}.id, {lot}.expired_at, {lot}.expires_at",
            [hold_id],
        )
        due_field = CreditLot._meta.get_field("expires_at")
        expired = [
            lot_id
            for lot_id, lapsed, due in refilled
            if lapsed is not None or (due is not None and _from_db(due_field, due) <= now)
        ]
    entry = _insert_entry(
        hold.wallet_id,
        hold.workspace_id,
        kind,
        returned_total,
        balance,
        key,
        held_delta=-hold.amount,
        hold_id=hold_id,
        reason=reason[:500],
        params={"requested": requested, "charged": hold.charged},
        created_at=now,
    )
    if hold.charged:
        _sql(
            "INSERT INTO {consumption} (entry_id, lot_id, hold_id, amount) "
            "SELECT %s, lot_id, hold_id, charged FROM {allocation} "
            "WHERE hold_id = %s AND charged > 0 ORDER BY id",
            [entry.pk, hold_id],
        )
    if expired:  # credits returned to a lot that expired meanwhile expire at once
        wallet = _lock_wallet_by_id(hold.wallet_id)
        returned = dict(
            HoldAllocation.objects.dangerously_unscoped()
            .filter(hold_id=hold_id, lot_id__in=expired)
            .values_list("lot_id", "returned")
        )
        for lot in CreditLot.objects.dangerously_unscoped().filter(pk__in=expired).order_by("pk"):
            _expire_lot_amount(
                wallet, lot, returned[lot.pk], now, key=f"hold:{hold_id}:lot:{lot.pk}"
            )
    return hold


def _converted(model, row: tuple) -> list:
    """A raw row of `model`'s concrete columns as the ORM would load it."""
    return [_from_db(f, v) for f, v in zip(model._meta.concrete_fields, row, strict=True)]


def _from_db(field, value):
    """A raw column value as the ORM would load it (SQLite returns text for datetimes)."""
    column = field.get_col(field.model._meta.db_table)
    for converter in connection.ops.get_db_converters(column):
        value = converter(value, column, connection)
    return value


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
        if hold.created_at <= now - timedelta(hours=grace):
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
