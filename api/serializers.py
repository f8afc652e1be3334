"""What `/api/v1/` accepts and answers, as DRF serializers (the OpenAPI schema reads these)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing import pricing
from billing.models import CreditLot, CreditSource, EntryKind, LedgerEntry
from config.media_links import signed_media_url
from generation.api import take_json
from generation.models import (
    Project,
    Resolution,
    RoughCut,
    RoughCutStatus,
    Shot,
    Take,
    TakeStatus,
    VideoModel,
)
from generation.roughcut import CROSSFADE_MAX_MS
from generation.submission import MAX_SEED

from .models import DeliveryAttempt, DeliveryStatus, EventType, WebhookDelivery, WebhookEndpoint

INT_MAX = 2**31 - 1


def refuse_unstorable(value: str) -> str:
    """PostgreSQL stores neither NUL nor lone surrogates: refuse them at the edge."""
    if "\x00" in value:
        raise serializers.ValidationError(_("Must not contain NUL characters."))
    if any("\ud800" <= char <= "\udfff" for char in value):
        raise serializers.ValidationError(_("Must not contain lone surrogate characters."))
    return value


class Text(serializers.CharField):
    """A string and only a string, storable, with a maximum length."""

    default_error_messages = {"invalid": _("Must be a string.")}

    def __init__(self, *, max_length: int, **kwargs) -> None:
        kwargs.setdefault("validators", []).append(refuse_unstorable)
        super().__init__(max_length=max_length, **kwargs)

    def run_validation(self, data=serializers.empty):
        if data is not serializers.empty and data is not None and not isinstance(data, str):
            self.fail("invalid")
        return super().run_validation(data)


class WholeNumber(serializers.IntegerField):
    """An int (not a bool or float) or a string of digits (forms), bounded."""

    default_error_messages = {"invalid": _("Must be a whole number.")}

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", INT_MAX)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("invalid")
        if isinstance(data, str):
            text = data.strip()
            if not text.isascii() or not text.lstrip("+-").isdigit() or len(text) > 12:
                self.fail("invalid")
            data = int(text)
        return super().to_internal_value(data)


# --- catalog and quotes -----------------------------------------------------------------


class CapabilitiesSerializer(serializers.Serializer):
    text_to_video = serializers.BooleanField()
    image_to_video = serializers.BooleanField()
    first_last_frame = serializers.BooleanField()


class PriceSerializer(serializers.Serializer):
    resolution = serializers.CharField()
    mode = serializers.ChoiceField(choices=pricing.Mode.choices)
    credits_per_second = serializers.CharField(
        help_text="Credits per second of output now, for this workspace's plan (a decimal)."
    )
    window = serializers.CharField(help_text="The pricing window in force (peak, off_peak…).")


class VideoModelSerializer(serializers.Serializer):
    id = serializers.CharField(source="slug")
    name = serializers.CharField()
    family = serializers.CharField()
    capabilities = serializers.SerializerMethodField()
    resolutions = serializers.ListField(child=serializers.CharField())
    durations = serializers.ListField(child=serializers.IntegerField())
    aspect_ratios = serializers.ListField(child=serializers.CharField())
    fps = serializers.ListField(child=serializers.IntegerField(), source="fps_options")
    draft_resolution = serializers.CharField()
    max_prompt_length = serializers.IntegerField()
    prices = serializers.SerializerMethodField()

    def get_capabilities(self, model: VideoModel) -> CapabilitiesSerializer:
        return {
            "text_to_video": model.supports_text_to_video,
            "image_to_video": model.supports_image_to_video,
            "first_last_frame": model.supports_first_last_frame,
        }

    def get_prices(self, model: VideoModel) -> PriceSerializer(many=True):
        context = self.context
        prices = []
        for mode in pricing.Mode.values:
            resolutions = (
                [model.draft_resolution] if mode == pricing.Mode.DRAFT else model.resolutions
            )
            for resolution in resolutions:
                try:
                    quote = pricing.quote(
                        video_model=model,
                        resolution=resolution,
                        seconds=1,
                        mode=mode,
                        plan=context["plan"],
                        rate_card=context["rate_cards"].get(model.pk),
                        schedule=context["schedule"],
                        at=context["at"],
                    )
                except pricing.QuoteError:
                    continue
                per_second = (
                    Decimal(0) if quote.plan_effect else Decimal(quote.base_rate) * quote.multiplier
                )
                prices.append(
                    {
                        "resolution": resolution,
                        "mode": mode,
                        "credits_per_second": format(per_second.normalize(), "f"),
                        "window": quote.window,
                    }
                )
        return prices


class QuoteRequestSerializer(serializers.Serializer):
    model = Text(max_length=80)
    resolution = Text(max_length=16, required=False, allow_blank=True, default="")
    duration = WholeNumber(max_value=3600)
    mode = serializers.ChoiceField(choices=pricing.Mode.choices, default=pricing.Mode.STANDARD)
    aspect_ratio = Text(max_length=16, required=False, allow_blank=True, default="")
    has_image = serializers.BooleanField(default=False)


class QuoteSerializer(serializers.Serializer):
    model_slug = serializers.CharField()
    resolution = serializers.CharField()
    mode = serializers.CharField()
    seconds = serializers.IntegerField()
    base_rate = serializers.IntegerField(help_text="Credits per second at this resolution.")
    multiplier = serializers.CharField(help_text="The pricing window's multiplier (decimal).")
    window = serializers.CharField()
    plan_effect = serializers.CharField(help_text='"off_peak_free" when the plan makes it free.')
    total = serializers.IntegerField(help_text="Credits held now; the most it can cost.")
    next_off_peak_at = serializers.DateTimeField(allow_null=True)


class QuoteAnswerSerializer(serializers.Serializer):
    quote = QuoteSerializer()
    available = serializers.IntegerField(help_text="Credits the workspace can spend now.")


# --- takes ------------------------------------------------------------------------------


class TakeCreateSerializer(serializers.Serializer):
    model = Text(max_length=80)
    prompt = Text(max_length=10_000, trim_whitespace=False)
    negative_prompt = Text(max_length=10_000, required=False, allow_blank=True, default="")
    resolution = serializers.ChoiceField(
        choices=Resolution.choices, required=False, allow_blank=True, default=""
    )
    duration = WholeNumber(max_value=3600)
    aspect_ratio = Text(max_length=16, required=False, allow_blank=True, default="")
    fps = WholeNumber(required=False, allow_null=True, min_value=1, max_value=240)
    count = WholeNumber(required=False, min_value=1, max_value=100, default=1)
    mode = serializers.ChoiceField(choices=pricing.Mode.choices, default=pricing.Mode.STANDARD)
    seed = WholeNumber(required=False, allow_null=True, max_value=MAX_SEED)
    project = WholeNumber(required=False, allow_null=True, min_value=1)
    image = serializers.FileField(required=False, help_text="Reference (first) frame.")
    last_frame = serializers.FileField(required=False, help_text="Frame the video ends on.")


class FinalizeSerializer(serializers.Serializer):
    resolution = serializers.ChoiceField(
        choices=Resolution.choices, required=False, allow_blank=True, default=""
    )


class MeasuredSerializer(serializers.Serializer):
    duration_seconds = serializers.FloatField()
    fps = serializers.FloatField(allow_null=True)
    width = serializers.IntegerField(allow_null=True)
    height = serializers.IntegerField(allow_null=True)
    codec = serializers.CharField()


class OutputsSerializer(serializers.Serializer):
    video = serializers.URLField(required=False, help_text="Signed link to the original.")
    poster = serializers.URLField(required=False)
    preview = serializers.URLField(required=False)


class TakeSerializer(serializers.Serializer):
    """A take as `generation.api.take_json` renders it (the studio reads the same)."""

    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=TakeStatus.choices)
    progress = serializers.IntegerField()
    queue_position = serializers.IntegerField(allow_null=True)
    model = serializers.CharField()
    mode = serializers.CharField()
    resolution = serializers.CharField()
    aspect_ratio = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    duration_seconds = serializers.IntegerField()
    fps = serializers.IntegerField()
    seed = serializers.IntegerField()
    shot = serializers.IntegerField()
    draft_of = serializers.UUIDField(allow_null=True)
    attempts = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True)
    price = serializers.IntegerField(allow_null=True, help_text="The quoted total (credits).")
    quote = QuoteSerializer()
    charged = serializers.IntegerField(help_text="Credits actually charged (0 unless delivered).")
    measured = MeasuredSerializer(allow_null=True)
    deadline = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    outputs = OutputsSerializer()

    def to_representation(self, take: Take) -> dict:
        return take_json(take)


class TakeListSerializer(serializers.Serializer):
    takes = TakeSerializer(many=True)


# --- projects and shots -----------------------------------------------------------------


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "name", "is_inbox", "created_at"]
        read_only_fields = ["id", "is_inbox", "created_at"]


class ProjectCreateSerializer(serializers.Serializer):
    name = Text(max_length=120)


class ShotSerializer(serializers.ModelSerializer):
    has_reference_image = serializers.SerializerMethodField()
    has_last_frame = serializers.SerializerMethodField()

    class Meta:
        model = Shot
        fields = [
            "id",
            "project",
            "title",
            "prompt",
            "negative_prompt",
            "has_reference_image",
            "has_last_frame",
            "chosen_take",
            "created_at",
        ]

    def get_has_reference_image(self, shot: Shot) -> bool:
        return bool(shot.reference_image)

    def get_has_last_frame(self, shot: Shot) -> bool:
        return bool(shot.last_frame_image)


# --- rough cuts -------------------------------------------------------------------------


class RoughCutCreateSerializer(serializers.Serializer):
    crossfade_ms = WholeNumber(
        required=False,
        default=0,
        max_value=CROSSFADE_MAX_MS,
        help_text="A dissolve between clips, in milliseconds (0 = hard cuts); shorter than "
        "the shortest clip.",
    )


class RoughCutClipSerializer(serializers.Serializer):
    shot = serializers.IntegerField()
    title = serializers.CharField()
    take = serializers.UUIDField()
    file = serializers.CharField(
        required=False, help_text="The take's download name: what the timeline's clip points at."
    )
    frames = serializers.IntegerField(required=False)
    seconds = serializers.FloatField()


class RoughCutFileSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="A signed link: no key needed, until `expires_at`.")
    name = serializers.CharField(help_text="The file name it downloads as.")
    expires_at = serializers.DateTimeField()


# One entry per file kind the model stores (RoughCut.FILES): a new output needs no change here.
RoughCutFilesSerializer = type(
    "RoughCutFilesSerializer",
    (serializers.Serializer,),
    {
        "__doc__": "Signed download links by kind; null for a file this cut does not have.",
        **{kind: RoughCutFileSerializer(allow_null=True) for kind in RoughCut.FILES},
    },
)


class RoughCutSerializer(serializers.Serializer):
    """A rough-cut export: one MP4 of a project's chosen takes and its timeline files."""

    id = serializers.UUIDField()
    object = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField(help_text="This rough cut in the API.")
    project = serializers.IntegerField(source="project_id")
    status = serializers.ChoiceField(choices=RoughCutStatus.choices)
    progress = serializers.IntegerField(help_text="0 to 100.")
    crossfade_ms = serializers.IntegerField()
    clips = RoughCutClipSerializer(many=True, help_text="What went in, in timeline order.")
    width = serializers.IntegerField(allow_null=True)
    height = serializers.IntegerField(allow_null=True)
    fps = serializers.IntegerField(allow_null=True)
    duration_seconds = serializers.FloatField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    files = serializers.SerializerMethodField(
        help_text="Once succeeded: short-lived signed links to each file (read the rough cut "
        "again for fresh ones); null before."
    )

    def to_representation(self, cut: RoughCut) -> dict:
        data = super().to_representation(cut)
        if not self.context.get("files", True):
            del data["files"]
        return data

    @extend_schema_field(serializers.ChoiceField(choices=["rough_cut"]))
    def get_object(self, cut: RoughCut) -> str:
        return "rough_cut"

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, cut: RoughCut) -> str:
        return settings.PUBLIC_BASE_URL.rstrip("/") + reverse("api_v1_rough_cut", args=[cut.pk])

    @extend_schema_field(RoughCutFilesSerializer(allow_null=True))
    def get_files(self, cut: RoughCut) -> dict | None:
        if cut.status != RoughCutStatus.SUCCEEDED or not self.context.get("files", True):
            return None
        ttl = settings.SIGNED_URL_TTL_SECONDS
        expires_at = timezone.now() + timedelta(seconds=ttl)
        stored = cut.stored_files()
        files = {kind: None for kind in RoughCut.FILES}
        for kind, name in stored.items():
            download = cut.download_name(kind)
            files[kind] = {
                "url": signed_media_url(name, ttl, download_name=download),
                "name": download,
                "expires_at": expires_at,
            }
        return RoughCutFilesSerializer(files).data


# --- wallet -----------------------------------------------------------------------------


class WalletSerializer(serializers.Serializer):
    balance = serializers.IntegerField(help_text="Credits not held by running takes.")
    held = serializers.IntegerField(help_text="Credits held by takes not yet settled.")
    available = serializers.IntegerField(help_text="Credits that can be spent now.")


class LotSerializer(serializers.ModelSerializer):
    source = serializers.ChoiceField(choices=CreditSource.choices)

    class Meta:
        model = CreditLot
        fields = [
            "id",
            "source",
            "amount",
            "remaining",
            "priority",
            "effective_at",
            "expires_at",
            "expired_at",
            "created_at",
        ]


class LedgerEntrySerializer(serializers.ModelSerializer):
    kind = serializers.ChoiceField(choices=EntryKind.choices)

    class Meta:
        model = LedgerEntry
        fields = [
            "id",
            "kind",
            "amount",
            "held_delta",
            "balance_after",
            "lot",
            "hold",
            "reason",
            "created_at",
        ]


class UsageSerializer(serializers.Serializer):
    day = serializers.DateField()
    model = serializers.CharField()
    takes = serializers.IntegerField()
    seconds = serializers.FloatField(help_text="Measured seconds delivered.")
    credits = serializers.IntegerField(help_text="Credits charged.")


class UsageListSerializer(serializers.Serializer):
    since = serializers.DateField()
    usage = UsageSerializer(many=True)


# --- webhooks ---------------------------------------------------------------------------


class WebhookEndpointSerializer(serializers.ModelSerializer):
    url = serializers.URLField(max_length=500, validators=[refuse_unstorable])
    description = Text(max_length=200, required=False, allow_blank=True)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices), min_length=1, max_length=20
    )
    low_balance_threshold = WholeNumber(required=False, allow_null=True)
    secret = serializers.CharField(
        read_only=True, help_text="Verify signatures with this (Standard Webhooks)."
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "description",
            "event_types",
            "is_active",
            "low_balance_threshold",
            "secret",
            "disabled_at",
            "failing_since",
            "created_at",
        ]
        read_only_fields = ["id", "secret", "disabled_at", "failing_since", "created_at"]

    def validate_url(self, value: str) -> str:
        from .webhooks import UnsafeURL, check_url_shape

        try:
            check_url_shape(value)
        except UnsafeURL as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return value

    def validate_event_types(self, value: list[str]) -> list[str]:
        return sorted(set(value))


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["at", "status_code", "duration_ms", "response_body", "error"]


class WebhookDeliverySerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    attempt_log = DeliveryAttemptSerializer(many=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "endpoint",
            "message_id",
            "event_type",
            "payload",
            "status",
            "attempts",
            "next_attempt_at",
            "last_attempt_at",
            "response_status",
            "response_body",
            "response_ms",
            "error",
            "created_at",
            "attempt_log",
        ]
