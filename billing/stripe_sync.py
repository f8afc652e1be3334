"""Applying Stripe's events to the platform: package grants, subscription sync, invoices,
refunds and disputes (the counterpart of Zulip's `corporate/lib/stripe.py`).

Order and replays: every grant is keyed (checkout session, subscription period, owed
total), and subscription state is always read back from Stripe's API rather than taken
from the event, so an old or repeated event cannot move a subscription backwards. Credits
only move through `billing.ledger` actions (refunds through `billing.refunds`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import Workspace

from . import ledger, payments, plans, refunds
from .dunning import tell_owners_past_due
from .models import (
    LIVE_SUBSCRIPTION_STATUSES,
    CreditLot,
    CreditPackage,
    CreditSource,
    Plan,
    RevocationCause,
    StripePayment,
    StripePaymentKind,
    Subscription,
    SubscriptionDunning,
    SubscriptionSource,
    SubscriptionStatus,
)


class WebhookError(Exception):
    """An event could not be applied (unknown workspace, package or plan)."""


# --- helpers -----------------------------------------------------------------------------


def _ts(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if value else None


def _workspace_of(obj: dict) -> Workspace:
    customer = obj.get("customer")
    workspace = payments.workspace_for_customer(customer) if customer else None
    workspace_id = (obj.get("metadata") or {}).get("workspace_id")
    if workspace is None and workspace_id:
        workspace = Workspace.objects.filter(pk=workspace_id).first()
    if workspace is None:
        raise WebhookError(f"No workspace for Stripe customer {customer!r}.")
    return workspace


def _retrieve(resource: str, ident: str) -> dict:
    api = payments.client()
    return getattr(api.v1, resource).retrieve(ident).to_dict()


# --- credit packages ---------------------------------------------------------------------


def checkout_completed(session: dict) -> None:
    if session.get("mode") == "subscription" and session.get("subscription"):
        sync_subscription(session["subscription"])
    elif session.get("payment_status") == "paid":
        grant_package(session)


def async_payment_succeeded(session: dict) -> None:
    if session.get("mode") == "payment":
        grant_package(session)


def grant_package(session: dict) -> StripePayment | None:
    """Grant a paid package checkout's credits, once per checkout session."""
    metadata = session.get("metadata") or {}
    if metadata.get("kind") != "package":
        return None
    workspace = _workspace_of(session)
    package = CreditPackage.objects.filter(slug=metadata.get("package")).first()
    if package is None:
        raise WebhookError(f"Checkout {session['id']} names unknown package {metadata!r}.")
    with transaction.atomic():
        ledger.lock_wallet(workspace)  # serialises the two events that can grant
        done = StripePayment.objects.dangerously_unscoped().filter(reference=session["id"])
        if done.exists():
            return done.get()
        lot = ledger.grant_credits(
            workspace,
            package.credits,
            source=CreditSource.PURCHASE,
            idempotency_key=f"stripe-checkout:{session['id']}",
            expires_at=timezone.now() + timedelta(days=package.validity_days),
            reason=f"{package.name} bought with Stripe checkout {session['id']}",
        )
        return StripePayment.objects.dangerously_unscoped().create(
            workspace=workspace,
            kind=StripePaymentKind.PACKAGE,
            reference=session["id"],
            payment_intent_id=session.get("payment_intent") or "",
            amount=session.get("amount_total") or 0,
            currency=(session.get("currency") or "").upper(),
            lot=lot,
            credits=package.credits,
            package=package,
        )


# --- subscriptions -----------------------------------------------------------------------

STATUS_FROM_STRIPE = {
    "active": SubscriptionStatus.ACTIVE,
    "trialing": SubscriptionStatus.TRIALING,
    "past_due": SubscriptionStatus.PAST_DUE,
    "unpaid": SubscriptionStatus.PAST_DUE,
    "canceled": SubscriptionStatus.CANCELED,
    "incomplete_expired": SubscriptionStatus.CANCELED,
    "paused": SubscriptionStatus.CANCELED,
}


def _plan_of(remote: dict) -> Plan:
    price_id = remote["items"]["data"][0]["price"]["id"]
    plan = payments.plan_for_price(price_id)
    if plan is None:
        plan = Plan.objects.filter(slug=(remote.get("metadata") or {}).get("plan")).first()
    if plan is None:
        raise WebhookError(f"No plan for Stripe price {price_id}.")
    return plan


def _period(remote: dict) -> tuple[datetime, datetime]:
    item = remote["items"]["data"][0]
    start = item.get("current_period_start") or remote.get("current_period_start")
    end = item.get("current_period_end") or remote.get("current_period_end")
    return _ts(start), _ts(end)


def sync_subscription(stripe_subscription_id: str) -> Subscription | None:
    """Bring the local subscription in line with Stripe's current state of it.

    Reads the subscription from the API (so event order does not matter), starts it on
    first sight, moves it to a newer period (granting that period's credits), applies an
    upgrade at once and a downgrade only when a new period starts, and ends it when
    Stripe has.
    """
    remote = _retrieve("subscriptions", stripe_subscription_id)
    status = STATUS_FROM_STRIPE.get(remote["status"])
    workspace = _workspace_of(remote)
    price_plan = _plan_of(remote)
    start, end = _period(remote)
    now = timezone.now()
    with transaction.atomic():
        Workspace.objects.select_for_update().filter(pk=workspace.pk).first()
        local = (
            Subscription.objects.dangerously_unscoped()
            .select_for_update()
            .select_related("plan")
            .filter(external_id=stripe_subscription_id)
            .first()
        )
        if local is None:
            if status not in LIVE_SUBSCRIPTION_STATUSES:
                return None  # incomplete (first payment pending) or already over
            local = plans.start_subscription(
                workspace,
                price_plan,
                source=SubscriptionSource.PAYMENT,
                period_start=start,
                period_end=end,
                external_id=stripe_subscription_id,
            )
        elif local.status == SubscriptionStatus.CANCELED:
            return local  # an ended subscription never comes back
        elif status == SubscriptionStatus.CANCELED:
            local.status = SubscriptionStatus.CANCELED
            local.canceled_at = now
            local.save(update_fields=["status", "canceled_at", "updated_at"])
            return local
        else:
            new_period = start > local.current_period_start
            currency = (remote.get("currency") or local.currency).upper()
            if price_plan.pk != local.plan_id:
                upgrade = payments.plan_rank(price_plan, currency) > payments.plan_rank(
                    local.plan, currency
                )
                if new_period or upgrade:
                    previous = local.plan
                    local.plan = price_plan
                    local.save(update_fields=["plan", "updated_at"])
                    if upgrade and not new_period:
                        _grant_upgrade(local, previous)
            if new_period:
                plans.renew_subscription(local, period_start=start, period_end=end)
        local.status = status or local.status
        local.cancel_at_period_end = bool(remote.get("cancel_at_period_end"))
        local.currency = (remote.get("currency") or "").upper()
        local.external_customer_id = remote.get("customer") or ""
        local.save(
            update_fields=[
                "status",
                "cancel_at_period_end",
                "currency",
                "external_customer_id",
                "updated_at",
            ]
        )
        dunning, _created = SubscriptionDunning.objects.dangerously_unscoped().get_or_create(
            subscription=local
        )
        if local.status == SubscriptionStatus.PAST_DUE and dunning.past_due_since is None:
            dunning.past_due_since = now
            dunning.save(update_fields=["past_due_since"])
        elif local.status != SubscriptionStatus.PAST_DUE and dunning.past_due_since:
            dunning.past_due_since = None
            dunning.save(update_fields=["past_due_since"])
    return local


def _grant_upgrade(subscription: Subscription, previous: Plan) -> None:
    """On an upgrade mid-period, top the period's credits up to the new plan's amount."""
    extra = subscription.plan.monthly_credits - previous.monthly_credits
    end = subscription.current_period_end
    if extra <= 0 or end <= timezone.now():
        return
    start = subscription.current_period_start
    ledger.grant_credits(
        subscription.workspace,
        extra,
        source=CreditSource.PLAN_PERIOD,
        idempotency_key=f"stripe-upgrade:{subscription.pk}:{start.isoformat()}:"
        f"{subscription.plan.slug}",
        effective_at=min(start, timezone.now()),
        expires_at=end,
        reason=f"Upgrade from {previous.name} to {subscription.plan.name}",
    )


def _period_lot(subscription: Subscription, *, latest: bool = False) -> CreditLot | None:
    """The plan-period lot of the subscription's current period, granting it if due.

    `latest` picks the newest lot of the period: an upgrade's top-up, which is what an
    upgrade's prorated invoice paid for.
    """
    plans.grant_period_credits(subscription)
    return (
        CreditLot.objects.dangerously_unscoped()
        .filter(
            workspace=subscription.workspace,
            source=CreditSource.PLAN_PERIOD,
            expires_at=subscription.current_period_end,
        )
        .order_by("-pk" if latest else "pk")
        .first()
    )


def _invoice_subscription(invoice: dict) -> str | None:
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {}
    return details.get("subscription") or invoice.get("subscription")


def _invoice_payment_intent(invoice: dict) -> str:
    if invoice.get("payment_intent"):
        return invoice["payment_intent"]
    for row in (invoice.get("payments") or {}).get("data", []):
        intent = (row.get("payment") or {}).get("payment_intent")
        if intent:
            return intent
    return ""


def invoice_paid(invoice: dict) -> None:
    subscription_id = _invoice_subscription(invoice)
    if not subscription_id:
        return
    local = sync_subscription(subscription_id)
    if local is None:
        raise WebhookError(f"Invoice {invoice['id']}: subscription {subscription_id} not live.")
    periods = [line.get("period") or {} for line in invoice["lines"]["data"]]
    period_end = _ts(max((p.get("end") or 0) for p in periods)) if periods else None
    current = period_end == local.current_period_end and local.status in (
        LIVE_SUBSCRIPTION_STATUSES
    )
    with transaction.atomic():
        upgrade = invoice.get("billing_reason") == "subscription_update"
        lot = _period_lot(local, latest=upgrade) if current else None
        StripePayment.objects.dangerously_unscoped().get_or_create(
            reference=invoice["id"],
            defaults=dict(
                workspace=local.workspace,
                kind=StripePaymentKind.SUBSCRIPTION,
                payment_intent_id=_invoice_payment_intent(invoice),
                amount=invoice.get("amount_paid") or 0,
                currency=(invoice.get("currency") or "").upper(),
                lot=lot,
                credits=lot.amount if lot else 0,
                plan=local.plan,
            ),
        )


def invoice_payment_failed(invoice: dict) -> None:
    subscription_id = _invoice_subscription(invoice)
    if not subscription_id:
        return
    local = sync_subscription(subscription_id)
    if local is None or local.status != SubscriptionStatus.PAST_DUE:
        return
    dunning = SubscriptionDunning.objects.select_for_update().get(subscription=local)
    if dunning.notified_invoice_id == invoice["id"]:
        return
    dunning.notified_invoice_id = invoice["id"]
    dunning.save(update_fields=["notified_invoice_id"])
    transaction.on_commit(lambda: tell_owners_past_due(local.pk))


def subscription_changed(remote: dict) -> None:
    sync_subscription(remote["id"])


# --- refunds and disputes ----------------------------------------------------------------


def _payment_for_intent(intent_id: str | None) -> StripePayment | None:
    if not intent_id:
        return None
    return (
        StripePayment.objects.dangerously_unscoped()
        .select_related("workspace")
        .filter(payment_intent_id=intent_id)
        .first()
    )


def charge_refunded(charge: dict) -> None:
    payment = _payment_for_intent(charge.get("payment_intent"))
    if payment is None:
        return
    refunds.revoke_for_payment(
        payment,
        cause=RevocationCause.REFUND,
        stripe_object_id=charge["id"],
        refunded_amount=int(charge.get("amount_refunded") or 0),
    )


def dispute_created(dispute: dict) -> None:
    intent = dispute.get("payment_intent")
    if not intent and dispute.get("charge"):
        intent = _retrieve("charges", dispute["charge"]).get("payment_intent")
    payment = _payment_for_intent(intent)
    if payment is None:
        return
    refunds.revoke_for_payment(
        payment,
        cause=RevocationCause.DISPUTE,
        stripe_object_id=dispute["id"],
        disputed_amount=int(dispute.get("amount") or 0),
    )
