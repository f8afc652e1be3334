"""Which take changes become webhook events.

A take's status is changed only by the lifecycle and settlement code; this module watches
the saved rows rather than hooking into those functions, so it stays out of their way: a
take whose status was loaded as one value and saved as a terminal one emits its events
once the transaction commits (`take.*` with the take, `video.*` with the OpenAI-shaped
video). A new take that leaves the wallet under an endpoint's threshold emits
`wallet.low_balance` (at most once a day per endpoint).
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models.signals import post_init, post_save
from django.dispatch import receiver
from django.utils import timezone

from generation.models import TERMINAL, Take, TakeStatus

TAKE_EVENTS = {
    TakeStatus.SUCCEEDED: ("take.succeeded", "video.completed"),
    TakeStatus.FAILED: ("take.failed", "video.failed"),
    TakeStatus.CANCELED: ("take.canceled", "video.failed"),
    TakeStatus.EXPIRED: ("take.expired", "video.failed"),
}


@receiver(post_init, sender=Take, dispatch_uid="api_take_loaded_status")
def _remember_status(sender, instance: Take, **kwargs) -> None:
    instance._status_as_loaded = instance.__dict__.get("status")


@receiver(post_save, sender=Take, dispatch_uid="api_take_events")
def _take_saved(sender, instance: Take, created: bool, **kwargs) -> None:
    before = getattr(instance, "_status_as_loaded", None)
    instance._status_as_loaded = instance.status
    take_id, workspace_id = instance.pk, instance.workspace_id
    if created:
        transaction.on_commit(lambda: check_low_balance(workspace_id))
        return
    if instance.status in TERMINAL and before != instance.status:
        transaction.on_commit(lambda: emit_take_events(take_id))


def emit_take_events(take_id) -> None:
    from generation.api import take_json

    from .openai_compat import video_object
    from .webhooks import emit

    take = (
        Take.objects.dangerously_unscoped()
        .select_related("video_model", "shot")
        .filter(pk=take_id)
        .first()
    )
    if take is None or take.status not in TAKE_EVENTS:
        return
    take_event, video_event = TAKE_EVENTS[take.status]
    with transaction.atomic():
        emit(take.workspace_id, take_event, take_json(take))
        emit(take.workspace_id, video_event, video_object(take))


def check_low_balance(workspace_id: int) -> None:
    from accounts.models import Workspace
    from billing.ledger import available_credits

    from .models import WebhookDelivery, WebhookEndpoint
    from .webhooks import emit_to

    endpoints = [
        e
        for e in WebhookEndpoint.objects.dangerously_unscoped().filter(
            workspace_id=workspace_id,
            is_active=True,
            low_balance_threshold__isnull=False,
        )
        if "wallet.low_balance" in e.event_types
    ]
    if not endpoints:
        return
    available = available_credits(Workspace.objects.get(pk=workspace_id))
    day_ago = timezone.now() - timedelta(days=1)
    with transaction.atomic():
        for endpoint in endpoints:
            if available >= endpoint.low_balance_threshold:
                continue
            recent = WebhookDelivery.objects.dangerously_unscoped().filter(
                endpoint=endpoint, event_type="wallet.low_balance", created_at__gte=day_ago
            )
            if recent.exists():
                continue
            emit_to(
                endpoint,
                "wallet.low_balance",
                {"available": available, "threshold": endpoint.low_balance_threshold},
            )
