"""Stripe webhooks: verify, store by event id, handle in a Celery task.

The endpoint only verifies the signature, stores the event (unique by Stripe's id) and
enqueues its id on commit. `process_event` runs the handler under a row lock on the stored
event, in a savepoint: a failure rolls the handler back and records the error and attempt
count, and the task retries with backoff (the admin can retry too).

Order and replays: every grant is keyed (checkout session, subscription period, owed
total), and subscription state is always read back from Stripe's API rather than taken
from the event, so an old or repeated event cannot move a subscription backwards.
"""

from __future__ import annotations

import json
import logging
import traceback
from datetime import UTC, datetime, timedelta

import stripe
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.models import Role, Workspace

from . import ledger, payments, plans, refunds
from .models import (
    LIVE_SUBSCRIPTION_STATUSES,
    CreditLot,
    CreditPackage,
    CreditSource,
    Plan,
    RevocationCause,
    StripeEvent,
    StripeEventStatus,
    StripePayment,
    StripePaymentKind,
    Subscription,
    SubscriptionDunning,
    SubscriptionSource,
    SubscriptionStatus,
)

log = logging.getLogger(__name__)


class WebhookError(Exception):
    """An event could not be applied (unknown workspace, package or plan)."""


# --- the endpoint and the event store ----------------------------------------------------


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Verify the Stripe-Signature header; store and enqueue the event. Bad signature: 400."""
    try:
        stripe.Webhook.construct_event(
            request.body, request.headers.get("Stripe-Signature"), settings.STRIPE_WEBHOOK_SECRET
        )
        data = json.loads(request.body)
        event_id, event_type = data["id"], data["type"]
    except (ValueError, KeyError, TypeError, stripe.SignatureVerificationError):
        return HttpResponseBadRequest("invalid payload or signature")
    event, created = store_event(data)
    return JsonResponse({"received": True, "id": event_id, "type": event_type, "new": created})


def store_event(data: dict) -> tuple[StripeEvent, bool]:
    """Store a verified event once; enqueue it (on commit) when new or failed before."""
    with transaction.atomic():
        event, created = StripeEvent.objects.get_or_create(
            event_id=data["id"],
            defaults={
                "type": data["type"],
                "created": datetime.fromtimestamp(int(data.get("created", 0)), tz=UTC),
                "livemode": bool(data.get("livemode")),
                "payload": data,
            },
        )
        if created or event.status == StripeEventStatus.FAILED:
            transaction.on_commit(lambda: enqueue(event.pk))
    return event, created


def enqueue(event_pk: int) -> None:
    from .stripe_tasks import handle_stripe_event

    handle_stripe_event.delay(event_pk)


def process_event(event_pk: int) -> StripeEvent:
    """Handle one stored event exactly once; failures are recorded, not raised."""
    with transaction.atomic():
        event = StripeEvent.objects.select_for_update().get(pk=event_pk)
        if event.status in (StripeEventStatus.PROCESSED, StripeEventStatus.IGNORED):
            return event
        handler = HANDLERS.get(event.type)
        event.attempts += 1
        try:
            with transaction.atomic():
                if handler is not None:
                    handler(event.payload["data"]["object"])
        except Exception as exc:  # noqa: BLE001 - every failure is shown in the admin
            log.warning("Stripe event %s (%s) failed: %s", event.event_id, event.type, exc)
            event.status = StripeEventStatus.FAILED
            event.last_error = "".join(traceback.format_exception(exc))[-5000:]
        else:
            event.status = StripeEventStatus.PROCESSED if handler else StripeEventStatus.IGNORED
            event.last_error = ""
            event.processed_at = timezone.now()
        event.save(update_fields=["status", "attempts", "last_error", "processed_at"])
    return event


def retry_event(event: StripeEvent) -> bool:
    """Send a failed (or stuck) event back to the task; the admin's "retry" action."""
    if event.status in (StripeEventStatus.PROCESSED, StripeEventStatus.IGNORED):
        return False
    transaction.on_commit(lambda: enqueue(event.pk))
    return True


def requeue_stale_events(*, older_than: timedelta = timedelta(minutes=10)) -> int:
    """Re-enqueue events still unhandled after `older_than` (a lost broker message)."""
    stale = StripeEvent.objects.filter(
        status=StripeEventStatus.RECEIVED, received_at__lte=timezone.now() - older_than
    ).values_list("pk", flat=True)
    count = 0
    for pk in list(stale):
        enqueue(pk)
        count += 1
    return count


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


def _checkout_completed(session: dict) -> None:
    if session.get("mode") == "subscription" and session.get("subscription"):
        sync_subscription(session["subscription"])
    elif session.get("payment_status") == "paid":
        grant_package(session)


def _async_payment_succeeded(session: dict) -> None:
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
        ledger._lock_wallet(workspace)  # serialises the two events that can grant
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


def _invoice_paid(invoice: dict) -> None:
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


def _invoice_payment_failed(invoice: dict) -> None:
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
    transaction.on_commit(lambda: _tell_owners_past_due(local.pk))


def _tell_owners_past_due(subscription_pk: int) -> None:
    subscription = (
        Subscription.objects.dangerously_unscoped()
        .select_related("workspace", "plan")
        .get(pk=subscription_pk)
    )
    workspace = subscription.workspace
    owners = [
        m.user.email
        for m in workspace.memberships.filter(role=Role.OWNER).select_related("user")
        if m.user.email
    ]
    if not owners:
        return
    send_mail(
        f"Payment failed for {workspace.name}'s {subscription.plan.name} plan",
        (
            f"We could not collect the payment for the {subscription.plan.name} plan of "
            f"{workspace.name}. Please update the payment method at "
            f"{settings.PUBLIC_BASE_URL}/billing/ within {settings.PAST_DUE_GRACE_DAYS} days, "
            "or the workspace will return to the Free plan."
        ),
        settings.DEFAULT_FROM_EMAIL,
        owners,
    )


def _subscription_changed(remote: dict) -> None:
    sync_subscription(remote["id"])


def downgrade_past_due(now: datetime | None = None) -> int:
    """End subscriptions past due for longer than PAST_DUE_GRACE_DAYS (back to Free)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.PAST_DUE_GRACE_DAYS)
    due = SubscriptionDunning.objects.filter(
        past_due_since__lte=cutoff,
        downgraded_at__isnull=True,
        subscription__status=SubscriptionStatus.PAST_DUE,
    ).values_list("pk", flat=True)
    count = 0
    for pk in list(due):
        with transaction.atomic():
            dunning = SubscriptionDunning.objects.select_for_update().get(pk=pk)
            subscription = Subscription.objects.select_for_update().get(pk=dunning.subscription_id)
            if subscription.status != SubscriptionStatus.PAST_DUE or dunning.downgraded_at:
                continue
            subscription.status = SubscriptionStatus.CANCELED
            subscription.canceled_at = now
            subscription.save(update_fields=["status", "canceled_at", "updated_at"])
            dunning.downgraded_at = now
            dunning.save(update_fields=["downgraded_at"])
            external_id = subscription.external_id
        count += 1
        try:
            payments.client().v1.subscriptions.cancel(external_id)
        except (stripe.StripeError, payments.PaymentError) as exc:
            log.warning("Could not cancel Stripe subscription %s: %s", external_id, exc)
    return count


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


def _charge_refunded(charge: dict) -> None:
    payment = _payment_for_intent(charge.get("payment_intent"))
    if payment is None:
        return
    refunds.revoke_for_payment(
        payment,
        cause=RevocationCause.REFUND,
        stripe_object_id=charge["id"],
        refunded_amount=int(charge.get("amount_refunded") or 0),
    )


def _dispute_created(dispute: dict) -> None:
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


HANDLERS = {
    "checkout.session.completed": _checkout_completed,
    "checkout.session.async_payment_succeeded": _async_payment_succeeded,
    "customer.subscription.created": _subscription_changed,
    "customer.subscription.updated": _subscription_changed,
    "customer.subscription.deleted": _subscription_changed,
    "invoice.paid": _invoice_paid,
    "invoice.payment_failed": _invoice_payment_failed,
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _dispute_created,
}
