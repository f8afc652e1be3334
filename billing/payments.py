"""Talking to Stripe on the customer's behalf: customers, prices, Checkout, the portal and
plan changes.

Credits never move here: they move when Stripe's webhooks confirm a payment
(`billing/webhooks.py`). Every create call carries an idempotency key, so a retried
request or a double-clicked button makes one object at Stripe.
"""

from __future__ import annotations

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from accounts.models import Workspace

from .models import (
    LIVE_SUBSCRIPTION_STATUSES,
    CreditPackage,
    Plan,
    StripeCustomer,
    Subscription,
    SubscriptionSource,
)

# Checkout cannot start a subscription with these methods (no recurring payments).
NOT_FOR_SUBSCRIPTIONS = frozenset({"wechat_pay"})


class PaymentError(Exception):
    """A payment action was refused or Stripe said no; the message is readable."""


def enabled() -> bool:
    """Whether payments are configured here; pages disable Buy buttons when they are not."""
    return bool(settings.STRIPE_SECRET_KEY)


def client() -> stripe.StripeClient:
    """A Stripe client for the configured key and API base (tests: the local fake)."""
    if not settings.STRIPE_SECRET_KEY:
        raise PaymentError(_("Payments are not configured on this server."))
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": settings.STRIPE_API_BASE},
        max_network_retries=2,
    )


def _call(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except stripe.StripeError as exc:
        message = exc.user_message or str(exc) or exc.__class__.__name__
        raise PaymentError(_("The payment provider refused: %(m)s") % {"m": message}) from exc


def _currency(obj: Plan | CreditPackage, currency: str) -> str:
    currency = (currency or "").upper()
    if currency not in obj.prices:
        raise PaymentError(
            _("%(name)s has no price in %(currency)s.") % {"name": obj.name, "currency": currency}
        )
    if not obj.prices[currency]:
        raise PaymentError(_("%(name)s is free: there is nothing to pay.") % {"name": obj.name})
    return currency


# --- customers ---------------------------------------------------------------------------


def ensure_customer(workspace: Workspace) -> str:
    """The workspace's Stripe customer id, creating the customer on first use.

    The idempotency key names the workspace, so two racing first checkouts create one
    customer at Stripe; the unique row keeps one locally.
    """
    existing = StripeCustomer.objects.for_workspace(workspace).first()
    if existing:
        return existing.customer_id
    owner = workspace.memberships.filter(role="owner").select_related("user").first()
    customer = _call(
        client().v1.customers.create,
        params={
            "name": workspace.name,
            **({"email": owner.user.email} if owner else {}),
            "metadata": {"workspace_id": str(workspace.pk)},
        },
        options={"idempotency_key": f"retake-customer-workspace-{workspace.pk}"},
    )
    try:
        with transaction.atomic():
            StripeCustomer.objects.dangerously_unscoped().create(
                workspace=workspace, customer_id=customer.id
            )
    except IntegrityError:
        return StripeCustomer.objects.for_workspace(workspace).get().customer_id
    return customer.id


def workspace_for_customer(customer_id: str) -> Workspace | None:
    row = (
        StripeCustomer.objects.dangerously_unscoped()
        .select_related("workspace")
        .filter(customer_id=customer_id)
        .first()
    )
    return row.workspace if row else None


# --- prices ------------------------------------------------------------------------------


def ensure_price(obj: Plan | CreditPackage, currency: str) -> str:
    """The Stripe price id for this plan (monthly) or package (one-time) in `currency`.

    Uses `stripe_price_ids[currency]` when set (prices made in the Stripe dashboard);
    otherwise creates the product and price once, keyed by slug, currency and amount, and
    remembers the id. Clearing the field makes a new price after a price change.
    """
    currency = _currency(obj, currency)
    known = (obj.stripe_price_ids or {}).get(currency)
    if known:
        return known
    recurring = isinstance(obj, Plan)
    kind = "plan" if recurring else "package"
    amount = obj.prices[currency]
    api = client()
    product = _call(
        api.v1.products.create,
        params={"name": f"Retake {obj.name}", "metadata": {kind: obj.slug}},
        options={"idempotency_key": f"retake-product-{kind}-{obj.slug}"},
    )
    price = _call(
        api.v1.prices.create,
        params={
            "product": product.id,
            "currency": currency.lower(),
            "unit_amount": amount,
            **({"recurring": {"interval": "month"}} if recurring else {}),
            "metadata": {kind: obj.slug},
        },
        options={"idempotency_key": f"retake-price-{kind}-{obj.slug}-{currency}-{amount}"},
    )
    with transaction.atomic():
        fresh = type(obj).objects.select_for_update().get(pk=obj.pk)
        fresh.stripe_price_ids = {**(fresh.stripe_price_ids or {}), currency: price.id}
        fresh.save(update_fields=["stripe_price_ids"])
    obj.stripe_price_ids = fresh.stripe_price_ids
    return price.id


def plan_for_price(price_id: str) -> Plan | None:
    """The plan whose `stripe_price_ids` names this Stripe price."""
    for plan in Plan.objects.all():
        if price_id in (plan.stripe_price_ids or {}).values():
            return plan
    return None


# --- Checkout ----------------------------------------------------------------------------


def _urls() -> dict:
    base = settings.PUBLIC_BASE_URL
    return {
        "success_url": f"{base}/billing/?checkout=success&session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{base}/billing/?checkout=cancelled",
    }


def _payment_methods(currency: str) -> list[str]:
    return settings.STRIPE_PAYMENT_METHODS.get(currency, ["card"])


def live_payment_subscription(workspace: Workspace) -> Subscription | None:
    return (
        Subscription.objects.for_workspace(workspace)
        .filter(status__in=LIVE_SUBSCRIPTION_STATUSES, source=SubscriptionSource.PAYMENT)
        .select_related("plan")
        .first()
    )


def start_package_checkout(workspace: Workspace, package: CreditPackage, currency: str, *, user):
    """A Checkout session (payment mode) for one credit package; returns its URL.

    Credits arrive with `checkout.session.completed` (paid) or, for delayed methods,
    `checkout.session.async_payment_succeeded`.
    """
    if not package.is_active:
        raise PaymentError(_("This package is not on sale."))
    currency = _currency(package, currency)
    metadata = {
        "kind": "package",
        "workspace_id": str(workspace.pk),
        "package": package.slug,
        "user_id": str(user.pk),
    }
    session = _call(
        client().v1.checkout.sessions.create,
        params={
            "mode": "payment",
            "customer": ensure_customer(workspace),
            "client_reference_id": str(workspace.pk),
            "line_items": [{"price": ensure_price(package, currency), "quantity": 1}],
            "payment_method_types": _payment_methods(currency),
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            **_urls(),
        },
    )
    return session.url


def start_subscription_checkout(workspace: Workspace, plan: Plan, currency: str, *, user):
    """A Checkout session (subscription mode) for a plan; returns its URL."""
    if not plan.is_active:
        raise PaymentError(_("The %(plan)s plan is not available.") % {"plan": plan.display_name})
    if live_payment_subscription(workspace) is not None:
        raise PaymentError(_("This workspace already has a subscription: change its plan."))
    currency = _currency(plan, currency)
    metadata = {"kind": "plan", "workspace_id": str(workspace.pk), "plan": plan.slug}
    methods = [m for m in _payment_methods(currency) if m not in NOT_FOR_SUBSCRIPTIONS]
    session = _call(
        client().v1.checkout.sessions.create,
        params={
            "mode": "subscription",
            "customer": ensure_customer(workspace),
            "client_reference_id": str(workspace.pk),
            "line_items": [{"price": ensure_price(plan, currency), "quantity": 1}],
            "payment_method_types": methods,
            "metadata": metadata,
            "subscription_data": {"metadata": {**metadata, "user_id": str(user.pk)}},
            **_urls(),
        },
    )
    return session.url


def change_plan(workspace: Workspace, plan: Plan) -> None:
    """Move the workspace's Stripe subscription to another plan.

    Stripe prorates the money (an upgrade is invoiced at once). Entitlements follow the
    webhook: at once for an upgrade, at the next period for a downgrade.
    """
    subscription = live_payment_subscription(workspace)
    if subscription is None:
        raise PaymentError(_("There is no subscription to change: subscribe first."))
    if subscription.plan_id == plan.pk:
        raise PaymentError(_("You are already on %(plan)s.") % {"plan": plan.display_name})
    if not plan.is_active or not plan.prices.get(subscription.currency):
        raise PaymentError(_("The %(plan)s plan is not available.") % {"plan": plan.display_name})
    api = client()
    remote = _call(api.v1.subscriptions.retrieve, subscription.external_id)
    item_id = remote["items"]["data"][0]["id"]
    upgrade = plan_rank(plan, subscription.currency) > plan_rank(
        subscription.plan, subscription.currency
    )
    _call(
        api.v1.subscriptions.update,
        subscription.external_id,
        params={
            "items": [{"id": item_id, "price": ensure_price(plan, subscription.currency)}],
            "proration_behavior": "always_invoice" if upgrade else "none",
            # An upgrade takes effect only once its prorated invoice is paid.
            **({"payment_behavior": "pending_if_incomplete"} if upgrade else {}),
            "cancel_at_period_end": False,
            "metadata": {"plan": plan.slug},
        },
    )


def cancel_at_period_end(workspace: Workspace) -> None:
    """Stop renewing; the plan lasts to the end of the paid period."""
    subscription = live_payment_subscription(workspace)
    if subscription is None:
        raise PaymentError(_("There is no subscription to cancel."))
    _call(
        client().v1.subscriptions.update,
        subscription.external_id,
        params={"cancel_at_period_end": True},
    )


def plan_rank(plan: Plan, currency: str) -> tuple[int, int, int]:
    """How plans compare for upgrade/downgrade: price, then credits, then priority."""
    return (plan.prices.get(currency, 0), plan.monthly_credits, plan.queue_priority)


def portal_url(workspace: Workspace) -> str:
    """A Customer Portal session: payment methods, invoices and cancellation."""
    session = _call(
        client().v1.billing_portal.sessions.create,
        params={
            "customer": ensure_customer(workspace),
            "return_url": f"{settings.PUBLIC_BASE_URL}/billing/",
        },
    )
    return session.url
