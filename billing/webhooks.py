"""The Stripe webhook endpoint: verify the signature, store the event, enqueue it.

Storing and handling live in `billing/stripe_events.py`, what each event does to the
platform in `billing/stripe_sync.py`, the past-due follow-up in `billing/dunning.py` (the
split Zulip uses for `corporate/views/webhook.py`, `corporate/lib/stripe_event_handler.py`
and `corporate/lib/stripe.py`).
"""

from __future__ import annotations

import json

import stripe
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .stripe_events import store_event


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
