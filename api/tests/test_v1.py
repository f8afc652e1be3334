"""`/api/v1/`: models with prices, quotes, takes (create, list, read, cancel, finalize),
projects and shots, the wallet, idempotent retries, cursor pages, one error shape and
rate limits. Session users (the studio) reach the same endpoints."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from api.idempotency import purge_expired
from api.models import IdempotentResponse
from api.tests.conftest import bearer, key_for
from billing.models import Hold, HoldStatus
from conftest import client_for
from generation.models import Take, TakeStatus
from generation.tests.helpers import png_bytes

pytestmark = pytest.mark.django_db

TAKE = {"model": "wan2.1-t2v-1.3b", "prompt": "a kite", "resolution": "480p", "duration": 2}


def test_models_list_capabilities_and_prices_for_the_plan(api):
    models = api.get("/api/v1/models/").json()
    wan = next(m for m in models if m["id"] == "wan2.1-t2v-1.3b")
    assert wan["capabilities"]["text_to_video"] is True
    assert wan["durations"] == [1, 2, 3, 5] and "16:9" in wan["aspect_ratios"]
    modes = {(p["mode"], p["resolution"]) for p in wan["prices"]}
    assert ("standard", "480p") in modes and ("draft", "480p") in modes
    assert all(float(p["credits_per_second"]) >= 0 for p in wan["prices"])


def test_quote_matches_the_hold_of_the_take_it_prices(api, pro_acme):
    quote = api.post("/api/v1/quotes/", TAKE, format="json").json()
    assert quote["quote"]["seconds"] == 2 and quote["available"] > 0
    take = api.post("/api/v1/takes/", TAKE, format="json").json()["takes"][0]
    assert take["price"] == quote["quote"]["total"]
    assert Hold.objects.get(pk=Take.objects.get(pk=take["id"]).hold_id).amount == take["price"]


def test_create_list_read_cancel_a_take(api, pro_acme):
    created = api.post("/api/v1/takes/", {**TAKE, "count": 2}, format="json")
    assert created.status_code == 201
    ids = [t["id"] for t in created.json()["takes"]]
    listed = api.get("/api/v1/takes/", {"status": "queued", "model": "wan2.1-t2v-1.3b"}).json()
    assert {t["id"] for t in listed["results"]} == set(ids)
    assert api.get("/api/v1/takes/", {"status": "succeeded"}).json()["results"] == []
    assert api.get(f"/api/v1/takes/{ids[0]}/").json()["status"] == "queued"
    canceled = api.post(f"/api/v1/takes/{ids[0]}/cancel/")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    hold = Hold.objects.get(pk=Take.objects.get(pk=ids[0]).hold_id)
    assert hold.status == HoldStatus.RELEASED
    again = api.post(f"/api/v1/takes/{ids[0]}/cancel/")
    assert again.status_code == 200  # cancelling twice changes nothing


def test_image_to_video_takes_a_multipart_reference(api, pro_acme):
    from django.core.files.uploadedfile import SimpleUploadedFile

    image = SimpleUploadedFile("ref.png", png_bytes(), content_type="image/png")
    answer = api.post(
        "/api/v1/takes/",
        {**TAKE, "model": "wan2.1-i2v-14b", "image": image},
        format="multipart",
    )
    assert answer.status_code == 201, answer.json()
    shot = answer.json()["takes"][0]["shot"]
    assert api.get(f"/api/v1/shots/{shot}/").json()["has_reference_image"] is True
    no_image = api.post("/api/v1/takes/", {**TAKE, "model": "wan2.1-i2v-14b"}, format="json")
    assert no_image.status_code == 400 and no_image.json()["field"] == "image"


def test_errors_have_one_shape_and_name_the_field(api, pro_acme):
    bad = api.post("/api/v1/takes/", {**TAKE, "duration": 7}, format="json")
    assert bad.status_code == 400
    body = bad.json()
    assert set(body) == {"detail", "field", "errors", "code"}
    assert body["field"] == "duration" and "1, 2, 3, 5" in body["detail"]
    nul = api.post("/api/v1/takes/", {**TAKE, "prompt": "a\x00b"}, format="json")
    assert nul.status_code == 400 and nul.json()["field"] == "prompt"
    wrong_type = api.post("/api/v1/takes/", {**TAKE, "duration": True}, format="json")
    assert wrong_type.status_code == 400 and wrong_type.json()["field"] == "duration"
    missing = api.get("/api/v1/takes/00000000-0000-0000-0000-000000000000/")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert Take.objects.count() == 0


def test_an_idempotency_key_replays_the_first_response_and_refuses_another_body(api, pro_acme):
    headers = {"HTTP_IDEMPOTENCY_KEY": "retry-1"}
    first = api.post("/api/v1/takes/", TAKE, format="json", **headers)
    Take.objects.update(progress=42)  # a replay does not re-render the take
    again = api.post("/api/v1/takes/", TAKE, format="json", **headers)
    assert first.status_code == again.status_code == 201
    assert first.content == again.content and again["Idempotent-Replayed"] == "true"
    other = api.post("/api/v1/takes/", {**TAKE, "prompt": "a boat"}, format="json", **headers)
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    assert Take.objects.count() == 1 and Hold.objects.count() == 1


@pytest.mark.frozen_at("2026-03-04T09:00:00+00:00")
def test_stored_responses_are_purged_after_the_retention_and_a_reused_key_makes_no_take(
    api, pro_acme, settings
):
    settings.API_IDEMPOTENCY_RETENTION_HOURS = 24
    start = timezone.now()
    for n in range(5):
        answer = api.post("/api/v1/takes/", TAKE, format="json", HTTP_IDEMPOTENCY_KEY=f"k{n}")
        assert answer.status_code == 201
    first = api.post("/api/v1/takes/", TAKE, format="json", HTTP_IDEMPOTENCY_KEY="k0")
    assert first["Idempotent-Replayed"] == "true"
    with time_machine.travel(start + timedelta(hours=12), tick=False):
        later = api.post("/api/v1/takes/", TAKE, format="json", HTTP_IDEMPOTENCY_KEY="late")
        assert later.status_code == 201
    with time_machine.travel(start + timedelta(hours=23, minutes=59), tick=False):
        assert purge_expired(batch=2) == 0
    with time_machine.travel(start + timedelta(hours=24, seconds=1), tick=False):
        assert purge_expired(batch=2) == 5  # three statements of at most two rows
        assert list(IdempotentResponse.objects.values_list("key", flat=True)) == ["late"]
        again = api.post("/api/v1/takes/", TAKE, format="json", HTTP_IDEMPOTENCY_KEY="k0")
    # Past the retention the answer is built afresh, but the key still makes no second take.
    assert again.status_code == 201 and "Idempotent-Replayed" not in again
    assert again.json()["takes"][0]["id"] == first.json()["takes"][0]["id"]
    assert Take.objects.count() == 6 and Hold.objects.count() == 6


def test_lists_page_with_cursors(api, pro_acme):
    for index in range(5):
        api.post("/api/v1/takes/", {**TAKE, "prompt": f"kite {index}"}, format="json")
    first = api.get("/api/v1/takes/", {"page_size": 2}).json()
    second = api.get(first["next"]).json()
    third = api.get(second["next"]).json()
    seen = [t["id"] for page in (first, second, third) for t in page["results"]]
    assert len(seen) == len(set(seen)) == 5 and third["next"] is None


def test_projects_shots_and_the_wallet(api, pro_acme):
    project = api.post("/api/v1/projects/", {"name": "Ad"}, format="json").json()
    take = api.post("/api/v1/takes/", {**TAKE, "project": project["id"]}, format="json").json()
    take = take["takes"][0]
    shots = api.get("/api/v1/shots/", {"project": project["id"]}).json()["results"]
    assert [s["id"] for s in shots] == [take["shot"]]
    assert api.get(f"/api/v1/projects/{project['id']}/").json()["name"] == "Ad"
    wallet = api.get("/api/v1/wallet/").json()
    assert wallet["held"] == take["price"]
    lots = api.get("/api/v1/wallet/lots/").json()["results"]
    assert sum(lot["remaining"] for lot in lots) == wallet["balance"]
    kinds = [e["kind"] for e in api.get("/api/v1/wallet/ledger/").json()["results"]]
    assert kinds[0] == "hold" and "grant" in kinds
    usage = api.get("/api/v1/wallet/usage/", {"days": 7}).json()
    assert usage["usage"] == []  # nothing charged yet
    assert api.get("/api/v1/wallet/usage/", {"days": 0}).status_code == 400


def test_the_browser_session_reaches_the_same_api_on_any_plan(alice, acme, no_dispatch):
    from generation.tests.helpers import fund, setup_catalog

    setup_catalog()
    fund(acme, 100)
    client = client_for(alice, acme)
    answer = client.post("/api/v1/takes/", TAKE, content_type="application/json")
    assert answer.status_code == 201, answer.json()
    assert (
        client.get("/api/v1/takes/").json()["results"][0]["id"] == answer.json()["takes"][0]["id"]
    )


def test_anonymous_calls_get_401(db):
    from rest_framework.test import APIClient

    answer = APIClient().get("/api/v1/takes/")
    assert answer.status_code == 401 and answer.json()["code"] == "unauthenticated"


def test_per_key_rate_limits_answer_429_with_retry_after(api, pro_acme, alice, settings):
    from django.core.cache import cache

    cache.clear()
    settings.API_RATE_BURST = "3/min"
    answers = [api.get("/api/v1/wallet/") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0]["X-RateLimit-Limit"] == "3" and answers[0]["X-RateLimit-Remaining"] == "2"
    assert answers[2]["X-RateLimit-Remaining"] == "0"
    assert int(answers[3]["Retry-After"]) > 0 and answers[3].json()["code"] == "rate_limited"
    # Another key has its own budget.
    assert bearer(key_for(pro_acme, alice)).get("/api/v1/wallet/").status_code == 200
    cache.clear()


def test_a_finished_draft_can_be_finalized(api, pro_acme):
    draft = api.post("/api/v1/takes/", {**TAKE, "mode": "draft"}, format="json").json()["takes"][0]
    refused = api.post(f"/api/v1/takes/{draft['id']}/finalize/", {}, format="json")
    assert refused.status_code == 400 and "finished draft" in refused.json()["detail"]
    Take.objects.filter(pk=draft["id"]).update(status=TakeStatus.SUCCEEDED)
    final = api.post(f"/api/v1/takes/{draft['id']}/finalize/", {}, format="json")
    assert final.status_code == 201 and final.json()["draft_of"] == draft["id"]
