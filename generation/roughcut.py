"""The rough cut: a project's chosen takes, in storyboard order, as one MP4 and timelines.

`start_rough_cut` records the request and enqueues `render_rough_cut` (a Celery task on the
media queue), which re-encodes every clip with PyAV to one size (the one most clips have;
a clip of another shape is fitted inside the frame, letterboxed) and one editorial frame
rate (24, 25 or 30: the first at or above the clips' highest), optionally cross-fading
between clips. One OpenTimelineIO timeline of the same cut is then written three ways: as
`.otio`, as a CMX 3600 EDL (`otio-cmx3600-adapter`) and as Final Cut Pro 7 XML
(`otio-fcp-adapter`), whose clips point at the takes' readable file names, so editors can
relink the originals they downloaded. EDL and FCP XML count in SMPTE timecode, which has
no 16 fps (Wan's rate): that is why the cut is rendered at an editorial rate, so the MP4
and every timeline agree frame for frame. A render that ends (either way) announces it with
`signals.rough_cut_ended` (the API's webhooks).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np
import opentimelineio as otio
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from config import enqueue

from .downloads import download_name
from .models import Project, RoughCut, RoughCutStatus, Shot, Take, TakeStatus
from .signals import announce, rough_cut_ended
from .submission import SubmissionError

log = logging.getLogger(__name__)

CROSSFADE_MAX_MS = 2000
# The frame rates SMPTE timecode (EDL, FCP XML) can express and editors cut at.
EDITORIAL_RATES = (24, 25, 30)
# Each timeline format: the adapter that writes it and the file's extension.
TIMELINE_FORMATS = {
    "timeline": ("otio_json", "otio"),
    "edl": ("cmx_3600", "edl"),
    "fcpxml": ("fcp_xml", "xml"),
}


def cut_plan(project: Project) -> list[tuple[Shot, Take]]:
    """The storyboard's live shots in order, each with its chosen (delivered) take."""
    shots = (
        project.shots.filter(archived_at__isnull=True)
        .select_related("chosen_take")
        .order_by("position", "created_at")
    )
    return [
        (shot, shot.chosen_take)
        for shot in shots
        if shot.chosen_take is not None and shot.chosen_take.status == TakeStatus.SUCCEEDED
    ]


def start_rough_cut(project: Project, user, *, crossfade_ms: int = 0) -> RoughCut:
    """Record a rough-cut request and enqueue its rendering; refuse an empty storyboard."""
    if not 0 <= crossfade_ms <= CROSSFADE_MAX_MS:
        raise SubmissionError(
            _("A crossfade lasts 0 to %(n)d ms.") % {"n": CROSSFADE_MAX_MS}, "crossfade_ms"
        )
    plan = cut_plan(project)
    if not plan:
        raise SubmissionError(
            _("No shot has a chosen take yet: keep one take per shot, then export."), "project"
        )
    shortest = min(take.measured_duration or take.duration_seconds for _shot, take in plan)
    if len(plan) > 1 and crossfade_ms / 1000 >= shortest:
        raise SubmissionError(
            _("The crossfade must be shorter than the shortest clip (%(s).1f s).")
            % {"s": shortest},
            "crossfade_ms",
        )
    with transaction.atomic():
        cut = RoughCut(
            workspace=project.workspace,
            project=project,
            requested_by=user,
            crossfade_ms=crossfade_ms,
        )
        cut.save(force_insert=True)
        enqueue.after_commit(enqueue.ROUGH_CUT, str(cut.pk))
    return cut


def editorial_fps(fps: float) -> int:
    """The first editorial rate at or above `fps` (the highest, 30, for anything faster)."""
    return next((rate for rate in EDITORIAL_RATES if rate >= round(fps)), EDITORIAL_RATES[-1])


def _ceil(value: Fraction) -> int:
    return -(-value.numerator // value.denominator)


def _frames(path: str, fps: Fraction, width: int, height: int) -> Iterator[np.ndarray]:
    """The clip resampled to `fps` (each output frame shows the source frame on screen at
    its time) and fitted into width × height, streamed one decoded frame at a time."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = Fraction(stream.average_rate or stream.guessed_rate or fps)
        placement = None
        for index, source in enumerate(container.decode(stream)):
            if placement is None:
                scale = min(width / source.width, height / source.height)
                fit_w = max(2, int(source.width * scale) // 2 * 2)
                fit_h = max(2, int(source.height * scale) // 2 * 2)
                placement = (fit_w, fit_h, (width - fit_w) // 2, (height - fit_h) // 2)
            fit_w, fit_h, x, y = placement
            repeats = _ceil((index + 1) * fps / rate) - _ceil(index * fps / rate)
            if repeats <= 0:
                continue
            pixels = source.reformat(width=fit_w, height=fit_h, format="rgb24").to_ndarray()
            if (fit_w, fit_h) != (width, height):
                canvas = np.zeros((height, width, 3), dtype=np.uint8)
                canvas[y : y + fit_h, x : x + fit_w] = pixels
                pixels = canvas
            for _ in range(repeats):
                yield pixels


def render_rough_cut(cut_id) -> RoughCut | None:
    """Render a queued rough cut; idempotent (a cut already done or running is left alone)."""
    claimed = (
        RoughCut.objects.dangerously_unscoped()
        .filter(pk=cut_id, status=RoughCutStatus.QUEUED)
        .update(status=RoughCutStatus.RUNNING, progress=1)
    )
    if not claimed:
        return None
    cut = RoughCut.objects.dangerously_unscoped().select_related("project").get(pk=cut_id)
    workdir = tempfile.mkdtemp(prefix=f"roughcut-{cut.pk}-")
    try:
        plan = cut_plan(cut.project)
        if not plan:
            raise ValueError("no shot has a chosen take")
        video_path, clips, info = _render(cut, plan, workdir)
        timelines = write_timelines(cut, clips, info["fps"], workdir)
        prefix = f"rough-cuts/{cut.workspace_id}/{cut.pk}"
        stored = {}
        for kind, path in [("video", video_path), *timelines.items()]:
            with open(path, "rb") as fh:
                name = f"{prefix}/rough-cut{os.path.splitext(path)[1]}"
                stored[kind] = default_storage.save(name, File(fh))
    except Exception as exc:  # noqa: BLE001 - any failure is the cut's error, shown on its row
        log.exception("rough cut %s failed", cut.pk)
        _finish(cut, status=RoughCutStatus.FAILED, error=str(exc)[:500])
        return None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return _finish(
        cut,
        status=RoughCutStatus.SUCCEEDED,
        progress=100,
        clips=clips,
        output_video=stored["video"],
        output_timeline=stored["timeline"],
        output_edl=stored["edl"],
        output_fcp_xml=stored["fcpxml"],
        width=info["width"],
        height=info["height"],
        fps=info["fps"],
        duration_seconds=info["duration"],
    )


def _finish(cut: RoughCut, **fields) -> RoughCut:
    """End a running cut (once: only the render that claimed it gets here) and announce it
    in the same transaction."""
    with transaction.atomic():
        ended = (
            RoughCut.objects.dangerously_unscoped()
            .filter(pk=cut.pk, status=RoughCutStatus.RUNNING)
            .update(finished_at=timezone.now(), **fields)
        )
        cut.refresh_from_db()
        if ended:
            announce(rough_cut_ended, RoughCut, rough_cut=cut)
    return cut


def _render(cut: RoughCut, plan: list[tuple[Shot, Take]], workdir: str):
    """Decode each chosen take, resample, cross-fade, encode one H.264 MP4."""
    # The frame most of the chosen takes have (the first one's on a tie); others are fitted.
    sizes = [(t.measured_width or t.width, t.measured_height or t.height) for _s, t in plan]
    width, height = max(sizes, key=lambda size: (sizes.count(size), -sizes.index(size)))
    width, height = width // 2 * 2, height // 2 * 2
    fps_value = editorial_fps(max(t.measured_fps or t.fps for _s, t in plan))
    fps = Fraction(fps_value)
    fade = round(cut.crossfade_ms / 1000 * fps_value) if len(plan) > 1 else 0
    out_path = os.path.join(workdir, "rough-cut.mp4")
    clips = []
    written = 0
    with av.open(out_path, "w", format="mp4", container_options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = 1 / fps
        stream.options = {"crf": "20", "preset": "veryfast", "threads": "1"}

        def emit(pixels: np.ndarray) -> None:
            nonlocal written
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")
            frame.pts = written
            frame.time_base = stream.codec_context.time_base
            written += 1
            for packet in stream.encode(frame):
                out.mux(packet)

        tail: list[np.ndarray] = []
        for index, (shot, take) in enumerate(plan):
            local = os.path.join(workdir, f"clip{index}.mp4")
            with default_storage.open(take.output_original, "rb") as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst)
            frames = _frames(local, fps, width, height)
            count = 0
            # Blend the previous clip's held-back tail into this clip's first frames.
            for held in tail:
                incoming = next(frames, None)
                count += 1
                if incoming is None:
                    emit(held)
                    continue
                weight = count / (len(tail) + 1)
                emit((held * (1 - weight) + incoming * weight).astype(np.uint8))
            last = index == len(plan) - 1
            buffer: list[np.ndarray] = []
            for pixels in frames:
                count += 1
                buffer.append(pixels)
                if not last and len(buffer) > fade:
                    emit(buffer.pop(0))
                elif last:
                    emit(buffer.pop(0))
            tail = buffer if not last else []
            clips.append(
                {
                    "shot": shot.pk,
                    "title": str(shot),
                    "take": str(take.pk),
                    "file": download_name(take),
                    "frames": count,
                    "seconds": round(count / fps_value, 4),
                }
            )
            RoughCut.objects.dangerously_unscoped().filter(pk=cut.pk).update(
                progress=max(1, int(95 * (index + 1) / len(plan)))
            )
        for held in tail:
            emit(held)
        for packet in stream.encode():
            out.mux(packet)
    info = {"width": width, "height": height, "fps": fps_value, "duration": written / fps_value}
    return out_path, clips, info


def build_timeline(cut: RoughCut, clips: list[dict], fps: int) -> otio.schema.Timeline:
    """One video track, the clips in order; a crossfade is a dissolve centred on the cut.

    The rendered cut overlaps neighbouring clips by the fade, so each clip is trimmed by half
    the fade at a cut and the trimmed frames stay available as the dissolve's handles: the
    timeline lasts exactly as long as the MP4.
    """
    timeline = otio.schema.Timeline(name=f"{cut.project.name} — rough cut")
    timeline.global_start_time = otio.opentime.RationalTime(0, fps)
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    fade = round(cut.crossfade_ms / 1000 * fps) if len(clips) > 1 else 0
    before, after = fade // 2, fade - fade // 2

    def frames(n: int) -> otio.opentime.RationalTime:
        return otio.opentime.RationalTime(n, fps)

    for index, clip in enumerate(clips):
        head = before if index else 0
        tail = after if index < len(clips) - 1 else 0
        reference = otio.schema.ExternalReference(
            target_url=clip["file"],
            available_range=otio.opentime.TimeRange(frames(0), frames(clip["frames"])),
        )
        if index and fade:
            track.append(
                otio.schema.Transition(
                    name="crossfade",
                    transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                    in_offset=frames(before),
                    out_offset=frames(after),
                )
            )
        item = otio.schema.Clip(
            name=clip["title"],
            media_reference=reference,
            source_range=otio.opentime.TimeRange(
                frames(head), frames(clip["frames"] - head - tail)
            ),
        )
        item.metadata["retake"] = {"shot": clip["shot"], "take": clip["take"]}
        # An EDL names each source by a reel of at most 8 characters; the file name goes in
        # the event's "FROM CLIP" comment.
        item.metadata["cmx_3600"] = {"reel": f"SHOT{index + 1:03d}"}
        track.append(item)
    timeline.tracks.append(track)
    return timeline


def write_timelines(cut: RoughCut, clips: list[dict], fps: int, workdir: str) -> dict[str, str]:
    """The cut's timeline as `.otio`, EDL and FCP 7 XML files in `workdir`, by kind."""
    timeline = build_timeline(cut, clips, fps)
    paths = {}
    for kind, (adapter, extension) in TIMELINE_FORMATS.items():
        path = os.path.join(workdir, f"rough-cut.{extension}")
        # A fresh copy each time: the EDL writer rewrites the clips it is given in place.
        otio.adapters.write_to_file(timeline.deepcopy(), path, adapter_name=adapter)
        paths[kind] = path
    return paths
