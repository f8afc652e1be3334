"""Dunning: telling owners a subscription payment failed, and returning workspaces whose
subscription stayed past due beyond `PAST_DUE_GRACE_DAYS` to the Free plan."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import stripe
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.models import Role

from . import payments
from .models import Subscription, SubscriptionDunning, SubscriptionStatus

log = logging.getLogger(__name__)


def tell_owners_past_due(subscription_pk: int) -> None:
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
