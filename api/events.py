"""Which changes become webhook events.

Generation's actions announce a take's end (`take_ended`, from the lifecycle) and a rough
cut's (`rough_cut_ended`) inside the transaction that makes the change; the receivers here
record the deliveries in that same transaction (an outbox: they exist exactly when the
change does, once per change) and the deliveries are enqueued when it commits. A take
emits `take.*` with the take and `video.*` with the OpenAI-shaped video; a rough cut
emits `rough_cut.succeeded` or `rough_cut.failed`. A new take that leaves the wallet
under an endpoint's threshold emits `wallet.low_balance` (at most once a day per
endpoint), checked after the submission commits.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.urls import reverse
from django.utils import timezone

from accounts.models import Workspace
from billing.ledger import available_credits
from generation.api import take_json
from generation.models import RoughCut, RoughCutStatus, Take, TakeStatus
from generation.signals import rough_cut_ended, take_ended

from .models import WebhookDelivery, WebhookEndpoint
from .openai_compat import video_object
from .serializers import RoughCutSerializer
from .webhooks import emit, emit_to

TAKE_EVENTS = {
    TakeStatus.SUCCEEDED: ("take.succeeded", "video.completed"),
    TakeStatus.FAILED: ("take.failed", "video.failed"),
    TakeStatus.CANCELED: ("take.canceled", "video.failed"),
    TakeStatus.EXPIRED: ("take.expired", "video.failed"),
}
ROUGH_CUT_EVENTS = {
    RoughCutStatus.SUCCEEDED: "rough_cut.succeeded",
    RoughCutStatus.FAILED: "rough_cut.failed",
}


@receiver(take_ended, dispatch_uid="api_take_events")
def record_take_events(sender, take: Take, **kwargs) -> None:

    if take.status not in TAKE_EVENTS:
        return
    take = Take.objects.dangerously_unscoped().select_related("video_model", "shot").get(pk=take.pk)
    take_event, video_event = TAKE_EVENTS[take.status]
    with transaction.atomic():
        emit(take.workspace_id, take_event, take_json(take))
        emit(take.workspace_id, video_event, video_object(take))


@receiver(rough_cut_ended, dispatch_uid="api_rough_cut_events")
def record_rough_cut_events(sender, rough_cut: RoughCut, **kwargs) -> None:

    if rough_cut.status not in ROUGH_CUT_EVENTS:
        return
    with transaction.atomic():
        emit(rough_cut.workspace_id, ROUGH_CUT_EVENTS[rough_cut.status], rough_cut_json(rough_cut))


def rough_cut_json(cut: RoughCut) -> dict:
    """A rough cut as its webhook carries it: the API's object without signed links (they
    would expire while deliveries retry; `url` answers fresh ones to the workspace's key),
    plus `links` to the studio's downloads (for a signed-in person)."""

    base = settings.PUBLIC_BASE_URL.rstrip("/")
    data = dict(RoughCutSerializer(cut, context={"files": False}).data)
    data["links"] = {
        kind: base + reverse("rough_cut_download", args=[cut.pk, kind])
        for kind in (cut.stored_files() if cut.status == RoughCutStatus.SUCCEEDED else ())
    }
    return data


@receiver(post_save, sender=Take, dispatch_uid="api_take_created")
def _take_created(sender, instance: Take, created: bool, **kwargs) -> None:
    if created:
        workspace_id = instance.workspace_id
        transaction.on_commit(lambda: check_low_balance(workspace_id), robust=True)


def check_low_balance(workspace_id: int) -> None:

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
