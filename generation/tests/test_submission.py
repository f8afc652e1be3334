"""Submitting takes over the JSON API: validation, holds, idempotency, tenancy."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from billing.models import Hold, HoldStatus
from conftest import client_for
from generation.models import Shot, Submission, Take, TakeStatus

from .helpers import fund, png_bytes, png_header_only, setup_catalog, subscribe, wallet

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    """Enqueueing is on commit; these tests don't run a worker, so record instead."""
    sent = []
    monkeypatch.setattr("workers.tasks.dispatch_takes.delay", lambda *a, **k: sent.append(a))
    return sent


@pytest.fixture
def catalog(db):
    return setup_catalog()


@pytest.fixture
def funded(acme, catalog):
    fund(acme, 1000)
    return acme


def post(client, **data):
    data.setdefault("model", "wan2.1-t2v-1.3b")
    data.setdefault("prompt", "a red kite over the sea at dawn")
    data.setdefault("resolution", "480p")
    data.setdefault("duration", 2)
    key = data.pop("idempotency_key", "k1")
    return client.post("/api/v1/takes/", data, HTTP_IDEMPOTENCY_KEY=key)


def test_submit_creates_queued_take_with_locked_price_and_hold(alice, funded, charlie):
    client = client_for(alice, funded)
    response = post(client)
    assert response.status_code == 201, response.json()
    [body] = response.json()["takes"]
    take = Take.objects.get(pk=body["id"])
    assert take.status == TakeStatus.QUEUED
    assert body["queue_position"] == 1
    # 2 s at 480p on the demo rate card (2 credits/s).
    assert take.quote["total"] == 4 and body["price"] == 4
    hold = Hold.objects.get(pk=take.hold_id)
    assert hold.amount == 4 and hold.status == HoldStatus.PENDING and hold.member == alice
    assert wallet(funded).held == 4
    # Wan 2.1 makes 832x480 at 480p, not the 854x480 that 16:9 would be.
    assert (take.width, take.height) == (832, 480)
    assert take.shot.project.is_inbox
    # charlie cannot see it.
    assert client_for(charlie).get(f"/api/v1/takes/{take.pk}/").status_code == 404


def test_replayed_submission_returns_the_same_takes(alice, funded, _no_broker):
    subscribe(funded, "pro")
    client = client_for(alice, funded)
    first = post(client, count=3, seed=7).json()["takes"]
    second = post(client, count=3, seed=7).json()["takes"]
    assert [t["id"] for t in first] == [t["id"] for t in second]
    assert [t["seed"] for t in first] == [7, 8, 9]
    assert Take.objects.count() == 3 and Hold.objects.count() == 3
    conflict = post(client, count=2, seed=7)
    assert conflict.status_code == 409 and conflict.json()["field"] == "Idempotency-Key"


def test_random_seed_is_recorded(alice, funded):
    body = post(client_for(alice, funded)).json()["takes"][0]
    assert Take.objects.get(pk=body["id"]).seed == body["seed"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"model": "no-such-model"}, "model"),
        ({"resolution": "4320p"}, "resolution"),
        ({"duration": 999}, "duration"),
        ({"resolution": "720p"}, "resolution"),  # above the Free plan
        ({"prompt": "   "}, "prompt"),
        ({"count": 5}, "count"),
        ({"mode": "off_peak"}, "mode"),  # not on the Free plan
        ({"duration": "soon"}, "duration"),
    ],
)
def test_bad_input_is_refused_with_a_field_and_changes_nothing(alice, funded, charlie, data, field):
    response = post(client_for(alice, funded), **data)
    assert response.status_code == 400, response.json()
    assert response.json()["field"] == field and response.json()["detail"]
    assert_nothing_written(funded)
    assert post(client_for(charlie), **data).status_code in (400, 402)


def assert_nothing_written(workspace):
    assert not Take.objects.exists()
    assert not Shot.objects.exists()
    assert not Submission.objects.exists()
    assert not Hold.objects.exists()
    assert wallet(workspace).held == 0


def test_text_file_as_image_is_refused(alice, funded):
    image = SimpleUploadedFile("notes.png", b"just some text, not a picture\n", "image/png")
    response = post(client_for(alice, funded), model="wan2.1-i2v-14b", image=image)
    assert response.status_code == 400 and response.json()["field"] == "image"
    assert_nothing_written(funded)


def test_huge_png_is_refused_without_being_decoded(alice, funded):
    image = SimpleUploadedFile("bomb.png", png_header_only(20000, 20000), "image/png")
    response = post(client_for(alice, funded), model="wan2.1-i2v-14b", image=image)
    assert response.status_code == 400 and response.json()["field"] == "image"
    assert "pixels" in response.json()["detail"]
    assert_nothing_written(funded)


def test_image_to_video_stores_the_reference(alice, funded):
    image = SimpleUploadedFile("ref.png", png_bytes(), "image/png")
    response = post(client_for(alice, funded), model="wan2.1-i2v-14b", image=image)
    assert response.status_code == 201, response.json()
    take = Take.objects.get(pk=response.json()["takes"][0]["id"])
    from django.core.files.storage import default_storage

    assert default_storage.exists(take.shot.reference_image)


def test_text_only_model_refuses_an_image(alice, funded):
    image = SimpleUploadedFile("ref.png", png_bytes(), "image/png")
    response = post(client_for(alice, funded), image=image)
    assert response.status_code == 400 and response.json()["field"] == "image"
    assert_nothing_written(funded)


def test_not_enough_credits_is_402_and_holds_nothing(alice, acme, catalog):
    response = post(client_for(alice, acme))
    assert response.status_code == 402 and response.json()["field"] == "credits"
    assert_nothing_written(acme)


def test_moderation_refuses_and_charges_nothing(alice, funded, settings):
    settings.MODERATION_BLOCKLIST = ["forbidden"]
    response = post(client_for(alice, funded), prompt="A Forbidden scene")
    assert response.status_code == 400 and response.json()["field"] == "prompt"
    assert "forbidden" in response.json()["detail"]
    assert_nothing_written(funded)


def test_cancel_queued_take_releases_hold(alice, funded, charlie):
    take_id = post(client_for(alice, funded)).json()["takes"][0]["id"]
    assert client_for(charlie).post(f"/api/v1/takes/{take_id}/cancel/").status_code == 404
    response = client_for(alice, funded).post(f"/api/v1/takes/{take_id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "canceled"
    take = Take.objects.get(pk=take_id)
    assert Hold.objects.get(pk=take.hold_id).status == HoldStatus.RELEASED
    assert wallet(funded).held == 0 and wallet(funded).balance == 1000
    again = client_for(alice, funded).post(f"/api/v1/takes/{take_id}/cancel/")
    assert again.status_code == 200


def test_outsider_gets_404_on_every_take_endpoint(alice, funded, charlie):
    take_id = post(client_for(alice, funded)).json()["takes"][0]["id"]
    outsider = client_for(charlie)
    assert outsider.get(f"/api/v1/takes/{take_id}/").status_code == 404
    assert outsider.post(f"/api/v1/takes/{take_id}/cancel/").status_code == 404
    assert outsider.post(f"/api/v1/takes/{take_id}/finalize/").status_code == 404
    assert Take.objects.get(pk=take_id).status == TakeStatus.QUEUED


def test_finalize_needs_a_succeeded_draft(alice, funded):
    subscribe(funded, "pro")
    client = client_for(alice, funded)
    body = post(client, mode="draft", resolution="720p").json()["takes"][0]
    assert body["resolution"] == "480p" and body["mode"] == "draft"
    refused = client.post(f"/api/v1/takes/{body['id']}/finalize/")
    assert refused.status_code == 400
    Take.objects.filter(pk=body["id"]).update(status=TakeStatus.SUCCEEDED)
    final = client.post(f"/api/v1/takes/{body['id']}/finalize/")
    assert final.status_code == 201, final.json()
    final_body = final.json()
    assert final_body["seed"] == body["seed"] and final_body["resolution"] == "720p"
    assert final_body["mode"] == "standard" and final_body["draft_of"] == body["id"]
    # A double click finalizes once.
    again = client.post(f"/api/v1/takes/{body['id']}/finalize/")
    assert again.json()["id"] == final_body["id"]
