"""Rough cuts through `/api/v1/`: a key starts the export the studio's button starts (same
function, same refusals), polls it, and downloads every file it made through signed links;
retries with an Idempotency-Key start one export; other workspaces see nothing."""

from __future__ import annotations

import threading
from unittest import mock

import av
import opentimelineio as otio
import pytest
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction

from api.models import WebhookEndpoint
from api.tests.conftest import bearer
from conftest import client_for
from generation.curation import choose_take
from generation.models import RoughCut, RoughCutStatus, Take, TakeStatus
from generation.roughcut import render_rough_cut
from workers.tests.conftest import load_reference_predictor

pytestmark = pytest.mark.django_db

TAKE = {"model": "wan2.1-t2v-1.3b", "prompt": "a kite", "resolution": "480p", "duration": 1}


@pytest.fixture(scope="module")
def reference():
    return load_reference_predictor()


@pytest.fixture
def renders():
    """The render task's enqueue calls (the test renders in-process when it wants to)."""
    with mock.patch("workers.tasks.render_rough_cut.delay") as delay:
        yield delay


def _delivered_take(api, project_id: int, *, prompt: str = "a kite") -> Take:
    """A take made with the key, delivered (status and a stored name), kept for its shot."""
    made = api.post(
        "/api/v1/takes/", {**TAKE, "prompt": prompt, "project": project_id}, format="json"
    )
    assert made.status_code == 201, made.json()
    take_id = made.json()["takes"][0]["id"]
    Take.objects.filter(pk=take_id).update(status=TakeStatus.SUCCEEDED)
    take = Take.objects.get(pk=take_id)
    with transaction.atomic():
        choose_take(take)
    return take


def _render_file(reference, tmp_path, take: Take, *, seconds: float, fps: int = 16) -> int:
    path = tmp_path / f"{take.pk}.mp4"
    frames = reference.render_video(
        str(path), prompt=take.prompt, seed=1, width=256, height=144, fps=fps, seconds=seconds
    )
    with open(path, "rb") as fh:
        name = default_storage.save(f"takes/{take.pk}/original.mp4", File(fh))
    Take.objects.filter(pk=take.pk).update(
        output_original=name,
        measured_duration=frames / fps,
        measured_fps=fps,
        measured_width=256,
        measured_height=144,
    )
    return frames


def _fetch(client, url: str) -> tuple[bytes, str]:
    assert url.startswith(settings.PUBLIC_BASE_URL)
    answer = client.get(url[len(settings.PUBLIC_BASE_URL.rstrip("/")) :])
    assert answer.status_code == 200, url
    return b"".join(answer.streaming_content), answer["Content-Disposition"]


def test_start_poll_and_download_every_file_with_a_key(
    api, pro_acme, alice, reference, tmp_path, renders, client
):
    project = api.post("/api/v1/projects/", {"name": "Paper boats"}, format="json").json()
    takes = [_delivered_take(api, project["id"], prompt=p) for p in ("rain", "sea")]
    lengths = zip(takes, (1, 0.5), strict=True)
    frames = [_render_file(reference, tmp_path, t, seconds=s) for t, s in lengths]

    started = api.post(
        f"/api/v1/projects/{project['id']}/rough-cuts/", {"crossfade_ms": 0}, format="json"
    )
    assert started.status_code == 201, started.json()
    cut = started.json()
    assert cut["object"] == "rough_cut" and cut["status"] == "queued"
    assert cut["project"] == project["id"] and cut["files"] is None
    assert cut["url"].endswith(f"/api/v1/rough-cuts/{cut['id']}/")
    assert RoughCut.objects.get(pk=cut["id"]).requested_by == alice

    render_rough_cut(cut["id"])  # what the media worker runs
    done = api.get(cut["url"][len(settings.PUBLIC_BASE_URL.rstrip("/")) :]).json()
    assert done["status"] == "succeeded" and done["progress"] == 100, done["error"]
    assert [c["take"] for c in done["clips"]] == [str(t.pk) for t in takes]
    assert (done["width"], done["height"]) == (256, 144)
    assert done["duration_seconds"] == pytest.approx(sum(frames) / 16, abs=0.1)  # 16 fps clips
    # One entry per stored file kind; each a working link that needs no key or session.
    assert set(done["files"]) == set(RoughCut.FILES)
    stored = RoughCut.objects.get(pk=cut["id"]).stored_files()
    for kind, name in stored.items():
        entry = done["files"][kind]
        body, disposition = _fetch(client, entry["url"])
        assert f'filename="{entry["name"]}"' in disposition
        with default_storage.open(name, "rb") as fh:
            assert body == fh.read()
    video = tmp_path / "cut.mp4"
    video.write_bytes(_fetch(client, done["files"]["video"]["url"])[0])
    assert {kind: entry["name"] for kind, entry in done["files"].items()} == {
        "video": "paper-boats-rough-cut.mp4",
        "timeline": "paper-boats-rough-cut.otio",
        "edl": "paper-boats-rough-cut.edl",
        "fcpxml": "paper-boats-rough-cut.xml",
    }
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and (stream.width, stream.height) == (256, 144)
    timeline = otio.adapters.read_from_string(
        _fetch(client, done["files"]["timeline"]["url"])[0].decode(), "otio_json"
    )
    assert [c.name for c in timeline.find_clips()] == [c["title"] for c in done["clips"]]

    listed = api.get("/api/v1/rough-cuts/", {"project": project["id"]}).json()["results"]
    assert [c["id"] for c in listed] == [cut["id"]]
    assert listed[0]["files"]["video"]["name"] == "paper-boats-rough-cut.mp4"
    assert api.get("/api/v1/rough-cuts/", {"status": "failed"}).json()["results"] == []
    other = api.post("/api/v1/projects/", {"name": "Other"}, format="json").json()
    assert api.get("/api/v1/rough-cuts/", {"project": other["id"]}).json()["results"] == []


def test_refusals_name_the_field_and_start_nothing(api, pro_acme, renders):
    project = api.post("/api/v1/projects/", {"name": "Empty"}, format="json").json()
    path = f"/api/v1/projects/{project['id']}/rough-cuts/"
    empty = api.post(path, {}, format="json")
    assert empty.status_code == 400
    assert empty.json()["field"] == "project" and empty.json()["code"] == "invalid"
    assert "chosen take" in empty.json()["detail"]

    _delivered_take(api, project["id"])  # duration 1 s
    for crossfade in (5000, -1, "soon", True, 1.5):
        bad = api.post(path, {"crossfade_ms": crossfade}, format="json")
        assert bad.status_code == 400, crossfade
        assert set(bad.json()) == {"detail", "field", "errors", "code"}
        assert bad.json()["field"] == "crossfade_ms"
    _delivered_take(api, project["id"], prompt="second")  # now two 1 s clips
    too_long = api.post(path, {"crossfade_ms": 1500}, format="json")
    assert too_long.status_code == 400 and "shortest clip" in too_long.json()["detail"]
    assert not RoughCut.objects.exists()
    renders.assert_not_called()


def test_a_failed_cut_has_its_error_and_no_files(api, pro_acme, alice, renders):
    project = api.post("/api/v1/projects/", {"name": "Broken"}, format="json").json()
    take = _delivered_take(api, project["id"])
    Take.objects.filter(pk=take.pk).update(output_original="takes/gone.mp4")
    cut = api.post(f"/api/v1/projects/{project['id']}/rough-cuts/", {}, format="json").json()
    render_rough_cut(cut["id"])
    failed = api.get(f"/api/v1/rough-cuts/{cut['id']}/").json()
    assert failed["status"] == "failed" and failed["error"] and failed["files"] is None


def test_the_webhook_points_at_the_api_object(api, pro_acme, renders, settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = True
    endpoint = api.post(
        "/api/v1/webhook-endpoints/",
        {"url": "http://127.0.0.1:9/hook", "event_types": ["rough_cut.failed"]},
        format="json",
    ).json()
    project = api.post("/api/v1/projects/", {"name": "Hooked"}, format="json").json()
    take = _delivered_take(api, project["id"])
    Take.objects.filter(pk=take.pk).update(output_original="takes/gone.mp4")
    cut = api.post(f"/api/v1/projects/{project['id']}/rough-cuts/", {}, format="json").json()
    render_rough_cut(cut["id"])
    [delivery] = WebhookEndpoint.objects.get(pk=endpoint["id"]).deliveries.all()
    data = delivery.payload["data"]
    # The API object without signed links (they would expire while deliveries retry).
    assert data["url"] == cut["url"] and "files" not in data and data["links"] == {}
    fetched = api.get(data["url"][len(settings.PUBLIC_BASE_URL.rstrip("/")) :]).json()
    assert {k: v for k, v in fetched.items() if k != "files"} == {
        k: v for k, v in data.items() if k != "links"
    }


def test_an_idempotency_key_replays_the_first_start(api, pro_acme, renders):
    project = api.post("/api/v1/projects/", {"name": "Retry"}, format="json").json()
    _delivered_take(api, project["id"])
    path = f"/api/v1/projects/{project['id']}/rough-cuts/"
    first = api.post(path, {"crossfade_ms": 0}, format="json", HTTP_IDEMPOTENCY_KEY="cut-1")
    again = api.post(path, {"crossfade_ms": 0}, format="json", HTTP_IDEMPOTENCY_KEY="cut-1")
    assert first.status_code == again.status_code == 201
    assert first.content == again.content and again["Idempotent-Replayed"] == "true"
    other = api.post(path, {"crossfade_ms": 100}, format="json", HTTP_IDEMPOTENCY_KEY="cut-1")
    assert other.status_code == 409 and other.json()["field"] == "Idempotency-Key"
    assert RoughCut.objects.count() == 1


def test_another_workspace_gets_404_and_starts_nothing(
    api, pro_acme, charlie_key, charlie, renders
):
    project = api.post("/api/v1/projects/", {"name": "Acme's"}, format="json").json()
    _delivered_take(api, project["id"])
    cut = api.post(f"/api/v1/projects/{project['id']}/rough-cuts/", {}, format="json").json()
    outsider = bearer(charlie_key)
    refused = outsider.post(f"/api/v1/projects/{project['id']}/rough-cuts/", {}, format="json")
    assert refused.status_code == 404 and refused.json()["code"] == "not_found"
    assert outsider.get(f"/api/v1/rough-cuts/{cut['id']}/").status_code == 404
    assert outsider.get("/api/v1/rough-cuts/", {"project": project["id"]}).json()["results"] == []
    assert client_for(charlie).get(f"/api/v1/rough-cuts/{cut['id']}/").status_code == 404
    assert RoughCut.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_starts_with_one_key_make_one_cut(acme_key, pro_acme, renders):
    api = bearer(acme_key)
    project = api.post("/api/v1/projects/", {"name": "Race"}, format="json").json()
    _delivered_take(api, project["id"])
    path = f"/api/v1/projects/{project['id']}/rough-cuts/"
    start = threading.Barrier(10)
    answers: list[tuple[int, bytes]] = []
    errors: list[BaseException] = []

    def create() -> None:
        client = bearer(acme_key)
        try:
            start.wait()
            answer = client.post(path, {}, format="json", HTTP_IDEMPOTENCY_KEY="race")
            answers.append((answer.status_code, answer.content))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert {status for status, _ in answers} == {201} and len(answers) == 10
    assert len({body for _, body in answers}) == 1
    assert RoughCut.objects.count() == 1
    renders.assert_called_once_with(str(RoughCut.objects.get().pk))  # one render enqueued
    assert RoughCut.objects.get().status == RoughCutStatus.QUEUED
