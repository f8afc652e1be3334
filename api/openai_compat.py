"""`/v1/`: the OpenAI-compatible video API, so the `openai` SDK works unmodified.

`POST /v1/videos` maps OpenAI's fields onto a Retake take (`model` is a Retake model slug,
`seconds` one of the model's durations, `size` a `WIDTHxHEIGHT` of one of its resolutions
and aspect ratios, `input_reference` an image for image-to-video) and submits it through
`submit_takes`, like the studio. Errors use OpenAI's shape, so the SDK raises the matching
exception (`BadRequestError`, `AuthenticationError`, …).
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import tempfile
import uuid
from datetime import datetime, timedelta

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.db.models import Q
from django.http import Http404
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from billing import plans
from generation.lifecycle import TakeActionError, cancel_take
from generation.models import TERMINAL, Take, TakeStatus, VideoModel
from generation.submission import TakeSpec, frame_size, submit_takes
from workers import media
from workers.views import stream_stored_file

from . import idempotency
from .base import OpenAIViewSet
from .errors import ApiError
from .models import HiddenTake
from .serializers import refuse_unstorable

ID_PREFIX = "video_"
SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
STATUS = {
    TakeStatus.QUEUED: "queued",
    TakeStatus.DISPATCHING: "in_progress",
    TakeStatus.RUNNING: "in_progress",
    TakeStatus.FINALIZING: "in_progress",
    TakeStatus.SUCCEEDED: "completed",
    TakeStatus.FAILED: "failed",
    TakeStatus.CANCELED: "failed",
    TakeStatus.EXPIRED: "failed",
}
ERROR_CODE = {
    TakeStatus.FAILED: "generation_failed",
    TakeStatus.CANCELED: "canceled",
    TakeStatus.EXPIRED: "expired",
}


def video_id(take: Take) -> str:
    return f"{ID_PREFIX}{take.pk.hex}"


def take_uuid(value: str) -> uuid.UUID:
    if not value.startswith(ID_PREFIX):
        raise Http404
    try:
        return uuid.UUID(hex=value[len(ID_PREFIX) :])
    except ValueError as exc:
        raise Http404 from exc


def _epoch(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None


def video_object(take: Take, retention_days: int | None = None) -> dict:
    status = STATUS[take.status]
    expires_at = None
    if take.status == TakeStatus.SUCCEEDED and take.finished_at and retention_days:
        expires_at = _epoch(take.finished_at + timedelta(days=retention_days))
    return {
        "id": video_id(take),
        "object": "video",
        "created_at": _epoch(take.created_at),
        "completed_at": _epoch(take.finished_at) if take.is_terminal else None,
        "status": status,
        "progress": 100
        if status == "completed"
        else (take.progress if status == "in_progress" else 0),
        "model": take.video_model.slug,
        "seconds": str(take.duration_seconds),
        "size": f"{take.width}x{take.height}",
        "prompt": take.shot.prompt,
        "error": {"code": ERROR_CODE[take.status], "message": take.error or take.status}
        if take.status in ERROR_CODE
        else None,
        "expires_at": expires_at,
        "remixed_from_video_id": None,
        # Retake's own fields.
        "price_credits": take.quote.get("total"),
        "charged_credits": take.charged,
        "take_id": str(take.pk),
    }


# --- schema ------------------------------------------------------------------------------


class VideoErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class VideoSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.ChoiceField(choices=["video"])
    created_at = serializers.IntegerField()
    completed_at = serializers.IntegerField(allow_null=True)
    status = serializers.ChoiceField(choices=["queued", "in_progress", "completed", "failed"])
    progress = serializers.IntegerField()
    model = serializers.CharField()
    seconds = serializers.CharField()
    size = serializers.CharField()
    prompt = serializers.CharField()
    error = VideoErrorSerializer(allow_null=True)
    expires_at = serializers.IntegerField(allow_null=True)
    remixed_from_video_id = serializers.CharField(allow_null=True)
    price_credits = serializers.IntegerField(help_text="The quoted (and held) price in credits.")
    charged_credits = serializers.IntegerField(help_text="Credits charged; 0 for failures.")
    take_id = serializers.UUIDField(help_text="The Retake take behind this video.")


class VideoListSerializer(serializers.Serializer):
    object = serializers.ChoiceField(choices=["list"])
    data = VideoSerializer(many=True)
    first_id = serializers.CharField(allow_null=True)
    last_id = serializers.CharField(allow_null=True)
    has_more = serializers.BooleanField()


class VideoDeletedSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.ChoiceField(choices=["video.deleted"])
    deleted = serializers.BooleanField()


class VideoCreateSerializer(serializers.Serializer):
    prompt = serializers.CharField(max_length=10_000, validators=[refuse_unstorable])
    model = serializers.CharField(required=False, max_length=80, validators=[refuse_unstorable])
    seconds = serializers.CharField(required=False, max_length=8, help_text='e.g. 5 or "5"')
    size = serializers.CharField(required=False, max_length=16, help_text="WIDTHxHEIGHT")
    input_reference = serializers.FileField(
        required=False, help_text="An image (PNG, JPEG, WebP): image-to-video."
    )


class ListParamsSerializer(serializers.Serializer):
    after = serializers.CharField(required=False, max_length=80)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)
    order = serializers.ChoiceField(choices=["asc", "desc"], required=False, default="desc")


class ContentParamsSerializer(serializers.Serializer):
    variant = serializers.ChoiceField(
        choices=["video", "thumbnail", "spritesheet"], required=False, default="video"
    )


class ModelObjectSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.ChoiceField(choices=["model"])
    created = serializers.IntegerField()
    owned_by = serializers.CharField()


class ModelListSerializer(serializers.Serializer):
    object = serializers.ChoiceField(choices=["list"])
    data = ModelObjectSerializer(many=True)


OPENAI_ERRORS = {
    code: OpenApiResponse(
        description=f"OpenAI error shape: {{'error': {{message, type, param, code}}}} ({code})"
    )
    for code in (400, 401, 403, 404, 409, 429)
}


# --- views -------------------------------------------------------------------------------


def _seconds(raw, model: VideoModel) -> int:
    allowed = ", ".join(str(d) for d in model.durations)
    bad = ApiError(
        _("seconds must be one of %(allowed)s for %(model)s.")
        % {"allowed": allowed, "model": model.slug},
        "seconds",
        code="invalid_seconds",
    )
    try:
        value = float(str(raw).strip())
    except ValueError as exc:
        raise bad from exc
    if not value.is_integer() or int(value) not in model.durations:
        raise bad
    return int(value)


def _sizes(model: VideoModel) -> dict[str, tuple[str, str]]:
    sizes = {}
    for resolution in model.resolutions:
        for aspect in model.aspect_ratios or ["16:9"]:
            width, height = frame_size(resolution, aspect, model)
            sizes.setdefault(f"{width}x{height}", (resolution, aspect))
    return sizes


def _size(raw: str, model: VideoModel) -> tuple[str, str]:
    sizes = _sizes(model)
    match = SIZE.match(str(raw).strip())
    if match is None or match.group(0) not in sizes:
        raise ApiError(
            _("size must be one of %(sizes)s for %(model)s.")
            % {"sizes": ", ".join(sizes), "model": model.slug},
            "size",
            code="invalid_size",
        )
    return sizes[match.group(0)]


def _reference(value) -> SimpleUploadedFile | None:
    """A multipart file as is; a JSON `{"image_url": "data:…"}` decoded (no remote fetches)."""
    if value in (None, ""):
        return None
    if hasattr(value, "read"):
        return value
    url = value.get("image_url") if isinstance(value, dict) else None
    if not isinstance(url, str) or not url.startswith("data:") or "," not in url:
        raise ApiError(
            _('input_reference must be an uploaded image or {"image_url": "data:…"}.'),
            "input_reference",
        )
    header, _comma, payload = url.partition(",")
    try:
        data = base64.b64decode(payload, validate=True) if ";base64" in header else payload.encode()
    except (binascii.Error, ValueError) as exc:
        raise ApiError(_("input_reference is not valid base64."), "input_reference") from exc
    return SimpleUploadedFile("reference", data)


class VideoViewSet(OpenAIViewSet):
    submission_actions = ("create",)
    pagination_class = None
    serializer_class = VideoSerializer

    def _takes(self):
        hidden = HiddenTake.objects.for_workspace(self.workspace).values("take_id")
        return (
            Take.objects.for_workspace(self.workspace)
            .exclude(pk__in=hidden)
            .select_related("video_model", "shot")
        )

    def _take(self, video_id: str) -> Take:
        take = self._takes().filter(pk=take_uuid(video_id)).first()
        if take is None:
            raise Http404
        return take

    def _retention(self) -> int:
        return plans.plan_for(self.workspace).retention_days

    @extend_schema(
        operation_id="create_video",
        request={
            "multipart/form-data": VideoCreateSerializer,
            "application/json": VideoCreateSerializer,
        },
        responses={
            200: VideoSerializer,
            402: OpenApiResponse(description="Not enough credits."),
            **OPENAI_ERRORS,
        },
    )
    def create(self, request):
        key, print_, replayed = idempotency.begin(request, self.workspace)
        if replayed is not None:
            return replayed
        data = request.data
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ApiError(_("prompt is required."), "prompt", code="missing_prompt")
        slug = data.get("model")
        # NUL and lone surrogates are refused before they reach a query or a message.
        checked = {"prompt": prompt[:10_001]}
        if isinstance(slug, str) and slug:
            checked["model"] = slug[:81]
        VideoCreateSerializer(data=checked).is_valid(raise_exception=True)
        active = VideoModel.objects.filter(is_active=True)
        if slug in (None, ""):
            model = active.order_by("name").first()
        else:
            model = active.filter(slug=str(slug)).first() if isinstance(slug, str) else None
        if model is None:
            raise ApiError(
                _("Unknown model %(model)s. Available models: %(models)s.")
                % {"model": slug, "models": ", ".join(active.values_list("slug", flat=True))},
                "model",
                code="model_not_found",
            )
        seconds = (
            _seconds(data["seconds"], model)
            if data.get("seconds") not in (None, "")
            else min(model.durations)
        )
        if data.get("size") in (None, ""):
            resolution, aspect = next(iter(_sizes(model).values()))
        else:
            resolution, aspect = _size(data["size"], model)
        take_key = f"v1:{key}" if key else f"v1:auto:{uuid.uuid4()}"
        [take] = submit_takes(
            self.workspace,
            request.user,
            TakeSpec(
                model=model.slug,
                prompt=prompt,
                resolution=resolution,
                duration=seconds,
                aspect_ratio=aspect,
            ),
            idempotency_key=take_key,
            image=_reference(data.get("input_reference")),
            api_key=self.api_key,
        )
        take = self._takes().get(pk=take.pk)
        response = Response(video_object(take, self._retention()))
        if key:
            return idempotency.remember(self.workspace, key, print_, response)
        return response

    @extend_schema(
        operation_id="list_videos",
        parameters=[ListParamsSerializer],
        responses={200: VideoListSerializer, **OPENAI_ERRORS},
    )
    def index(self, request):
        params = ListParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        p = params.validated_data
        takes = self._takes()
        descending = p["order"] == "desc"
        ordering = ("-created_at", "-pk") if descending else ("created_at", "pk")
        takes = takes.order_by(*ordering)
        if p.get("after"):
            anchor = self._take(p["after"])
            if descending:
                takes = takes.filter(
                    Q(created_at__lt=anchor.created_at)
                    | Q(created_at=anchor.created_at, pk__lt=anchor.pk)
                )
            else:
                takes = takes.filter(
                    Q(created_at__gt=anchor.created_at)
                    | Q(created_at=anchor.created_at, pk__gt=anchor.pk)
                )
        page = list(takes[: p["limit"] + 1])
        has_more = len(page) > p["limit"]
        page = page[: p["limit"]]
        retention = self._retention()
        data = [video_object(t, retention) for t in page]
        return Response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": has_more,
            }
        )

    @extend_schema(operation_id="retrieve_video", responses={200: VideoSerializer, **OPENAI_ERRORS})
    def retrieve(self, request, video_id=None):
        return Response(video_object(self._take(video_id), self._retention()))

    @extend_schema(
        operation_id="delete_video", responses={200: VideoDeletedSerializer, **OPENAI_ERRORS}
    )
    def destroy(self, request, video_id=None):
        take = self._take(video_id)
        if take.status not in TERMINAL:
            try:
                cancel_take(take)
            except TakeActionError:
                pass  # it finished meanwhile: hiding it is all that is left to do
        with transaction.atomic():
            HiddenTake.objects.for_workspace(self.workspace).get_or_create(take=take)
        return Response({"id": video_id, "object": "video.deleted", "deleted": True})

    @extend_schema(
        operation_id="download_video_content",
        parameters=[
            ContentParamsSerializer,
            OpenApiParameter("Range", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False),
        ],
        responses={
            (200, "video/mp4"): OpenApiTypes.BINARY,
            (200, "image/jpeg"): OpenApiTypes.BINARY,
            (206, "video/mp4"): OpenApiTypes.BINARY,
            416: OpenApiResponse(description="The Range does not fit the file."),
            **OPENAI_ERRORS,
        },
    )
    def content(self, request, video_id=None):
        params = ContentParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        take = self._take(video_id)
        if take.status != TakeStatus.SUCCEEDED or not take.output_original:
            raise ApiError(
                _("The video is %(status)s; content is ready once it is completed.")
                % {"status": STATUS[take.status]},
                None,
                status_code=409,
                code="video_not_ready",
            )
        variant = params.validated_data["variant"]
        if variant == "video":
            return stream_stored_file(request, take.output_original, "video/mp4")
        if variant == "thumbnail":
            return stream_stored_file(request, take.output_poster, "image/jpeg")
        return stream_stored_file(request, _spritesheet(take), "image/jpeg")


def _spritesheet(take: Take) -> str:
    """The take's spritesheet, made from the original the first time it is asked for."""
    name = f"spritesheets/{take.workspace_id}/{take.pk}.jpg"
    if default_storage.exists(name):
        return name
    with default_storage.open(take.output_original, "rb") as src:
        original = io.BytesIO(src.read())
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "sheet.jpg")
        media.make_spritesheet(original, path)
        with open(path, "rb") as sheet:
            saved = default_storage.save(name, ContentFile(sheet.read()))
    return saved


class ModelListViewSet(OpenAIViewSet):
    pagination_class = None
    serializer_class = ModelObjectSerializer

    @extend_schema(
        operation_id="list_models", responses={200: ModelListSerializer, **OPENAI_ERRORS}
    )
    def index(self, request):
        data = [
            {"id": slug, "object": "model", "created": 0, "owned_by": "retake"}
            for slug in VideoModel.objects.filter(is_active=True).values_list("slug", flat=True)
        ]
        return Response({"object": "list", "data": data})
