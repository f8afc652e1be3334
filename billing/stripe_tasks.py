"""Stripe's Celery tasks. Named `billing.tasks.*` so they route to the billing queue;
imported by BillingConfig.ready() (autodiscovery only imports tasks.py)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from . import dunning, stripe_events
from .models import StripeEventStatus


@shared_task(bind=True, name="billing.tasks.handle_stripe_event", max_retries=None)
def handle_stripe_event(self, event_pk: int) -> str:
    """Handle one stored webhook event; retry with backoff while attempts remain."""
    event = stripe_events.process_event(event_pk)
    if (
        event.status == StripeEventStatus.FAILED
        and event.attempts < settings.STRIPE_EVENT_MAX_ATTEMPTS
    ):
        raise self.retry(countdown=min(30 * 2 ** (event.attempts - 1), 3600))
    return event.status


@shared_task(name="billing.tasks.requeue_stale_stripe_events")
def requeue_stale_stripe_events() -> int:
    """Re-enqueue stored events whose message was lost before a worker handled them."""
    return stripe_events.requeue_stale_events()


@shared_task(name="billing.tasks.downgrade_past_due_subscriptions")
def downgrade_past_due_subscriptions() -> int:
    """Return workspaces whose subscription stayed past due beyond the grace period to Free."""
    return dunning.downgrade_past_due()
