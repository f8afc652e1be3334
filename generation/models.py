"""The video model catalog, projects, shots and takes."""

from __future__ import annotations

import os
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.utils.text import slugify
from django.utils.translation import gettext_lazy as _

from accounts.tenancy import WorkspaceOwned

from . import display


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class Resolution(models.TextChoices):
    R480P = "480p", "480p"
    R540P = "540p", "540p"
    R720P = "720p", "720p"
    R1080P = "1080p", "1080p"


# Short side in pixels for each resolution; the aspect ratio sets the long side.
RESOLUTION_SHORT_SIDE = {"480p": 480, "540p": 540, "720p": 720, "1080p": 1080}


class VideoModel(models.Model):
    """A catalog entry, e.g. `wan2.1-t2v-1.3b`, and what it can do."""

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=120)
    family = models.CharField(max_length=60, help_text=_("e.g. Wan 2.1, HunyuanVideo, LTX-Video"))
    supports_text_to_video = models.BooleanField(default=True)
    supports_image_to_video = models.BooleanField(default=False)
    supports_first_last_frame = models.BooleanField(default=False)
    resolutions = models.JSONField(default=list, help_text=_('e.g. ["480p", "720p"]'))
    durations = models.JSONField(default=list, help_text=_("allowed seconds, e.g. [3, 5, 10]"))
    fps_options = models.JSONField(default=list, help_text=_("e.g. [16, 24]"))
    aspect_ratios = models.JSONField(default=list, help_text=_('e.g. ["16:9", "9:16", "1:1"]'))
    max_prompt_length = models.PositiveIntegerField(default=2000)
    # The sizes the model can make (generation.submission.frame_size picks the nearest):
    # width and height are multiples of size_multiple (Wan 16, LTX-Video and Wan 2.2 5B
    # 32), and a native size with the asked short side and about the asked shape wins.
    size_multiple = models.PositiveSmallIntegerField(
        default=2,
        help_text=_("Width and height are multiples of this (Wan 2.1: 16, LTX-Video: 32)."),
    )
    native_sizes = models.JSONField(
        default=list,
        blank=True,
        help_text=_('Sizes the model was trained at, e.g. ["832x480", "480x832"].'),
    )
    draft_resolution = models.CharField(max_length=8, choices=Resolution.choices, default="480p")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        sizes = self.native_sizes if isinstance(self.native_sizes, list) else None
        if sizes is None or any(parse_size(size) is None for size in sizes):
            raise ValidationError(
                {"native_sizes": _('A list of sizes written "WIDTHxHEIGHT", e.g. "832x480".')}
            )
        multiple = self.size_multiple or 1
        odd = [size for size in sizes if any(side % multiple for side in parse_size(size))]
        if odd:
            raise ValidationError(
                {
                    "native_sizes": _("%(sizes)s: not multiples of %(n)d.")
                    % {"sizes": ", ".join(odd), "n": multiple}
                }
            )

    @property
    def parsed_native_sizes(self) -> list[tuple[int, int]]:
        parsed = (parse_size(size) for size in self.native_sizes or [])
        return [size for size in parsed if size is not None]


def parse_size(value: object) -> tuple[int, int] | None:
    """(width, height) from "832x480", or None if it is not one."""
    if not isinstance(value, str):
        return None
    width, sep, height = value.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        return None
    if not 16 <= int(width) <= 8192 or not 16 <= int(height) <= 8192:
        return None
    return int(width), int(height)


class NodeState(models.TextChoices):
    ACTIVE = "active", _("Active")
    DRAINING = "draining", _("Draining")
    DOWN = "down", _("Down")


class NodePool(models.Model):
    """A group of interchangeable GPU nodes that a route sends takes to."""

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=120)

    def __str__(self) -> str:
        return self.name


class Node(models.Model):
    """One GPU inference server speaking the Cog HTTP protocol."""

    name = models.CharField(max_length=120, unique=True)
    pool = models.ForeignKey(NodePool, on_delete=models.PROTECT, related_name="nodes")
    base_url = models.URLField()
    # Sent as a bearer token to the node, and the secret in the node's upload URL.
    auth_token = models.CharField(max_length=128)
    served_models = models.ManyToManyField(VideoModel, related_name="nodes", blank=True)
    slots = models.PositiveSmallIntegerField(default=1)
    state = models.CharField(max_length=16, choices=NodeState.choices, default=NodeState.ACTIVE)
    last_health = models.CharField(max_length=32, blank=True)
    last_health_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    # What one GPU-second on this node costs the platform, in credits (margin reporting).
    cost_per_gpu_second = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    # Inputs merged into every prediction sent to this node (e.g. the reference node's speed).
    extra_input = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def backend_kind(self) -> str:
        """Which `workers.backends` client speaks to this node."""
        return "cog"


class RouteKind(models.TextChoices):
    NODE_POOL = "node_pool", _("GPU node pool")
    PROVIDER = "provider", _("Upstream provider")


class Route(models.Model):
    """Where a model can run; lower priority numbers are tried first."""

    video_model = models.ForeignKey(VideoModel, on_delete=models.CASCADE, related_name="routes")
    kind = models.CharField(max_length=16, choices=RouteKind.choices, default=RouteKind.NODE_POOL)
    pool = models.ForeignKey(
        NodePool, on_delete=models.CASCADE, related_name="routes", null=True, blank=True
    )
    provider = models.ForeignKey(
        "workers.Provider", on_delete=models.CASCADE, related_name="routes", null=True, blank=True
    )
    # The provider's name for the model: Replicate "owner/name" (or a version id), a fal
    # app id, a Kling model_name, a Runway model.
    provider_model = models.CharField(max_length=200, blank=True)
    # Provider-specific fields merged into every request on this route (e.g. Kling "mode").
    extra_input = models.JSONField(default=dict, blank=True)
    priority = models.PositiveSmallIntegerField(default=100)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["priority", "id"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(kind="node_pool") | models.Q(pool__isnull=False),
                name="route_node_pool_has_pool",
            ),
            models.CheckConstraint(
                condition=~models.Q(kind="provider")
                | (models.Q(provider__isnull=False) & ~models.Q(provider_model="")),
                name="route_provider_has_provider_and_model",
            ),
            models.UniqueConstraint(
                fields=["video_model", "provider"],
                condition=models.Q(provider__isnull=False),
                name="route_one_per_model_and_provider",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.video_model} → {self.pool or self.provider or self.kind}"


class Project(WorkspaceOwned):
    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE)
    name = models.CharField(max_length=120)
    is_inbox = models.BooleanField(default=False)
    # The creator's order on the projects page (lower first); archived projects are hidden.
    position = models.PositiveIntegerField(default=0)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace"], condition=models.Q(is_inbox=True), name="project_one_inbox"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Shot(WorkspaceOwned):
    """The prompt and references; each draw of it is a take."""

    workspace_field = "project__workspace"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="shots")
    title = models.CharField(max_length=200, blank=True)
    prompt = models.TextField(blank=True)
    negative_prompt = models.TextField(blank=True)
    # Bumped whenever the prompt changes on a shot that has takes: takes keep the version
    # they were drawn with (Take.prompt_version, Take.prompt), so the studio groups them.
    prompt_version = models.PositiveIntegerField(default=1)
    # The form's last settings (model, mode, resolution, duration, aspect_ratio, fps, count):
    # the studio opens a shot with them, and "Draw again" submits them with a new seed.
    settings = models.JSONField(default=dict, blank=True)
    # Storyboard order within the project (lower first); archived shots are hidden.
    position = models.PositiveIntegerField(default=0)
    archived_at = models.DateTimeField(null=True, blank=True)
    # Storage name (default_storage) of the reference image, if any.
    reference_image = models.CharField(max_length=300, blank=True)
    # Storage name of the frame the video ends on (first+last frame models), if any.
    last_frame_image = models.CharField(max_length=300, blank=True)
    # The take the creator keeps for this shot (generation.curation.choose_take).
    chosen_take = models.ForeignKey(
        "Take", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "created_at"]

    def __str__(self) -> str:
        return self.title or self.prompt[:60]


class Submission(WorkspaceOwned):
    """One press of Generate; its idempotency key makes a replay return the same takes."""

    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE)
    idempotency_key = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    # When the batch's summary e-mail went out (generation.digest): at most once.
    digest_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "idempotency_key"], name="submission_unique_key"
            ),
        ]


class TakeStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    DISPATCHING = "dispatching", _("Dispatching")
    RUNNING = "running", _("Running")
    FINALIZING = "finalizing", _("Finalizing")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    CANCELED = "canceled", _("Canceled")
    EXPIRED = "expired", _("Expired")


# Sent to a node or a provider and not back yet: these hold a slot there.
IN_FLIGHT = (TakeStatus.DISPATCHING, TakeStatus.RUNNING)
TERMINAL = (TakeStatus.SUCCEEDED, TakeStatus.FAILED, TakeStatus.CANCELED, TakeStatus.EXPIRED)


class AttemptStatus(models.TextChoices):
    """How one attempt of a take ended (`workers.ProviderJob.status`)."""

    SUBMITTED = "submitted", _("Submitted")
    RUNNING = "running", _("Running")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    BLOCKED = "blocked", _("Blocked by moderation")
    CANCELED = "canceled", _("Canceled")
    # The provider could not take it (429, 5xx, timeout): the take moved to the next route.
    FAILED_OVER = "failed_over", _("Failed over")


ATTEMPT_LIVE = (AttemptStatus.SUBMITTED, AttemptStatus.RUNNING)


class WorkspaceUsage(WorkspaceOwned):
    """Seconds of video a workspace has had dispatched in one billing period (starting at
    `billing.periods.month_start`). The queue's fairness order reads this counter instead
    of summing the period's takes for every queued row; `generation.queue.record_usage`
    adds a take's seconds the first time it is dispatched in a period."""

    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="+")
    period_start = models.DateTimeField()
    seconds = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "period_start"], name="usage_one_per_period"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workspace_id} since {self.period_start}: {self.seconds} s"


class Take(WorkspaceOwned):
    """One draw of a shot: one video, one hold, one charge at most."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE)
    shot = models.ForeignKey(Shot, on_delete=models.CASCADE, related_name="takes")
    submission = models.ForeignKey(Submission, on_delete=models.PROTECT, related_name="takes")
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    video_model = models.ForeignKey(VideoModel, on_delete=models.PROTECT, related_name="takes")
    draft_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="finals"
    )
    # What was asked for.
    mode = models.CharField(max_length=16)
    resolution = models.CharField(max_length=8, choices=Resolution.choices)
    aspect_ratio = models.CharField(max_length=8)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    duration_seconds = models.PositiveIntegerField()
    fps = models.PositiveSmallIntegerField()
    seed = models.BigIntegerField()
    # Price locked at submission (billing.pricing.Quote.as_dict()) and the hold it placed.
    quote = models.JSONField()
    # None when the quote is free (off-peak on a plan that includes it).
    hold = models.ForeignKey(
        "billing.Hold", on_delete=models.PROTECT, null=True, blank=True, related_name="takes"
    )
    charged = models.PositiveIntegerField(default=0)
    is_favourite = models.BooleanField(default=False)
    # The shot's inputs when this take was drawn (the shot may change later): the worker
    # sends these, Reuse copies them, and the take page shows them.
    prompt = models.TextField(blank=True)
    negative_prompt = models.TextField(blank=True)
    prompt_version = models.PositiveIntegerField(default=1)
    reference_image = models.CharField(max_length=300, blank=True)
    last_frame_image = models.CharField(max_length=300, blank=True)
    # Hidden from grids; its ledger history stays.
    archived_at = models.DateTimeField(null=True, blank=True)
    # Scheduling.
    status = models.CharField(
        max_length=16, choices=TakeStatus.choices, default=TakeStatus.QUEUED, db_index=True
    )
    priority = models.IntegerField(default=0)
    # The queue's sort key after the class: the workspace's usage (`WorkspaceUsage.seconds`)
    # of the period starting `queue_period`, copied here so the claim reads the queue in
    # order from one index (`take_queue`). Set at submission, kept in step for the
    # workspace's live takes by `generation.queue.record_usage`; a key of another period
    # (or none) is brought up to date by `generation.queue.refresh_keys` before a claim.
    queue_usage = models.BigIntegerField(default=0)
    queue_period = models.DateTimeField(null=True, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    node = models.ForeignKey(
        Node, on_delete=models.SET_NULL, null=True, blank=True, related_name="takes"
    )
    # The node of the last failed attempt: the dispatcher tries another one first.
    previous_node = models.ForeignKey(
        Node, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The upstream provider running the current attempt (instead of a node).
    provider = models.ForeignKey(
        "workers.Provider", on_delete=models.SET_NULL, null=True, blank=True, related_name="takes"
    )
    # What the provider jobs of this take cost the platform, in credits (margin reporting).
    provider_cost = models.DecimalField(max_digits=12, decimal_places=4, default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    webhook_secret = models.CharField(max_length=64, default=new_secret)
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    # Outputs (storage names) and the platform's own measurement of the original.
    output_original = models.CharField(max_length=300, blank=True)
    output_poster = models.CharField(max_length=300, blank=True)
    output_preview = models.CharField(max_length=300, blank=True)
    # The node's latest live preview while the take renders (a small animated WebP of
    # the current latents; storage name), and when it arrived.
    live_preview = models.CharField(max_length=300, blank=True)
    live_preview_at = models.DateTimeField(null=True, blank=True)
    measured_duration = models.FloatField(null=True, blank=True)
    measured_fps = models.FloatField(null=True, blank=True)
    measured_width = models.PositiveIntegerField(null=True, blank=True)
    measured_height = models.PositiveIntegerField(null=True, blank=True)
    measured_codec = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The dispatcher's order (generation.queue.ORDER), read in order by a claim.
            models.Index(
                fields=["-priority", "queue_usage", "created_at", "id"],
                condition=models.Q(status="queued"),
                name="take_queue",
            ),
            # Queued takes whose sort key is of another period (or none): few or none.
            models.Index(
                fields=["queue_period"], condition=models.Q(status="queued"), name="take_queue_key"
            ),
            # A workspace's live takes (its concurrency count, its sort keys kept in step).
            models.Index(
                fields=["workspace"],
                condition=models.Q(status__in=["queued", "dispatching", "running"]),
                name="take_live_by_workspace",
            ),
            # Takes that may hold a slot on a node (generation.lifecycle.holding_slot).
            models.Index(
                fields=["node"],
                condition=models.Q(status__in=["dispatching", "running", "canceled"]),
                name="take_slot_by_node",
            ),
        ]

    def __str__(self) -> str:
        return f"take {self.id} ({self.status})"

    @property
    def display_error(self) -> str:
        """`error` in the reader's language (stored in English for the API; see display)."""
        return display.take_error(self.error)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def inputs(self) -> dict[str, str]:
        """What this take was drawn from (takes older than the snapshot read their shot)."""
        if self.prompt:
            return {
                "prompt": self.prompt,
                "negative_prompt": self.negative_prompt,
                "reference_image": self.reference_image,
                "last_frame_image": self.last_frame_image,
            }
        shot = self.shot
        return {
            "prompt": shot.prompt,
            "negative_prompt": shot.negative_prompt,
            "reference_image": shot.reference_image,
            "last_frame_image": shot.last_frame_image,
        }


class RoughCutStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Rendering")
    SUCCEEDED = "succeeded", _("Ready")
    FAILED = "failed", _("Failed")


class RoughCut(WorkspaceOwned):
    """A project's chosen takes joined in shot order: one MP4 and its timeline (`.otio`, EDL,
    FCP 7 XML).

    Rendered by a Celery task (generation.roughcut.render_rough_cut); the clips it used are
    recorded in `clips` so the timeline and the page say what went in.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rough_cuts")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    crossfade_ms = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=16, choices=RoughCutStatus.choices, default=RoughCutStatus.QUEUED
    )
    progress = models.PositiveSmallIntegerField(default=0)
    # [{"shot": id, "take": uuid, "title": str, "seconds": float}] in timeline order.
    clips = models.JSONField(default=list, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    fps = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    output_video = models.CharField(max_length=300, blank=True)
    output_timeline = models.CharField(max_length=300, blank=True)
    output_edl = models.CharField(max_length=300, blank=True)
    output_fcp_xml = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"rough cut {self.id} of {self.project_id} ({self.status})"

    # Every file a render stores, by kind (the name in download URLs and the API) → the
    # field holding its storage name. A new output is one line here.
    FILES = {
        "video": "output_video",
        "timeline": "output_timeline",
        "edl": "output_edl",
        "fcpxml": "output_fcp_xml",
    }

    def stored_files(self) -> dict[str, str]:
        """The storage names of the files this cut has, by kind (none until it succeeds)."""
        return {kind: name for kind, field in self.FILES.items() if (name := getattr(self, field))}

    def download_name(self, kind: str) -> str:
        """The file name a download is saved as: the project's slug and the stored extension."""
        stem = slugify(self.project.name, allow_unicode=True) or "project"
        extension = os.path.splitext(getattr(self, self.FILES[kind]))[1]
        return f"{stem}-rough-cut{extension}"
