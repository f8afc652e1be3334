"""Settling a delivered take: measure it, make its gallery assets, charge what it delivered.

Runs on the media queue after a node reports success. The platform probes the stored
original itself and charges the locked quote for the measured seconds
(`Quote.charge_for`), never more than the hold; the rest of the hold is released by
`settle_hold`. Settlement is idempotent: it acts only on a take still `finalizing`, and the
ledger call's key is derived from the take id, so a redelivered message charges nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.utils import timezone

from billing import plans
from generation import lifecycle
from generation.models import Take, TakeStatus

from . import media

log = logging.getLogger(__name__)


def _store(path: str, name: str) -> str:
    with open(path, "rb") as fh:
        return default_storage.save(name, File(fh))


def settle_take(take_id: uuid.UUID | str) -> Take | None:
    """Probe, post-process and charge a finalizing take; None if there was nothing to do."""
    take = Take.objects.dangerously_unscoped().filter(pk=take_id).first()
    if take is None or take.status != TakeStatus.FINALIZING:
        return None
    # Ours for one more lease: the sweeper re-drives only a settlement that went silent.
    Take.objects.dangerously_unscoped().filter(pk=take.pk, status=TakeStatus.FINALIZING).update(
        lease_expires_at=timezone.now() + timedelta(seconds=settings.TAKE_LEASE_SECONDS)
    )
    workdir = tempfile.mkdtemp(prefix=f"take-{take.pk}-")
    try:
        original = os.path.join(workdir, "original.mp4")
        try:
            with (
                default_storage.open(take.output_original, "rb") as src,
                open(original, "wb") as dst,
            ):
                shutil.copyfileobj(src, dst)
            info = media.probe(original)
            if info.duration_seconds <= 0:
                raise media.MediaError("the output has no duration")
            media.make_poster(original, os.path.join(workdir, "poster.jpg"))
            media.make_preview(original, os.path.join(workdir, "preview.mp4"))
            delivered = original
            if plans.plan_for(take.workspace).watermark:
                delivered = os.path.join(workdir, "watermarked.mp4")
                media.apply_watermark(original, delivered)
        except (media.MediaError, OSError) as exc:
            lifecycle.fail_take(take.pk, f"The output is not a playable video: {exc}")
            return None
        prefix = f"takes/{take.pk}"
        poster = _store(os.path.join(workdir, "poster.jpg"), f"{prefix}/poster.jpg")
        preview = _store(os.path.join(workdir, "preview.mp4"), f"{prefix}/preview.mp4")
        video = (
            _store(delivered, f"{prefix}/video.mp4")
            if delivered != original
            else take.output_original
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return lifecycle.succeed(take.pk, info, poster=poster, preview=preview, video=video)
