"""Stripe events: stored once by Stripe's id, handled once in a Celery task (the
counterpart of Zulip's `corporate/lib/stripe_event_handler.py`).

`process_event` runs the event's handler (`stripe_sync`) under a row lock on the stored
event, in a savepoint: a failure rolls the handler back and records the error and attempt
count, and the task retries with backoff (the admin can retry too).
"""

from __future__ import annotations

import logging
import traceback
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from config import enqueue as tasks

from . import stripe_sync
from .models import StripeEvent, StripeEventStatus

log = logging.getLogger(__name__)
HANDLE = "billing.tasks.handle_stripe_event"

HANDLERS = {
    "checkout.session.completed": stripe_sync.checkout_completed,
    "checkout.session.async_payment_succeeded": stripe_sync.async_payment_succeeded,
    "customer.subscription.created": stripe_sync.subscription_changed,
    "customer.subscription.updated": stripe_sync.subscription_changed,
    "customer.subscription.deleted": stripe_sync.subscription_changed,
    "invoice.paid": stripe_sync.invoice_paid,
    "invoice.payment_failed": stripe_sync.invoice_payment_failed,
    "charge.refunded": stripe_sync.charge_refunded,
    "charge.dispute.created": stripe_sync.dispute_created,
}


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
    tasks.send(HANDLE, event_pk)


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
