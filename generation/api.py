"""A take as JSON: the one rendering `/api/v1/takes/` (api.v1), its webhooks and the
studio's JSON readers share. The endpoints themselves live in the `api` app."""

from __future__ import annotations

from config.media_links import signed_media_url

from .models import Take, TakeStatus
from .queue import queue_position


def take_json(take: Take) -> dict:
    outputs = {}
    if take.status == TakeStatus.SUCCEEDED:
        outputs = {
            "video": signed_media_url(take.output_original),
            "poster": signed_media_url(take.output_poster),
            "preview": signed_media_url(take.output_preview),
        }
    return {
        "id": str(take.pk),
        "status": take.status,
        "progress": take.progress,
        "queue_position": queue_position(take),
        "model": take.video_model.slug,
        "mode": take.mode,
        "resolution": take.resolution,
        "aspect_ratio": take.aspect_ratio,
        "width": take.width,
        "height": take.height,
        "duration_seconds": take.duration_seconds,
        "fps": take.fps,
        "seed": take.seed,
        "shot": take.shot_id,
        "draft_of": str(take.draft_of_id) if take.draft_of_id else None,
        "attempts": take.attempts,
        "error": take.error,
        "price": take.quote.get("total"),
        "quote": take.quote,
        "charged": take.charged,
        "measured": {
            "duration_seconds": take.measured_duration,
            "fps": take.measured_fps,
            "width": take.measured_width,
            "height": take.measured_height,
            "codec": take.measured_codec,
        }
        if take.measured_duration is not None
        else None,
        "deadline": take.deadline.isoformat() if take.deadline else None,
        "created_at": take.created_at.isoformat(),
        "finished_at": take.finished_at.isoformat() if take.finished_at else None,
        "outputs": outputs,
    }
