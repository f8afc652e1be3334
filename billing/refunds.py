"""Taking credits back when a payment is refunded or disputed.

The rule: a payment that bought C credits for A (minor units), of which R has been
refunded or disputed in total, owes back floor(C × min(R, A) / A) credits. They are taken
from the lot that payment filled, up to what is left unspent in it (`lot.remaining`:
credits already spent, expired or pinned by a running take cannot come back). What cannot
be taken is recorded as a shortfall; the wallet never goes below zero. Totals are
cumulative and keyed by what is owed, so partial refunds add up and a replayed or
out-of-order event takes nothing twice.

`ledger.revoke_lot_credits` takes them with the ledger's own lock order (wallet, then the
lot). Its entries are of kind `revoke`, with `params.cause` saying refund or dispute.
"""

from __future__ import annotations

from django.db import transaction

from . import ledger
from .models import (
    CreditRevocation,
    RevocationCause,
    StripePayment,
)


@transaction.atomic
def revoke_for_payment(
    payment: StripePayment,
    *,
    cause: str,
    stripe_object_id: str,
    refunded_amount: int | None = None,
    disputed_amount: int | None = None,
) -> CreditRevocation | None:
    """Record the payment's refunded/disputed totals and take back what they owe.

    Returns the new revocation, or None when nothing more is owed (a replay).
    """
    if cause not in RevocationCause.values:
        raise ledger.LedgerError(f"Unknown revocation cause {cause!r}.")
    ledger.lock_wallet(payment.workspace)
    payment = StripePayment.objects.dangerously_unscoped().select_for_update().get(pk=payment.pk)
    if refunded_amount is not None:
        payment.refunded_amount = max(payment.refunded_amount, refunded_amount)
    if disputed_amount is not None:
        payment.disputed_amount = max(payment.disputed_amount, disputed_amount)
    payment.save(update_fields=["refunded_amount", "disputed_amount"])
    owed = owed_credits(payment)
    due = owed - payment.credits_revoked - payment.credits_shortfall
    if due <= 0 or payment.lot_id is None:
        return None

    key = f"stripe-revoke:{payment.pk}:{owed}"
    reason = f"{RevocationCause(cause).label} of Stripe payment {payment.reference}"
    take, entry = ledger.revoke_lot_credits(
        payment.workspace,
        payment.lot_id,
        due,
        idempotency_key=key,
        reason=reason,
        params={"cause": cause, "stripe_object": stripe_object_id, "owed": due},
    )
    revocation = CreditRevocation.objects.dangerously_unscoped().create(
        workspace=payment.workspace,
        payment=payment,
        cause=cause,
        requested=due,
        taken=take,
        shortfall=due - take,
        entry=entry,
        stripe_object_id=stripe_object_id,
        idempotency_key=key,
    )
    payment.credits_revoked += take
    payment.credits_shortfall += due - take
    payment.save(update_fields=["credits_revoked", "credits_shortfall"])
    return revocation


def owed_credits(payment: StripePayment) -> int:
    """Credits owed back for the money returned so far (rounded down, see module doc)."""
    if not payment.amount:
        return 0
    returned = min(payment.amount, payment.refunded_amount + payment.disputed_amount)
    return payment.credits * returned // payment.amount
