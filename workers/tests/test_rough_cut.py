"""The rough cut: chosen takes in storyboard order, re-encoded into one MP4 with PyAV, and
one timeline of the same cut as OpenTimelineIO, CMX 3600 EDL and FCP 7 XML files that list
the clips in the same order and last as long as the MP4."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import av
import opentimelineio as otio
import pytest
from django.core.files import File
from django.core.files.storage import default_storage

from conftest import client_for
from generation.curation import choose_take
from generation.models import RoughCut, RoughCutStatus, Take, TakeStatus
from generation.roughcut import editorial_fps, render_rough_cut, start_rough_cut
from generation.shots import create_project, create_shot, reorder_shots
from generation.submission import SubmissionError, TakeSpec, submit_takes
from generation.tests.helpers import fund, setup_catalog, subscribe

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_broker():
    with (
        mock.patch("workers.tasks.dispatch_takes.delay"),
        mock.patch("workers.tasks.render_rough_cut.delay") as render,
    ):
        yield render


def _delivered(reference, tmp_path: Path, shot, user, *, seconds: float, fps: int, size, seed):
    spec = TakeSpec(
        model="wan2.1-t2v-1.3b",
        prompt=f"shot {shot.pk}",
        resolution="480p",
        duration=max(1, round(seconds)),
        aspect_ratio="16:9" if size[0] > size[1] else "9:16",
    )
    [take] = submit_takes(
        shot.project.workspace, user, spec, idempotency_key=f"cut-{shot.pk}-{seed}", shot=shot
    )
    path = tmp_path / f"{take.pk}.mp4"
    frames = reference.render_video(
        str(path),
        prompt=spec.prompt,
        seed=seed,
        width=size[0],
        height=size[1],
        fps=fps,
        seconds=seconds,
    )
    with open(path, "rb") as fh:
        name = default_storage.save(f"takes/{take.pk}/original.mp4", File(fh))
    Take.objects.filter(pk=take.pk).update(
        status=TakeStatus.SUCCEEDED,
        output_original=name,
        measured_duration=frames / fps,
        measured_fps=fps,
        measured_width=size[0],
        measured_height=size[1],
    )
    take.refresh_from_db()
    choose_take(take)
    return take, frames / fps


def _duration(path: str) -> float:
    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames / float(stream.average_rate)


def _downloaded(client, url: str, tmp_path: Path, name: str) -> Path:
    response = client.get(url)
    assert response.status_code == 302
    signed = client.get(response["Location"])
    assert signed.status_code == 200
    assert f'filename="{name}"' in signed["Content-Disposition"]
    path = tmp_path / name
    path.write_bytes(b"".join(signed.streaming_content))
    return path


def test_rough_cut_joins_chosen_takes_in_storyboard_order(
    reference, tmp_path, alice, acme, charlie, _no_broker, django_capture_on_commit_callbacks
):
    setup_catalog()
    subscribe(acme, "standard")
    fund(acme, 500)
    project = create_project(acme, "Paper boats")
    shots = [create_shot(project, title) for title in ("Rain", "Gutter", "Sea")]
    lengths = {}
    # Different sizes and frame rates: the cut re-encodes them to one of each.
    for shot, (seconds, fps, size) in zip(
        shots, [(1.0, 16, (320, 180)), (1.5, 24, (320, 180)), (1.0, 16, (180, 320))], strict=True
    ):
        _take, lengths[shot.pk] = _delivered(
            reference, tmp_path, shot, alice, seconds=seconds, fps=fps, size=size, seed=shot.pk
        )
    # An extra shot without a chosen take is left out.
    create_shot(project, "Unfinished")
    order = [shots[2], shots[0], shots[1]]
    reorder_shots(project, [s.pk for s in order] + [project.shots.get(title="Unfinished").pk])

    client = client_for(alice, acme)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/projects/{project.pk}/rough-cut/", {"crossfade_ms": "0"})
    assert response.status_code == 302
    cut = RoughCut.objects.get(project=project)
    _no_broker.assert_called_once_with(str(cut.pk))
    render_rough_cut(cut.pk)
    cut.refresh_from_db()
    assert cut.status == RoughCutStatus.SUCCEEDED, cut.error
    assert [c["shot"] for c in cut.clips] == [s.pk for s in order]
    # The size most clips have, the highest frame rate.
    assert (cut.width, cut.height, cut.fps) == (320, 180, 24)

    video = _downloaded(
        client, f"/rough-cuts/{cut.pk}/video/", tmp_path, "paper-boats-rough-cut.mp4"
    )
    expected = sum(lengths.values())
    assert abs(_duration(str(video)) - expected) <= len(order) / cut.fps
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (320, 180)
        assert stream.codec_context.name == "h264"

    timeline_path = _downloaded(
        client, f"/rough-cuts/{cut.pk}/timeline/", tmp_path, "paper-boats-rough-cut.otio"
    )
    timeline = otio.adapters.read_from_file(str(timeline_path))
    clips = list(timeline.find_clips())
    assert [c.name for c in clips] == ["Sea", "Rain", "Gutter"]
    assert clips[0].media_reference.target_url.startswith("paper-boats-sea-take1-")

    # The EDL and the FCP 7 XML, parsed back by their adapters: the same three clips in
    # order, each as long as the chosen take (the cut's 24 fps counts 1.0 s as 24 frames).
    edl_path = _downloaded(
        client, f"/rough-cuts/{cut.pk}/edl/", tmp_path, "paper-boats-rough-cut.edl"
    )
    edl = otio.adapters.read_from_file(str(edl_path), "cmx_3600", rate=cut.fps)
    xml_path = _downloaded(
        client, f"/rough-cuts/{cut.pk}/fcpxml/", tmp_path, "paper-boats-rough-cut.xml"
    )
    fcp = otio.adapters.read_from_file(str(xml_path), "fcp_xml")
    for parsed in (edl, fcp):
        clips = list(parsed.find_clips())
        assert [c.name for c in clips] == ["Sea", "Rain", "Gutter"]
        seconds = [c.source_range.duration.to_seconds() for c in clips]
        assert seconds == pytest.approx([lengths[s.pk] for s in order], abs=1 / cut.fps)
        assert [c.source_range.duration.value for c in clips] == [c["frames"] for c in cut.clips]
        assert parsed.duration().to_seconds() == pytest.approx(cut.duration_seconds)
    edl_text = edl_path.read_text()
    assert "SHOT001" in edl_text and "* FROM CLIP: paper-boats-sea-take1-" in edl_text

    # charlie (another workspace) cannot see or download it.
    outsider = client_for(charlie)
    for kind in ("video", "timeline", "edl", "fcpxml"):
        assert outsider.get(f"/rough-cuts/{cut.pk}/{kind}/").status_code == 404
    assert client.get(f"/rough-cuts/{cut.pk}/aaf/").status_code == 404
    assert outsider.post(f"/projects/{project.pk}/rough-cut/").status_code == 404


def test_a_crossfade_overlaps_the_clips(reference, tmp_path, alice, acme):
    setup_catalog()
    subscribe(acme, "standard")
    fund(acme, 500)
    project = create_project(acme, "Fades")
    shots = [create_shot(project, t) for t in ("A", "B")]
    for shot in shots:
        _delivered(reference, tmp_path, shot, alice, seconds=1.0, fps=16, size=(256, 144), seed=3)
    cut = start_rough_cut(project, alice, crossfade_ms=500)
    render_rough_cut(cut.pk)
    cut.refresh_from_db()
    assert cut.status == RoughCutStatus.SUCCEEDED, cut.error
    # 16 fps clips are cut at 24 fps (SMPTE timecode has no 16): 24 + 24 frames with a
    # 12-frame overlap.
    assert cut.fps == 24
    assert cut.duration_seconds == pytest.approx(36 / 24)
    with default_storage.open(cut.output_timeline, "rb") as fh:
        timeline = otio.adapters.read_from_string(fh.read().decode(), "otio_json")
    kinds = [type(item).__name__ for item in timeline.tracks[0]]
    assert kinds == ["Clip", "Transition", "Clip"]
    # Each format lasts as long as the MP4, the dissolve centred on the cut.
    with default_storage.open(cut.output_edl, "rb") as fh:
        edl_text = fh.read().decode()
    assert " D 012 " in edl_text
    edl = otio.adapters.read_from_string(edl_text, "cmx_3600", rate=24)
    with default_storage.open(cut.output_fcp_xml, "rb") as fh:
        fcp = otio.adapters.read_from_string(fh.read().decode(), "fcp_xml")
    for parsed in (timeline, edl, fcp):
        assert parsed.duration() == otio.opentime.RationalTime(36, 24)
        [transition] = [t for t in parsed.tracks[0] if isinstance(t, otio.schema.Transition)]
        assert transition.duration() == otio.opentime.RationalTime(12, 24)


def test_the_cut_runs_at_an_editorial_frame_rate():
    assert [editorial_fps(f) for f in (8, 16, 23.976, 24, 25, 29.97, 30, 60)] == [
        24,
        24,
        24,
        24,
        25,
        30,
        30,
        30,
    ]


def test_rough_cut_refuses_an_empty_storyboard_and_bad_crossfades(alice, acme):
    setup_catalog()
    project = create_project(acme, "Empty")
    create_shot(project, "Nothing chosen")
    with pytest.raises(SubmissionError, match="No shot has a chosen take"):
        start_rough_cut(project, alice)
    with pytest.raises(SubmissionError, match="crossfade"):
        start_rough_cut(project, alice, crossfade_ms=5000)
    response = client_for(alice, acme).post(f"/projects/{project.pk}/rough-cut/")
    assert response.status_code == 302
    assert not RoughCut.objects.filter(project=project).exists()
