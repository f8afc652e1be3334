"""Webhooks end to end: takes submitted with an API key, rendered by a real Cog reference
node through a real Celery worker (with beat), and their events delivered by that worker
to a local receiver that checks every signature with the `standardwebhooks` library."""

from __future__ import annotations

import json
import time
from collections import Counter

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from accounts.actions import ensure_personal_workspace
from accounts.api_keys import create_api_key
from api.models import WebhookEndpoint
from api.tests.receiver import Receiver
from generation.curation import choose_take
from generation.models import RoughCut, Take, TakeStatus, VideoModel
from generation.tests.helpers import fund, subscribe, wallet

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = [
    "take.succeeded",
    "take.failed",
    "video.completed",
    "video.failed",
    "rough_cut.succeeded",
    "rough_cut.failed",
]


@pytest.fixture(autouse=True)
def _media_in_tmp(shared_media):
    """Media in one folder shared with the worker subprocesses."""


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def received(receiver: Receiver, secret: str) -> list[dict]:
    """Every event the receiver got, each verified (raises on a bad signature)."""
    verifier = Webhook(secret)
    return [verifier.verify(body, headers) for headers, body in list(receiver.requests)]


def wait_for_events(receiver: Receiver, secret: str, wanted: set[str], timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = received(receiver, secret)
        if wanted <= {e["type"] for e in events}:
            return events
        time.sleep(0.2)
    got = [e["type"] for e in received(receiver, secret)]
    states = list(Take.objects.values_list("status", "error"))
    raise AssertionError(f"still waiting for {wanted - set(got)}; got {got}; takes {states}")


def test_webhooks_of_a_rendered_a_failed_take_and_a_rough_cut_arrive_signed_once(
    alice, acme, charlie, catalog, live_server, workers, receiver, settings
):
    settings.WEBHOOK_ALLOW_LOOPBACK = True  # the live server checks the endpoint's URL
    outsider = Receiver()  # charlie's endpoint wants every event too, and must get none
    WebhookEndpoint.objects.create(
        workspace=ensure_personal_workspace(charlie), url=outsider.url, event_types=EVENTS
    )
    workers.env["WEBHOOK_ALLOW_LOOPBACK"] = "1"  # the worker delivers to it
    subscribe(acme, "pro")
    fund(acme, 100)
    balance = wallet(acme).balance
    _key, raw = create_api_key(acme, name="hooks", acting_user=alice)
    api = httpx.Client(
        base_url=f"{live_server.url}/api/v1", headers={"Authorization": f"Bearer {raw}"}
    )
    made = api.post("/webhook-endpoints/", json={"url": receiver.url, "event_types": EVENTS})
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    # A model whose only 480p size is odd: the reference node fails such a render (H.264
    # needs even sides) with a readable error, as a real node fails a bad job.
    VideoModel.objects.filter(slug="hunyuanvideo-i2v").update(native_sizes=["855x480"])
    workers.start()

    good = api.post(
        "/takes/",
        json={"model": "wan2.1-t2v-1.3b", "prompt": "a kite", "resolution": "480p", "duration": 1},
        headers={"Idempotency-Key": "hooks-good"},
    )
    bad = api.post(
        "/takes/",
        json={"model": "hunyuanvideo-i2v", "prompt": "a kite", "resolution": "480p", "duration": 1},
        headers={"Idempotency-Key": "hooks-bad"},
    )
    assert good.status_code == bad.status_code == 201, (good.text, bad.text)
    good_id, bad_id = good.json()["takes"][0]["id"], bad.json()["takes"][0]["id"]
    events = wait_for_events(
        receiver, secret, {"take.succeeded", "video.completed", "take.failed", "video.failed"}
    )
    by_type = {e["type"]: e["data"] for e in events}

    delivered = Take.objects.get(pk=good_id)
    assert delivered.status == TakeStatus.SUCCEEDED and delivered.charged == 2
    assert by_type["take.succeeded"]["id"] == good_id
    assert by_type["take.succeeded"]["charged"] == 2
    assert by_type["take.succeeded"]["measured"]["codec"] == "h264"
    video = by_type["video.completed"]
    assert video["take_id"] == good_id and video["status"] == "completed"
    assert video["size"] == "832x480" and video["charged_credits"] == 2

    failed = Take.objects.get(pk=bad_id)
    assert failed.status == TakeStatus.FAILED and "even" in failed.error
    assert by_type["take.failed"]["id"] == bad_id and by_type["take.failed"]["charged"] == 0
    assert by_type["video.failed"]["charged_credits"] == 0
    assert by_type["video.failed"]["error"]["code"] == "generation_failed"
    # Only the delivered second was charged; nothing is left held.
    assert (wallet(acme).balance, wallet(acme).held) == (balance - 2, 0)

    # The delivered take, kept for its shot, exported with the key as the project's rough
    # cut; the event names the API object, which answers signed links to the files.
    choose_take(delivered)
    started = api.post(f"/projects/{delivered.shot.project_id}/rough-cuts/", json={})
    assert started.status_code == 201, started.text
    events = wait_for_events(receiver, secret, {"rough_cut.succeeded"})
    exported = next(e["data"] for e in events if e["type"] == "rough_cut.succeeded")
    cut = RoughCut.objects.get(pk=started.json()["id"])
    assert exported["id"] == str(cut.pk) and exported["status"] == "succeeded"
    assert (exported["width"], exported["height"]) == (832, 480)
    assert exported["links"]["video"].startswith(live_server.url)
    assert (
        exported["url"] == started.json()["url"] == f"{live_server.url}/api/v1/rough-cuts/{cut.pk}/"
    )
    files = api.get(exported["url"]).json()["files"]
    video = httpx.get(files["video"]["url"])  # no key: the link is the grant
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    assert httpx.get(files["timeline"]["url"]).json()["OTIO_SCHEMA"].startswith("Timeline")

    # Each event once, each with its own webhook-id; a tampered body fails verification.
    time.sleep(1)  # a duplicate would have been sent by now
    counts = Counter(e["type"] for e in received(receiver, secret))
    assert counts == {t: 1 for t in EVENTS if t != "rough_cut.failed"}
    assert len({h["webhook-id"] for h, _ in receiver.requests}) == len(receiver.requests)
    headers, body = receiver.requests[0]
    forged = json.dumps({**json.loads(body), "type": "take.succeeded"}).encode()
    with pytest.raises(Exception, match="signature"):
        Webhook(secret).verify(forged, headers)
    logged = api.get(f"/webhook-endpoints/{made.json()['id']}/deliveries/").json()["results"]
    assert {d["status"] for d in logged} == {"succeeded"} and len(logged) == 5
    assert outsider.requests == []
    outsider.close()
