"""Helpers for the Stripe tests: deliver signed webhooks like Stripe and handle them."""

from __future__ import annotations

import json
from contextlib import contextmanager

from django.test import Client, TestCase

from billing import stripe_events
from billing.models import StripeEvent

from .fake_stripe import running_fake_stripe, sign

WEBHOOK_URL = "/billing/stripe/webhook/"
SECRET = "whsec_test_retake"


@contextmanager
def configured_fake(settings):
    with running_fake_stripe() as fake:
        settings.STRIPE_SECRET_KEY = "sk_test_retake"
        settings.STRIPE_WEBHOOK_SECRET = SECRET
        settings.STRIPE_API_BASE = fake.base_url
        yield fake


def post_event(event: dict, *, secret: str = SECRET, signature: str | None = None):
    payload = json.dumps(event)
    return Client().post(
        WEBHOOK_URL,
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature if signature is not None else sign(payload, secret),
    )


def deliver(event: dict) -> StripeEvent:
    """Deliver one event (signed) and handle it as the Celery task would.

    The view's on-commit enqueue is captured, not sent; the handler's own on-commit side
    effects (e-mail) run.
    """
    with TestCase.captureOnCommitCallbacks(execute=False):
        response = post_event(event)
    assert response.status_code == 200, response.content
    stored = StripeEvent.objects.get(event_id=event["id"])
    with TestCase.captureOnCommitCallbacks(execute=True):
        return stripe_events.process_event(stored.pk)
