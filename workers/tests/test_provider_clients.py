"""The provider clients against local fakes that speak each provider's documented shapes:
field mapping, status mapping, cancel, error mapping (429, 5xx, timeouts, malformed JSON,
invalid input, moderation) and webhook verification."""

from __future__ import annotations

import base64
import time

import jwt
import pytest

from workers import credentials
from workers.backends import (
    ModerationBlocked,
    PermanentBackendError,
    ProviderAtCapacity,
    Request,
    TransientBackendError,
    WebhookRejected,
    backend_for,
)
from workers.backends.kling import token
from workers.models import Provider

from .fake_providers import API_KEY, REPLICATE_WEBHOOK_SECRET, SECRET_KEY
from .provider_support import PROVIDER_MODELS

KINDS = ["replicate", "fal", "kling", "runway"]
IMAGE = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
LAST = "data:image/png;base64," + base64.b64encode(b"\x89PNG last").decode()


def provider_for(fake, **fields) -> Provider:
    secret = {"replicate": REPLICATE_WEBHOOK_SECRET, "kling": SECRET_KEY}.get(fake.kind, "")
    values = {
        "name": fake.kind,
        "slug": fake.kind,
        "kind": fake.kind,
        "base_url": fake.url,
        "api_key_encrypted": credentials.encrypt(API_KEY),
        "secret_encrypted": credentials.encrypt(secret) if secret else "",
    }
    values.update(fields)
    return Provider(**values)


def request(kind: str, **fields) -> Request:
    values = {
        "take_id": "7f1d2c3b-0000-4000-8000-000000000001",
        "attempt": 1,
        "model": PROVIDER_MODELS[kind],
        "prompt": "a heron lifts off a misty lake",
        "negative_prompt": "blurry",
        "seed": 42,
        "resolution": "720p",
        "aspect_ratio": "9:16",
        "width": 720,
        "height": 1280,
        "duration": 5,
        "webhook_url": "https://retake.example/webhooks/providers/x/y/",
    }
    values.update(fields)
    return Request(**values)


def run_to_end(backend, sent: Request, external_id: str) -> list:
    states = [backend.status(sent, external_id)]
    while not states[-1].finished:
        states.append(backend.status(sent, external_id))
    return states


@pytest.mark.parametrize("kind", KINDS)
def test_text_to_video_job_runs_to_a_downloadable_output(fakes, kind):
    fake = fakes[kind]
    with backend_for(provider_for(fake), timeout=5) as backend:
        submitted = backend.submit(request(kind))
        assert submitted.status == "queued"
        states = run_to_end(backend, request(kind), submitted.external_id)
    assert [s.status for s in states] == ["running", "succeeded"]
    assert states[-1].output_url == fake.video_url(fake.jobs[submitted.external_id])


def test_replicate_maps_parameters_and_asks_for_start_and_completed_webhooks(fakes):
    fake = fakes["replicate"]
    with backend_for(provider_for(fake), timeout=5) as backend:
        backend.submit(request("replicate", image=IMAGE, last_frame=LAST, extra={"fast": True}))
    [call] = fake.submissions()
    assert call.path == "/v1/models/wan-video/wan-2.1-t2v-480p/predictions"
    body = call.json()
    assert body["webhook"] == "https://retake.example/webhooks/providers/x/y/"
    assert body["webhook_events_filter"] == ["start", "completed"]
    assert body["input"] == {
        "prompt": "a heron lifts off a misty lake",
        "negative_prompt": "blurry",
        "seed": 42,
        "aspect_ratio": "9:16",
        "resolution": "720p",
        "duration": 5,
        "fps": 24,
        "image": IMAGE,
        "last_image": LAST,
        "fast": True,
    }


def test_replicate_version_route_creates_with_the_version_id(fakes):
    fake = fakes["replicate"]
    with backend_for(provider_for(fake), timeout=5) as backend:
        backend.submit(request("replicate", model="owner/model:5c7d5dc6dd8bf75c1acaa8565735e7986"))
    [call] = fake.submissions()
    assert call.path == "/v1/predictions"
    assert call.json()["version"] == "5c7d5dc6dd8bf75c1acaa8565735e7986"


def test_fal_submits_to_the_queue_with_fal_webhook_and_polls_the_app_base(fakes):
    fake = fakes["fal"]
    with backend_for(provider_for(fake), timeout=5) as backend:
        state = backend.submit(request("fal", image=IMAGE))
        run_to_end(backend, request("fal"), state.external_id)
    [call] = fake.submissions()
    assert call.path == "/fal-ai/kling-video/v2/master/text-to-video"
    assert call.query["fal_webhook"] == ["https://retake.example/webhooks/providers/x/y/"]
    assert call.headers["authorization"] == f"Key {API_KEY}"
    assert call.json()["image_url"] == IMAGE and call.json()["duration"] == "5"
    paths = [c.path for c in fake.calls if c.method == "GET"]
    assert paths[0] == f"/fal-ai/kling-video/requests/{state.external_id}/status"
    assert paths[-1] == f"/fal-ai/kling-video/requests/{state.external_id}"


def test_kling_signs_a_jwt_and_uses_image2video_with_raw_base64(fakes):
    fake = fakes["kling"]
    with backend_for(provider_for(fake), timeout=5) as backend:
        state = backend.submit(request("kling", image=IMAGE, last_frame=LAST))
        sent = request("kling", model="kling-v1-6", image=IMAGE)
        assert run_to_end(backend, sent, state.external_id)[-1].status == "succeeded"
    [call] = fake.submissions()
    assert call.path == "/v1/videos/image2video"
    body = call.json()
    assert body["image"] == IMAGE.partition(",")[2] and body["image_tail"] == LAST.partition(",")[2]
    assert body["model_name"] == "kling-v1-6" and body["duration"] == "5"
    assert body["external_task_id"] == "7f1d2c3b-0000-4000-8000-000000000001-1"
    assert body["callback_url"] == "https://retake.example/webhooks/providers/x/y/"
    assert "aspect_ratio" not in body
    claims = jwt.decode(
        call.headers["authorization"].removeprefix("Bearer "), SECRET_KEY, algorithms=["HS256"]
    )
    assert claims["iss"] == API_KEY and claims["nbf"] < time.time() < claims["exp"]
    assert fake.calls[-1].path == f"/v1/videos/image2video/{state.external_id}"


def test_kling_with_the_wrong_secret_key_is_refused_and_fails_over(fakes):
    fake = fakes["kling"]
    bad = provider_for(
        fake, secret_encrypted=credentials.encrypt("not-the-secret-key-0123456789abcdef")
    )
    with backend_for(bad, timeout=5) as backend, pytest.raises(TransientBackendError):
        backend.submit(request("kling"))
    assert fake.jobs == {}
    assert jwt.decode(
        token("ak", SECRET_KEY, now=1000),
        SECRET_KEY,
        algorithms=["HS256"],
        options={"verify_exp": False, "verify_nbf": False},
    ) == {"iss": "ak", "exp": 2800, "nbf": 995}


def test_runway_sends_its_version_header_ratio_and_first_last_frames(fakes):
    fake = fakes["runway"]
    with backend_for(provider_for(fake), timeout=5) as backend:
        state = backend.submit(request("runway", image=IMAGE, last_frame=LAST))
        states = run_to_end(backend, request("runway", image=IMAGE), state.external_id)
    [call] = fake.submissions()
    assert call.path == "/v1/image_to_video"
    assert call.headers["x-runway-version"] == "2024-11-06"
    body = call.json()
    assert body["ratio"] == "720:1280" and body["duration"] == 5 and body["seed"] == 42
    assert body["promptImage"] == [
        {"uri": IMAGE, "position": "first"},
        {"uri": LAST, "position": "last"},
    ]
    assert states[0].progress == 50


@pytest.mark.parametrize("kind", KINDS)
def test_cancel_stops_a_running_job_where_the_provider_can(fakes, kind):
    fake = fakes[kind]
    with backend_for(provider_for(fake), timeout=5) as backend:
        state = backend.submit(request(kind))
        canceled = backend.cancel(request(kind), state.external_id)
    # Kling's API has no cancel; the others stop the job.
    assert canceled is (kind != "kling")
    assert fake.jobs[state.external_id].status == ("queued" if kind == "kling" else "canceled")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("429", ProviderAtCapacity),
        ("500", TransientBackendError),
        ("timeout", TransientBackendError),
        ("malformed", TransientBackendError),
        ("invalid", PermanentBackendError),
        ("moderation", ModerationBlocked),
    ],
)
def test_submission_errors_map_onto_the_backend_vocabulary(fakes, kind, fault, error):
    fake = fakes[kind]
    fake.faults.append(fault)
    fake.hang_seconds = 1.0
    with backend_for(provider_for(fake), timeout=0.3) as backend, pytest.raises(error) as caught:
        backend.submit(request(kind))
    if error is PermanentBackendError:
        assert not isinstance(caught.value, ModerationBlocked)
    assert fake.jobs == {}


@pytest.mark.parametrize("kind", KINDS)
def test_a_garbled_status_answer_is_transient(fakes, kind):
    fake = fakes[kind]
    with backend_for(provider_for(fake), timeout=5) as backend:
        state = backend.submit(request(kind))
        fake.status_faults.append("malformed")
        with pytest.raises(TransientBackendError):
            backend.status(request(kind), state.external_id)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("outcome", ["fail", "blocked"])
def test_failed_and_moderated_jobs_are_told_apart(fakes, kind, outcome):
    fake = fakes[kind]
    fake.outcome = outcome
    with backend_for(provider_for(fake), timeout=5) as backend:
        state = backend.submit(request(kind))
        final = run_to_end(backend, request(kind), state.external_id)[-1]
    assert final.status == ("blocked" if outcome == "blocked" else "failed")
    assert final.error


def test_replicate_webhook_with_a_valid_signature_is_read(fakes):
    fake = fakes["replicate"]
    with backend_for(provider_for(fake), timeout=5) as backend:
        state = backend.submit(request("replicate"))
        fake.finish(state.external_id)
        _, body, headers = fake.webhook(state.external_id)
        seen = backend.parse_webhook(headers, body)
    assert (seen.external_id, seen.status) == (state.external_id, "succeeded")
    assert seen.output_url.endswith(f"/files/{state.external_id}.mp4")


@pytest.mark.parametrize(
    "tamper",
    ["body", "signature", "timestamp", "missing", "wrong_secret"],
)
def test_replicate_webhook_that_does_not_verify_is_rejected(fakes, tamper):
    fake = fakes["replicate"]
    provider = provider_for(fake)
    with backend_for(provider, timeout=5) as backend:
        state = backend.submit(request("replicate"))
        fake.finish(state.external_id)
        _, body, headers = fake.webhook(state.external_id)
        if tamper == "body":
            body = body.replace(b"succeeded", b"failed")
        elif tamper == "signature":
            headers["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
        elif tamper == "timestamp":
            headers["webhook-timestamp"] = str(int(time.time()) - 3600)
        elif tamper == "missing":
            del headers["webhook-signature"]
        else:
            other = "whsec_" + base64.b64encode(b"another-secret-entirely").decode()
            provider.secret_encrypted = credentials.encrypt(other)
        with pytest.raises(WebhookRejected):
            backend.parse_webhook(headers, body)


@pytest.mark.parametrize("kind", ["fal", "kling"])
def test_fal_and_kling_callbacks_are_read_and_garbage_is_rejected(fakes, kind):
    fake = fakes[kind]
    with backend_for(provider_for(fake), timeout=5) as backend:
        state = backend.submit(request(kind))
        fake.finish(state.external_id)
        _, body, headers = fake.webhook(state.external_id)
        assert backend.parse_webhook(headers, body).status == "succeeded"
        for garbage in (b"{not json", b"[]", b'{"hello": 1}'):
            with pytest.raises(WebhookRejected):
                backend.parse_webhook(headers, garbage)


def test_runway_accepts_no_webhooks(fakes):
    with backend_for(provider_for(fakes["runway"]), timeout=5) as backend:
        assert backend.calls_back is False
        with pytest.raises(WebhookRejected):
            backend.parse_webhook({}, b"{}")
