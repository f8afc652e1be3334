"""What a node tells us about a take: progress, outputs, completion.

The same handler serves webhooks and poll answers (a re-sent PUT). It acts only for the
take's current attempt on its current node and only while the take is live there, so a
replayed, late or forged call changes nothing.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from datetime import timedelta
from typing import IO, Any

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.text import get_valid_filename

from generation.lifecycle import release_take_hold
from generation.models import ACTIVE_ON_NODE, Node, Take, TakeStatus

from .backends import PermanentBackendError
from .backends.cog import decode_output, parse_progress

log = logging.getLogger(__name__)


def _lock_take(take_id) -> Take | None:
    return Take.objects.dangerously_unscoped().select_for_update().filter(pk=take_id).first()


def secret_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _after_commit_dispatch() -> None:
    from .tasks import dispatch_takes

    transaction.on_commit(lambda: dispatch_takes.delay())


def _fail_locked(take: Take, error: str) -> None:
    take.status = TakeStatus.FAILED
    take.error = error[:2000]
    take.finished_at = timezone.now()
    take.lease_expires_at = None
    take.save(update_fields=["status", "error", "finished_at", "lease_expires_at"])
    release_take_hold(take, reason="take failed")
    _after_commit_dispatch()


def apply_prediction(
    take_id: uuid.UUID | str,
    payload: dict[str, Any],
    *,
    node_id: int | None = None,
    secret: str | None = None,
) -> bool:
    """Apply a prediction state to a live take. Returns False if the caller is not the
    take's current attempt (wrong secret or node); True otherwise, even when the state
    was stale and changed nothing."""
    with transaction.atomic():
        take = _lock_take(take_id)
        if take is None:
            return False
        if secret is not None and not secret_matches(secret, take.webhook_secret):
            return False
        if node_id is not None and take.node_id != node_id:
            return False
        if take.status not in ACTIVE_ON_NODE:
            return True
        status = payload.get("status")
        now = timezone.now()
        lease = now + timedelta(seconds=settings.TAKE_LEASE_SECONDS)
        if status in ("starting", "processing"):
            progress = parse_progress(payload.get("logs"))
            take.status = TakeStatus.RUNNING
            take.progress = max(take.progress, progress or 0)
            take.lease_expires_at = lease
            take.save(update_fields=["status", "progress", "lease_expires_at"])
        elif status == "succeeded":
            _accept_output(take, payload.get("output"), lease)
        elif status in ("failed", "canceled"):
            error = payload.get("error") or f"The node reported the prediction {status}."
            _fail_locked(take, str(error))
        return True


def _accept_output(take: Take, output: Any, lease) -> None:
    try:
        data = decode_output(output)
    except PermanentBackendError as exc:
        _fail_locked(take, str(exc))
        return
    if data is not None:
        old = take.output_original
        take.output_original = default_storage.save(
            f"takes/{take.pk}/original.mp4", ContentFile(data)
        )
        if old:
            default_storage.delete(old)
    elif not take.output_original:
        _fail_locked(take, "The node reported an output it never uploaded.")
        return
    take.status = TakeStatus.FINALIZING
    take.progress = 100
    take.lease_expires_at = lease
    take.save(update_fields=["status", "progress", "lease_expires_at", "output_original"])
    from .tasks import process_take_output

    take_id = str(take.pk)
    transaction.on_commit(lambda: process_take_output.delay(take_id))
    _after_commit_dispatch()


def nodes_for_token(token: str) -> list[int]:
    """Ids of the nodes holding this upload token (constant-time compare against each)."""
    return [
        node.pk
        for node in Node.objects.exclude(auth_token="").only("pk", "auth_token")
        if secret_matches(token, node.auth_token)
    ]


def store_upload(node_ids: list[int], take_id: str, filename: str, body: IO[bytes]) -> str | None:
    """Store a file a node uploaded for a take it is running; None if it is not."""
    try:
        take_uuid = uuid.UUID(take_id)
    except ValueError:
        return None
    take = Take.objects.dangerously_unscoped().filter(pk=take_uuid, node_id__in=node_ids).first()
    if take is None or take.status not in ACTIVE_ON_NODE:
        return None
    node_id = take.node_id
    safe = get_valid_filename(filename) or "output.mp4"
    name = default_storage.save(f"takes/{take.pk}/{uuid.uuid4().hex[:8]}-{safe}", File(body))
    with transaction.atomic():
        take = _lock_take(take.pk)
        if take.node_id != node_id or take.status not in ACTIVE_ON_NODE:
            default_storage.delete(name)
            return None
        old = take.output_original
        take.output_original = name
        take.save(update_fields=["output_original"])
    if old:
        default_storage.delete(old)
    return name
