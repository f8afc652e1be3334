"""The studio pages: form, live quote, submission errors, take grid, take actions, compare,
projects. Server-side (Django test client); the browser tests drive the same pages live."""

from __future__ import annotations

from unittest import mock

import pytest

from billing.demo import PACKAGES
from billing.models import CreditPackage, Hold, HoldStatus
from conftest import client_for
from generation.lifecycle import fail_take
from generation.models import Shot, Take, TakeStatus
from generation.submission import TakeSpec, submit_takes
from generation.tests.helpers import fund, setup_catalog, studio_form, subscribe, wallet

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _catalog():
    setup_catalog()


@pytest.fixture(autouse=True)
def _no_broker():
    with mock.patch("workers.tasks.dispatch_takes.delay"):
        yield


def _take(workspace, user, **spec) -> Take:
    fields = {"model": "wan2.1-t2v-1.3b", "prompt": "a kite", "resolution": "480p", "duration": 1}
    fields.update(spec)
    [take] = submit_takes(workspace, user, TakeSpec(**fields), idempotency_key=str(fields))
    return take


def _succeed(take: Take, charged: int = 2) -> Take:
    Take.objects.filter(pk=take.pk).update(
        status=TakeStatus.SUCCEEDED,
        progress=100,
        charged=charged,
        output_original="outputs/x.mp4",
        output_poster="outputs/x.jpg",
        output_preview="outputs/x-preview.mp4",
    )
    take.refresh_from_db()
    return take


def test_studio_offers_only_what_the_model_can_do(alice, acme):
    client = client_for(alice, acme)
    page = client.get("/studio/", {"model": "wan2.1-t2v-1.3b"}).content.decode()
    assert 'name="prompt"' in page and "Wan 2.1 T2V 1.3B" in page
    # A text-only model has no reference image input; an image model asks for one.
    assert 'name="image"' not in page
    options = client.get("/studio/options/", {"model": "wan2.1-i2v-14b"})
    assert options.status_code == 200
    body = options.content.decode()
    assert 'name="image"' in body and "Required" in body
    assert options["HX-Trigger-After-Settle"] == "options-changed"
    # The free plan renders up to 480p: 720p is offered but disabled, with the reason.
    assert 'value="720p" disabled' in body and "not on Free" in body


def test_live_quote_shows_breakdown_total_and_balance_after(alice, acme):
    fund(acme, 50)
    response = client_for(alice, acme).get("/studio/quote/", studio_form(duration="2"))
    body = response.content.decode()
    # 2 credits/s at 480p × 2 s = 4 credits; 50 → 46.
    assert "Total: 4 credits" in body
    assert "Balance 50 → 46" in body


def test_live_quote_explains_what_the_plan_does_not_allow(alice, acme):
    fund(acme, 50)
    client = client_for(alice, acme)
    body = client.get("/studio/quote/", studio_form(resolution="720p")).content.decode()
    assert "Your plan allows up to 480p." in body
    body = client.get("/studio/quote/", studio_form(mode="off_peak")).content.decode()
    assert "Off-peak mode is not included in the Free plan." in body


def test_live_quote_offers_packages_when_short(alice, acme, settings):
    fund(acme, 1)
    settings.STRIPE_SECRET_KEY = "sk_test_configured"
    body = client_for(alice, acme).get("/studio/quote/", studio_form()).content.decode()
    assert "Not enough credits" in body and "/billing/" in body


def test_live_quote_says_when_payments_are_not_configured(alice, acme, settings):
    fund(acme, 1)
    settings.STRIPE_SECRET_KEY = ""
    body = client_for(alice, acme).get("/studio/quote/", studio_form()).content.decode()
    assert "Not enough credits" in body and "Payments are not configured" in body
    assert "/billing/" not in body


def test_submitting_the_form_creates_takes_and_holds(alice, acme, charlie):
    subscribe(acme, "standard")
    fund(acme, 100)
    client = client_for(alice, acme)
    response = client.post("/studio/", studio_form(count="2"))
    assert response.status_code == 302
    takes = Take.objects.filter(workspace=acme)
    assert takes.count() == 2
    assert wallet(acme).held == 8
    # A double-clicked Generate (same idempotency key) changes nothing.
    client.post("/studio/", studio_form(count="2"))
    assert Take.objects.filter(workspace=acme).count() == 2
    grid = client.get("/studio/takes/").content.decode()
    assert grid.count('data-testid="take-card"') == 2
    assert 'hx-trigger="every 2s"' in grid
    assert client_for(charlie).get("/studio/takes/").content.decode().count("take-card") == 0


def test_insufficient_credits_offers_the_packages_and_changes_nothing(alice, acme, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_configured"
    fund(acme, 1)
    for package in PACKAGES:
        CreditPackage.objects.update_or_create(slug=package["slug"], defaults=package)
    response = client_for(alice, acme).post("/studio/", studio_form())
    assert response.status_code == 402
    body = response.content.decode()
    assert "Top up with a credit package" in body and "100 credits" in body
    assert Take.objects.filter(workspace=acme).count() == 0
    assert not Shot.objects.dangerously_unscoped().filter(project__workspace=acme).exists()
    assert (wallet(acme).balance, wallet(acme).held) == (1, 0)


def test_a_blocked_prompt_says_why(alice, acme, settings):
    settings.MODERATION_BLOCKLIST = ["paper boat"]
    fund(acme, 50)
    response = client_for(alice, acme).post("/studio/", studio_form())
    body = response.content.decode()
    assert response.status_code == 400
    assert "The prompt contains blocked content (paper boat)." in body
    assert "Nothing was charged" in body
    assert wallet(acme).held == 0


def test_grid_stops_polling_when_no_take_is_in_flight(alice, acme):
    fund(acme, 50)
    take = _take(acme, alice)
    _succeed(take)
    grid = client_for(alice, acme).get("/studio/takes/").content.decode()
    assert "every 2s" not in grid and "100%" in grid


def test_failed_take_says_it_cost_nothing(alice, acme, charlie):
    fund(acme, 50)
    take = _take(acme, alice)
    fail_take(take.pk, "The node ran out of memory.")
    client = client_for(alice, acme)
    page = client.get(f"/takes/{take.pk}/").content.decode()
    assert "It cost nothing" in page and "The node ran out of memory." in page
    assert wallet(acme).balance == 50
    assert client_for(charlie).get(f"/takes/{take.pk}/").status_code == 404


def test_take_status_asks_the_page_to_reload_once_done(alice, acme):
    fund(acme, 50)
    take = _take(acme, alice)
    client = client_for(alice, acme)
    running = client.get(f"/takes/{take.pk}/status/", HTTP_HX_REQUEST="true")
    assert "HX-Refresh" not in running and "in queue" in running.content.decode()
    _succeed(take)
    done = client.get(f"/takes/{take.pk}/status/", HTTP_HX_REQUEST="true")
    assert done["HX-Refresh"] == "true"


def test_choose_favourite_and_download_a_take(alice, acme, charlie):
    fund(acme, 50)
    take = _succeed(_take(acme, alice))
    client = client_for(alice, acme)
    outsider = client_for(charlie)
    assert outsider.post(f"/takes/{take.pk}/choose/").status_code == 404
    assert outsider.post(f"/takes/{take.pk}/favourite/", {"favourite": "1"}).status_code == 404
    client.post(f"/takes/{take.pk}/choose/")
    client.post(f"/takes/{take.pk}/favourite/", {"favourite": "1"})
    take.refresh_from_db()
    assert take.shot.chosen_take_id == take.pk and take.is_favourite
    download = client.get(f"/takes/{take.pk}/download/")
    assert download.status_code == 302 and "/media/signed/" in download["Location"]
    assert outsider.get(f"/takes/{take.pk}/download/").status_code == 404


def test_an_unfinished_take_cannot_be_chosen(alice, acme):
    fund(acme, 50)
    take = _take(acme, alice)
    response = client_for(alice, acme).post(f"/takes/{take.pk}/choose/", follow=True)
    assert "Only a finished take" in response.content.decode()
    take.shot.refresh_from_db()
    assert take.shot.chosen_take_id is None


def test_cancel_from_the_take_page_releases_the_hold(alice, acme, charlie):
    fund(acme, 50)
    take = _take(acme, alice)
    assert client_for(charlie).post(f"/takes/{take.pk}/cancel/").status_code == 404
    client_for(alice, acme).post(f"/takes/{take.pk}/cancel/")
    take.refresh_from_db()
    assert take.status == TakeStatus.CANCELED
    assert (wallet(acme).balance, wallet(acme).held) == (50, 0)
    assert Hold.objects.get(pk=take.hold_id).status == HoldStatus.RELEASED


def test_finalize_a_draft_and_reuse_its_seed(alice, acme):
    subscribe(acme, "standard")
    fund(acme, 100)
    draft = _succeed(_take(acme, alice, mode="draft", seed=77))
    client = client_for(alice, acme)
    response = client.post(f"/takes/{draft.pk}/finalize/")
    final = Take.objects.get(draft_of=draft)
    assert response["Location"] == f"/takes/{final.pk}/"
    assert (final.seed, final.resolution, final.mode) == (77, "720p", "standard")
    reuse = client.get("/studio/", {"from": str(draft.pk), "seed": "1"}).content.decode()
    assert 'value="77"' in reuse and 'value="fixed" checked' in reuse


def test_compare_needs_two_to_four_finished_takes_of_the_workspace(alice, acme, charlie):
    subscribe(acme, "standard")
    fund(acme, 100)
    takes = [_succeed(_take(acme, alice, seed=s)) for s in (1, 2, 3)]
    client = client_for(alice, acme)
    ok = client.get("/studio/compare/", {"take": [str(t.pk) for t in takes]})
    assert ok.status_code == 200
    assert ok.content.decode().count('data-testid="compare-video"') == 3
    assert client.get("/studio/compare/", {"take": [str(takes[0].pk)]}).status_code == 400
    outsider = client_for(charlie).get("/studio/compare/", {"take": [str(t.pk) for t in takes]})
    assert outsider.status_code == 404


def test_project_and_shot_show_cost_so_far(alice, acme, charlie):
    subscribe(acme, "standard")
    fund(acme, 100)
    first = _succeed(_take(acme, alice, seed=1), charged=2)
    failed = _take(acme, alice, seed=2)
    fail_take(failed.pk, "boom")
    project = first.shot.project
    page = client_for(alice, acme).get(f"/projects/{project.pk}/").content.decode()
    assert "Cost so far: 2 credits" in page
    listing = client_for(alice, acme).get("/projects/").content.decode()
    assert "2 credits" in listing
    assert client_for(charlie).get(f"/projects/{project.pk}/").status_code == 404
    assert client_for(charlie).get("/studio/takes/", {"project": project.pk}).status_code == 404
