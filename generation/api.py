"""The JSON API the browser (and tests) use for takes: submit, read, cancel, finalize.

Session-authenticated, scoped to `request.workspace`: another workspace's take is a 404.
"""

from __future__ import annotations

import uuid

from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from workers.media import signed_media_url

from .lifecycle import TakeActionError, cancel_take
from .models import Project, Take, TakeStatus
from .queue import queue_position
from .submission import SubmissionError, TakeSpec, finalize_take, submit_takes


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


def _error(exc: SubmissionError) -> Response:
    return Response({"detail": exc.message, "field": exc.field}, status=exc.status)


def _int(data, name: str, default: int | None = None) -> int | None:
    raw = data.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except (TypeError, ValueError) as exc:
        raise SubmissionError(
            _("%(field)s must be a whole number.") % {"field": name}, name
        ) from exc


def _workspace(request: Request):
    if request.workspace is None:
        raise Http404
    return request.workspace


def _take(request: Request, take_id: uuid.UUID) -> Take:
    take = (
        Take.objects.for_workspace(_workspace(request))
        .select_related("video_model", "node")
        .filter(pk=take_id)
        .first()
    )
    if take is None:
        raise Http404
    return take


@api_view(["POST"])
def takes(request: Request) -> Response:
    workspace = _workspace(request)
    data = request.data
    try:
        project = None
        project_id = _int(data, "project")
        if project_id is not None:
            project = Project.objects.for_workspace(workspace).filter(pk=project_id).first()
            if project is None:
                raise SubmissionError(_("Unknown project."), "project", status=404)
        spec = TakeSpec(
            model=str(data.get("model", "")),
            prompt=str(data.get("prompt", "")),
            negative_prompt=str(data.get("negative_prompt", "")),
            resolution=str(data.get("resolution", "")),
            duration=_int(data, "duration", 0),
            aspect_ratio=str(data.get("aspect_ratio", "")),
            fps=_int(data, "fps"),
            count=_int(data, "count", 1),
            mode=str(data.get("mode", "standard")),
            seed=_int(data, "seed"),
        )
        key = request.headers.get("Idempotency-Key") or str(data.get("idempotency_key", ""))
        created = submit_takes(
            workspace,
            request.user,
            spec,
            idempotency_key=key,
            image=request.FILES.get("image"),
            project=project,
            last_frame=request.FILES.get("last_frame"),
        )
    except SubmissionError as exc:
        return _error(exc)
    return Response({"takes": [take_json(t) for t in created]}, status=201)


@api_view(["GET"])
def take_detail(request: Request, take_id: uuid.UUID) -> Response:
    return Response(take_json(_take(request, take_id)))


@api_view(["POST"])
def take_cancel(request: Request, take_id: uuid.UUID) -> Response:
    take = _take(request, take_id)
    try:
        take = cancel_take(take)
    except TakeActionError as exc:
        return Response({"detail": str(exc)}, status=409)
    return Response(take_json(_take(request, take.pk)))


@api_view(["POST"])
def take_finalize(request: Request, take_id: uuid.UUID) -> Response:
    draft = _take(request, take_id)
    key = request.headers.get("Idempotency-Key") or str(
        request.data.get("idempotency_key") or f"finalize:{draft.pk}"
    )
    try:
        final = finalize_take(
            draft,
            request.user,
            idempotency_key=key,
            resolution=request.data.get("resolution") or None,
        )
    except SubmissionError as exc:
        return _error(exc)
    return Response(take_json(final), status=201)
