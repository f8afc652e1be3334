"""Dunning: telling owners a subscription payment failed, and returning workspaces whose
subscription stayed past due beyond `PAST_DUE_GRACE_DAYS` to the Free plan."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import stripe
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts.models import Role, UserSettings

from . import display, payments
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
        m.user
        for m in workspace.memberships.filter(role=Role.OWNER).select_related("user")
        if m.user.email
    ]
    languages = dict(
        UserSettings.objects.filter(user__in=owners).values_list("user_id", "email_language")
    )
    for owner in owners:
        subject, body = dunning_mail(subscription, languages.get(owner.pk) or "")
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [owner.email])


def dunning_mail(subscription: Subscription, language: str) -> tuple[str, str]:
    """The past-due e-mail's subject and body in `language` (the owner's e-mail language,
    chosen on their notifications page; else the site's)."""
    with translation.override(language or settings.LANGUAGE_CODE):
        values = {
            "workspace": subscription.workspace.display_name,
            "plan": subscription.plan.display_name,
            "free": display.plan_name("Free"),
            "site": settings.SITE_NAME,
            "url": f"{settings.PUBLIC_BASE_URL.rstrip('/')}/billing/",
            "days": settings.PAST_DUE_GRACE_DAYS,
        }
        subject = _("Payment failed for the %(plan)s plan of %(workspace)s") % values
        body = (
            _(
                "We could not collect the payment for the %(plan)s plan of %(workspace)s on "
                "%(site)s. Please update the payment method at %(url)s within %(days)s days, "
                "or the workspace will return to the %(free)s plan."
            )
            % values
        )
    return subject, body


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
