"""Submitting takes: validate, moderate, quote, hold, create, enqueue — in one transaction.

`submit_takes` and `finalize_take` are the only ways takes come to exist. Either every take
of a submission is created with its hold, or nothing is (no rows, no moved credits). A
submission carries an idempotency key: replaying it returns the same takes.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import secrets
import uuid
import warnings
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Count, Max
from django.utils import timezone
from django.utils.translation import gettext as _
from PIL import Image, UnidentifiedImageError

from billing import ledger, plans, pricing
from config import enqueue
from config.validation import has_lone_surrogate

from . import queue
from .models import (
    RESOLUTION_SHORT_SIDE,
    Project,
    Shot,
    Submission,
    Take,
    TakeStatus,
    VideoModel,
)
from .moderation import moderation_hook

MAX_SEED = 2**31 - 1
RESOLUTION_RANK = {name: rank for rank, name in enumerate(RESOLUTION_SHORT_SIDE)}


class SubmissionError(Exception):
    """A submission was refused; `message` is for a person, `field` names the input at fault."""

    def __init__(self, message: str, field: str | None = None, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


@dataclass(frozen=True)
class TakeSpec:
    """What one submission asks for (every take of it shares these)."""

    model: str
    prompt: str
    resolution: str
    duration: int
    negative_prompt: str = ""
    aspect_ratio: str = ""
    fps: int | None = None
    count: int = 1
    mode: str = pricing.Mode.STANDARD
    seed: int | None = None


def inbox_for(workspace) -> Project:
    """The workspace's Inbox project, created on first use."""
    project = Project.objects.for_workspace(workspace).filter(is_inbox=True).first()
    if project is not None:
        return project
    try:
        with transaction.atomic():
            # Stored in English whatever the creator's language; pages show it translated.
            project = Project(workspace=workspace, name="Inbox", is_inbox=True)
            project.save(force_insert=True)
            return project
    except IntegrityError:
        return Project.objects.for_workspace(workspace).get(is_inbox=True)


# A native size is used when its shape is within this of the asked one (log of the ratio
# of aspect ratios; 0.1 is about 10 %): 832x480 for 16:9 at 480p, but not for 1:1.
NATIVE_SHAPE_TOLERANCE = 0.1


def frame_size(
    resolution: str, aspect_ratio: str, video_model: VideoModel | None = None
) -> tuple[int, int]:
    """The size a take will really be: the nearest the model accepts.

    The resolution names the short side and the aspect ratio the long one (854x480 for
    16:9 at 480p). A model's native size with that short side and about that shape wins
    (Wan at 480p: 832x480); otherwise each side goes to the nearest multiple of the
    model's size rule, ties going down (LTX-Video at 720p: 1280x704).
    """
    short = RESOLUTION_SHORT_SIDE[resolution]
    a, b = (int(part) for part in aspect_ratio.split(":"))
    long = round(short * max(a, b) / min(a, b) / 2) * 2
    width, height = (long, short) if a >= b else (short, long)
    if video_model is None:
        return width, height
    shape = math.log(width / height)
    natives = [
        (abs(math.log(w / h) - shape), (w, h))
        for w, h in video_model.parsed_native_sizes
        if min(w, h) == short
    ]
    if natives:
        distance, size = min(natives)
        if distance <= NATIVE_SHAPE_TOLERANCE:
            return size
    multiple = max(2, video_model.size_multiple)
    return _nearest_multiple(width, multiple), _nearest_multiple(height, multiple)


def _nearest_multiple(value: int, multiple: int) -> int:
    return max(multiple, math.ceil(value / multiple - 0.5) * multiple)


def check_reference_image(upload, field: str = "image") -> tuple[bytes, str]:
    """Read and vet a reference image; return its bytes and file extension.

    The pixel limit is checked from the header before anything is decoded, so a
    decompression bomb is refused without being expanded.
    """
    data = upload.read(settings.REFERENCE_IMAGE_MAX_BYTES + 1)
    if len(data) > settings.REFERENCE_IMAGE_MAX_BYTES:
        raise SubmissionError(
            _("The image is larger than %(mb)d MB.")
            % {"mb": settings.REFERENCE_IMAGE_MAX_BYTES // (1024 * 1024)},
            field,
        )
    allowed = [fmt.upper() for fmt in settings.REFERENCE_IMAGE_FORMATS]
    not_image = SubmissionError(
        _("The reference must be an image (%(formats)s).") % {"formats": ", ".join(allowed)},
        field,
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = (img.format or "").upper()
                width, height = img.size
                if fmt not in allowed:
                    raise not_image
                if width * height > settings.REFERENCE_IMAGE_MAX_PIXELS:
                    raise SubmissionError(
                        _("The image is %(w)d × %(h)d pixels; at most %(max)d pixels allowed.")
                        % {"w": width, "h": height, "max": settings.REFERENCE_IMAGE_MAX_PIXELS},
                        field,
                    )
            with Image.open(io.BytesIO(data)) as img:
                img.load()
    except SubmissionError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise SubmissionError(
            _("The image has too many pixels; at most %(max)d allowed.")
            % {"max": settings.REFERENCE_IMAGE_MAX_PIXELS},
            field,
        ) from exc
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
    ) as exc:
        raise not_image from exc
    extension = {"JPEG": "jpg"}.get(fmt, fmt.lower())
    return data, extension


def _validate(
    spec: TakeSpec,
    video_model: VideoModel | None,
    plan,
    has_image: bool,
    has_last_frame: bool = False,
) -> TakeSpec:
    """Check a spec against the model's capabilities and the plan; fill defaults."""
    if video_model is None:
        raise SubmissionError(_("Unknown model %(slug)s.") % {"slug": spec.model}, "model")
    if spec.mode not in pricing.Mode.values:
        raise SubmissionError(_("Unknown mode %(mode)s.") % {"mode": spec.mode}, "mode")
    for field in ("prompt", "negative_prompt"):
        text = getattr(spec, field)
        if "\x00" in text or has_lone_surrogate(text):
            raise SubmissionError(_("The text holds characters that cannot be stored."), field)
    prompt = spec.prompt.strip()
    if not prompt:
        raise SubmissionError(_("Describe the shot: the prompt is empty."), "prompt")
    if len(prompt) > video_model.max_prompt_length:
        raise SubmissionError(
            _("The prompt is longer than %(n)d characters.") % {"n": video_model.max_prompt_length},
            "prompt",
        )
    if len(spec.negative_prompt) > video_model.max_prompt_length:
        raise SubmissionError(
            _("The negative prompt is longer than %(n)d characters.")
            % {"n": video_model.max_prompt_length},
            "negative_prompt",
        )
    if has_image and not video_model.supports_image_to_video:
        raise SubmissionError(
            _("%(model)s does not take a reference image.") % {"model": video_model.name}, "image"
        )
    if not has_image and not video_model.supports_text_to_video:
        raise SubmissionError(
            _("%(model)s needs a reference image.") % {"model": video_model.name}, "image"
        )
    if has_last_frame and not video_model.supports_first_last_frame:
        raise SubmissionError(
            _("%(model)s cannot end on a given last frame.") % {"model": video_model.name},
            "last_frame",
        )
    if has_last_frame and not has_image:
        raise SubmissionError(
            _("A last frame needs a first frame (the reference image) too."), "last_frame"
        )
    resolution = spec.resolution
    if spec.mode == pricing.Mode.DRAFT:
        resolution = video_model.draft_resolution
    elif resolution not in video_model.resolutions:
        raise SubmissionError(
            _("%(model)s renders %(options)s, not %(res)s.")
            % {
                "model": video_model.name,
                "options": ", ".join(video_model.resolutions),
                "res": resolution,
            },
            "resolution",
        )
    if RESOLUTION_RANK[resolution] > RESOLUTION_RANK.get(plan.max_resolution, 0):
        raise SubmissionError(
            _("Your plan allows up to %(res)s.") % {"res": plan.max_resolution}, "resolution"
        )
    if spec.duration not in video_model.durations:
        raise SubmissionError(
            _("%(model)s makes clips of %(options)s seconds, not %(n)s.")
            % {
                "model": video_model.name,
                "options": ", ".join(str(d) for d in video_model.durations),
                "n": spec.duration,
            },
            "duration",
        )
    if spec.duration > plan.max_duration:
        raise SubmissionError(
            _("Your plan allows clips of up to %(n)d seconds.") % {"n": plan.max_duration},
            "duration",
        )
    fps = spec.fps or (video_model.fps_options[0] if video_model.fps_options else 16)
    if video_model.fps_options and fps not in video_model.fps_options:
        raise SubmissionError(_("%(fps)s fps is not offered.") % {"fps": fps}, "fps")
    aspect = spec.aspect_ratio or (video_model.aspect_ratios or ["16:9"])[0]
    if video_model.aspect_ratios and aspect not in video_model.aspect_ratios:
        raise SubmissionError(
            _("Aspect ratio %(ar)s is not offered.") % {"ar": aspect}, "aspect_ratio"
        )
    if not 1 <= spec.count <= plan.max_takes_per_batch:
        raise SubmissionError(
            _("Your plan allows 1 to %(n)d takes per batch.") % {"n": plan.max_takes_per_batch},
            "count",
        )
    if spec.seed is not None and not 0 <= spec.seed <= MAX_SEED:
        raise SubmissionError(_("The seed must be between 0 and %(n)d.") % {"n": MAX_SEED}, "seed")
    return TakeSpec(
        **{
            **asdict(spec),
            "prompt": prompt,
            "resolution": resolution,
            "fps": fps,
            "aspect_ratio": aspect,
        }
    )


def check_spec(
    workspace, spec: TakeSpec, *, has_image: bool, has_last_frame: bool = False
) -> tuple[TakeSpec, VideoModel]:
    """Validate a spec as `submit_takes` would, writing nothing: the studio's live check.

    Returns the spec with defaults filled and the model; raises SubmissionError.
    """
    video_model = VideoModel.objects.filter(slug=spec.model, is_active=True).first()
    plan = plans.plan_for(workspace)
    spec = _validate(spec, video_model, plan, has_image=has_image, has_last_frame=has_last_frame)
    return spec, video_model


def _fingerprint(
    spec: TakeSpec, image: bytes | None, extra: str = "", last_frame: bytes | None = None
) -> str:
    payload = json.dumps(asdict(spec), sort_keys=True) + extra
    digest = hashlib.sha256(payload.encode())
    if image:
        digest.update(image)
    if last_frame:
        digest.update(b"last-frame:" + last_frame)
    return digest.hexdigest()


def _replay(workspace, idempotency_key: str, fingerprint: str) -> list[Take] | None:
    submission = (
        Submission.objects.for_workspace(workspace).filter(idempotency_key=idempotency_key).first()
    )
    if submission is None:
        return None
    if submission.fingerprint != fingerprint:
        raise SubmissionError(
            _("This idempotency key was already used for a different submission."),
            "idempotency_key",
            status=409,
        )
    return list(submission.takes.order_by("created_at", "seed"))


def _create(
    workspace,
    user,
    spec: TakeSpec,
    video_model: VideoModel,
    *,
    plan,
    shot: Shot | None,
    project: Project | None,
    image: tuple[bytes, str] | None,
    idempotency_key: str,
    fingerprint: str,
    draft_of: Take | None = None,
    last_frame: tuple[bytes, str] | None = None,
    api_key=None,
    shot_settings: dict | None = None,
) -> list[Take]:
    stored: list[str] = []
    try:
        with transaction.atomic(durable=True):
            replay = _replay(workspace, idempotency_key, fingerprint)
            if replay is not None:
                return replay
            reason = moderation_hook()(spec.prompt, spec.negative_prompt, workspace)
            if reason:
                raise SubmissionError(reason, "prompt")
            now = timezone.now()
            try:
                quote = pricing.quote_for(
                    workspace,
                    video_model=video_model,
                    resolution=spec.resolution,
                    seconds=spec.duration,
                    mode=spec.mode,
                    at=now,
                    plan=plan,
                )
            except pricing.QuoteError as exc:
                raise SubmissionError(str(exc), "mode") from exc
            submission = Submission(
                workspace=workspace, idempotency_key=idempotency_key, fingerprint=fingerprint
            )
            submission.save(force_insert=True)
            if shot is None:
                shot = new_shot(
                    project or inbox_for(workspace),
                    prompt=spec.prompt,
                    negative_prompt=spec.negative_prompt,
                    settings=_form_settings(shot_settings or {}),
                )
            if shot_settings is not None:
                stored += _update_shot(workspace, shot, spec, shot_settings, image, last_frame)
            inputs = {
                "prompt": spec.prompt,
                "negative_prompt": spec.negative_prompt,
                "prompt_version": shot.prompt_version,
                "reference_image": shot.reference_image,
                "last_frame_image": shot.last_frame_image,
            }
            if draft_of is not None:
                # A final re-renders its draft exactly, whatever the shot says now.
                inputs.update(draft_of.inputs(), prompt_version=draft_of.prompt_version)
            width, height = frame_size(spec.resolution, spec.aspect_ratio, video_model)
            deadline = None
            if spec.mode == pricing.Mode.OFF_PEAK:
                deadline = now + timedelta(hours=settings.OFF_PEAK_DEADLINE_HOURS)
            # The queue's sort key: the workspace's usage this period (generation.queue).
            queue_usage, queue_period = queue.usage_key(workspace.pk, now)
            takes = []
            for index in range(spec.count):
                seed = secrets.randbelow(MAX_SEED + 1) if spec.seed is None else spec.seed + index
                take = Take(
                    workspace=workspace,
                    shot=shot,
                    submission=submission,
                    submitted_by=user,
                    video_model=video_model,
                    draft_of=draft_of,
                    mode=spec.mode,
                    resolution=spec.resolution,
                    aspect_ratio=spec.aspect_ratio,
                    width=width,
                    height=height,
                    duration_seconds=spec.duration,
                    fps=spec.fps,
                    seed=min(seed, MAX_SEED),
                    quote=quote.as_dict(),
                    **inputs,
                    priority=plan.queue_priority,
                    queue_usage=queue_usage,
                    queue_period=queue_period,
                    deadline=deadline,
                    status=TakeStatus.QUEUED,
                )
                if quote.total > 0:
                    try:
                        hold = ledger.place_hold(
                            workspace,
                            quote.total,
                            idempotency_key=f"take:{take.id}:hold",
                            member=user,
                            api_key=api_key,
                            reason=f"take {take.id}",
                        )
                    except ledger.LedgerError as exc:
                        raise SubmissionError(str(exc), "credits", status=402) from exc
                    take.hold_id = hold.pk
                take.save(force_insert=True)
                takes.append(take)
            enqueue.after_commit(enqueue.DISPATCH)
            return takes
    except BaseException:
        for name in stored:
            default_storage.delete(name)
        raise


def new_shot(project: Project, title: str = "", **fields) -> Shot:
    """A new shot at the end of the project's storyboard, named "Shot N" unless titled."""
    place = project.shots.aggregate(count=Count("pk"), last=Max("position"))
    return project.shots.create(
        title=title.strip()[:200] or _("Shot %(n)d") % {"n": place["count"] + 1},
        position=(place["last"] or 0) + 1,
        **fields,
    )


def _store_reference(workspace, shot: Shot, upload: tuple[bytes, str], kind: str) -> str:
    data, extension = upload
    stem = f"references/{workspace.pk}/{shot.pk}-{kind}{uuid.uuid4().hex}"
    return default_storage.save(f"{stem}.{extension}", ContentFile(data))


def _update_shot(
    workspace,
    shot: Shot,
    spec: TakeSpec,
    settings_: dict,
    image: tuple[bytes, str] | None,
    last_frame: tuple[bytes, str] | None,
) -> list[str]:
    """The shot takes this draw's prompt, references and settings (the form keeps them).

    A prompt change on a shot that has takes starts a new prompt version, so earlier takes
    stay grouped under the prompt they were drawn with. Returns the files it stored.
    """
    stored = []
    fields = []
    if (spec.prompt, spec.negative_prompt) != (shot.prompt, shot.negative_prompt):
        if shot.takes.exists():
            shot.prompt_version += 1
            fields.append("prompt_version")
        shot.prompt, shot.negative_prompt = spec.prompt, spec.negative_prompt
        fields += ["prompt", "negative_prompt"]
    # What the references are after this draw: a new upload, else what was kept (the
    # shot's own, or a reused take's), else none.
    reference = settings_.get("kept_image", "")
    last = settings_.get("kept_last_frame", "")
    if image is not None:
        reference = _store_reference(workspace, shot, image, "")
        stored.append(reference)
    if last_frame is not None:
        last = _store_reference(workspace, shot, last_frame, "last-")
        stored.append(last)
    if (reference, last) != (shot.reference_image, shot.last_frame_image):
        shot.reference_image, shot.last_frame_image = reference, last
        fields += ["reference_image", "last_frame_image"]
    form = _form_settings(settings_)
    if form != shot.settings:
        shot.settings = form
        fields.append("settings")
    if fields:
        shot.save(update_fields=fields)
    return stored


TRANSIENT_SETTINGS = ("clear_image", "clear_last_frame", "kept_image", "kept_last_frame")


def _form_settings(settings_: dict) -> dict:
    """The form fields a shot keeps (without the per-draw reference instructions)."""
    return {k: v for k, v in settings_.items() if k not in TRANSIENT_SETTINGS}


def submit_takes(
    workspace,
    user,
    spec: TakeSpec,
    *,
    idempotency_key: str,
    image=None,
    project: Project | None = None,
    last_frame=None,
    api_key=None,
    shot: Shot | None = None,
    clear_image: bool = False,
    clear_last_frame: bool = False,
    references_from: Take | None = None,
) -> list[Take]:
    """Create `spec.count` takes of `shot` (a new shot when None), each with its locked
    quote and hold. The shot keeps this draw's prompt, references and settings.

    `image` is the reference (first) frame; `last_frame`, on models that can, the frame
    the video ends on; `api_key`, the key a program submitted through (its monthly cap
    applies to the holds). Drawing into a shot without new images reuses the shot's (or
    those of `references_from`, a take of the shot being reused), unless
    `clear_image`/`clear_last_frame`. Raises SubmissionError (nothing written, nothing
    held) when any check fails.
    """
    key = (idempotency_key or "").strip()
    if not key or len(key) > 200:
        raise SubmissionError(_("A submission needs an idempotency key."), "idempotency_key")
    if project is not None and project.workspace_id != workspace.pk:
        raise SubmissionError(_("Unknown project."), "project", status=404)
    if shot is not None and (shot.project.workspace_id != workspace.pk or shot.archived_at):
        raise SubmissionError(_("Unknown shot."), "shot", status=404)
    if references_from is not None and (shot is None or references_from.shot_id != shot.pk):
        raise SubmissionError(_("Unknown take."), "from", status=404)
    image_data = check_reference_image(image) if image is not None else None
    last_data = check_reference_image(last_frame, "last_frame") if last_frame is not None else None
    if references_from is not None:
        kept = references_from.inputs()
        kept_image, kept_last = kept["reference_image"], kept["last_frame_image"]
    else:
        kept_image = shot.reference_image if shot else ""
        kept_last = shot.last_frame_image if shot else ""
    has_image = image_data is not None or bool(kept_image and not clear_image)
    has_last = last_data is not None or bool(kept_last and not clear_last_frame and has_image)
    video_model = VideoModel.objects.filter(slug=spec.model, is_active=True).first()
    plan = plans.plan_for(workspace)
    shot_settings = {
        "model": spec.model,
        "mode": spec.mode,
        "resolution": spec.resolution,
        "duration": spec.duration,
        "aspect_ratio": spec.aspect_ratio,
        "fps": spec.fps,
        "count": spec.count,
        "clear_image": clear_image and image_data is None,
        "clear_last_frame": clear_last_frame and last_data is None,
        "kept_image": kept_image if has_image and image_data is None else "",
        "kept_last_frame": kept_last if has_last and last_data is None else "",
    }
    spec = _validate(spec, video_model, plan, has_image=has_image, has_last_frame=has_last)
    if not shot_settings["aspect_ratio"]:
        shot_settings["aspect_ratio"] = spec.aspect_ratio
    fingerprint = _fingerprint(
        spec,
        image_data[0] if image_data else None,
        f"{project.pk if project else ''}:{shot.pk if shot else ''}:{clear_image}",
        last_frame=last_data[0] if last_data else None,
    )
    return _submit_once(
        workspace,
        user,
        spec,
        video_model,
        plan=plan,
        shot=shot,
        project=project,
        image=image_data,
        idempotency_key=key,
        fingerprint=fingerprint,
        last_frame=last_data,
        api_key=api_key,
        shot_settings=shot_settings,
    )


def _submit_once(workspace, user, spec, video_model, **kwargs) -> list[Take]:
    try:
        return _create(workspace, user, spec, video_model, **kwargs)
    except IntegrityError:
        # A concurrent request with the same key won the race: return its takes.
        replay = _replay(workspace, kwargs["idempotency_key"], kwargs["fingerprint"])
        if replay is None:
            raise
        return replay


def finalize_resolution(draft: Take) -> str | None:
    """The resolution finalizing `draft` would render, or None when there is nothing to
    finalize: not a finished draft, or the plan allows nothing above the draft's size."""
    if draft.mode != pricing.Mode.DRAFT or draft.status != TakeStatus.SUCCEEDED:
        return None
    plan = plans.plan_for(draft.workspace)
    allowed = [
        r
        for r in draft.video_model.resolutions
        if RESOLUTION_RANK.get(r, 99) <= RESOLUTION_RANK.get(plan.max_resolution, 0)
    ]
    if not allowed:
        return None
    best = max(allowed, key=RESOLUTION_RANK.__getitem__)
    if RESOLUTION_RANK[best] <= RESOLUTION_RANK.get(draft.resolution, 0):
        return None
    return best


def finalize_take(
    draft: Take, user, *, idempotency_key: str, resolution: str | None = None, api_key=None
) -> Take:
    """Re-render a succeeded draft at full resolution as a new take, same seed and inputs."""
    if draft.mode != pricing.Mode.DRAFT:
        raise SubmissionError(_("Only draft takes can be finalized."), "take")
    if draft.status != TakeStatus.SUCCEEDED:
        raise SubmissionError(_("Only a finished draft can be finalized."), "take")
    workspace = draft.workspace
    plan = plans.plan_for(workspace)
    video_model = draft.video_model
    if resolution is None:
        resolution = finalize_resolution(draft)
        if resolution is None:
            raise SubmissionError(
                _("Finalizing would not raise the resolution above the draft's %(res)s.")
                % {"res": draft.resolution},
                "resolution",
            )
    elif RESOLUTION_RANK.get(resolution, -1) <= RESOLUTION_RANK.get(draft.resolution, 0):
        raise SubmissionError(
            _("Finalizing would not raise the resolution above the draft's %(res)s.")
            % {"res": draft.resolution},
            "resolution",
        )
    shot = draft.shot
    inputs = draft.inputs()
    spec = _validate(
        TakeSpec(
            model=video_model.slug,
            prompt=inputs["prompt"],
            negative_prompt=inputs["negative_prompt"],
            resolution=resolution,
            duration=draft.duration_seconds,
            aspect_ratio=draft.aspect_ratio,
            fps=draft.fps,
            count=1,
            mode=pricing.Mode.STANDARD,
            seed=draft.seed,
        ),
        video_model,
        plan,
        has_image=bool(inputs["reference_image"]),
        has_last_frame=bool(inputs["last_frame_image"]),
    )
    key = (idempotency_key or "").strip()
    if not key:
        raise SubmissionError(_("A submission needs an idempotency key."), "idempotency_key")
    takes = _submit_once(
        workspace,
        user,
        spec,
        video_model,
        plan=plan,
        shot=shot,
        project=None,
        image=None,
        idempotency_key=key,
        fingerprint=_fingerprint(spec, None, f"finalize:{draft.pk}"),
        draft_of=draft,
        api_key=api_key,
    )
    return takes[0]
