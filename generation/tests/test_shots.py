"""Shots are first-class: drawing inside a shot keeps its prompt, references and settings;
Draw again; prompt versions; projects and shots created, renamed, reordered, archived;
finalize shows its quote; readable download names. Server side (Django test client)."""

from __future__ import annotations

import re
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import Membership
from conftest import client_for
from generation.models import Project, Shot, Take, TakeStatus
from generation.tests.helpers import fund, png_bytes, setup_catalog, studio_form, subscribe, wallet

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _catalog():
    setup_catalog()


@pytest.fixture(autouse=True)
def _no_broker():
    with mock.patch("workers.tasks.dispatch_takes.delay"):
        yield


def _form(**overrides) -> dict:
    return studio_form(**{"aspect_ratio": "9:16", **overrides})


def _shot(workspace) -> Shot:
    return Shot.objects.dangerously_unscoped().get(project__workspace=workspace)


def test_the_form_keeps_the_prompt_and_settings_after_generate(alice, acme):
    fund(acme, 100)
    client = client_for(alice, acme)
    response = client.post("/studio/", _form())
    shot = _shot(acme)
    assert response.status_code == 302 and response["Location"] == f"/studio/?shot={shot.pk}#takes"
    page = client.get(f"/studio/?shot={shot.pk}").content.decode()
    assert "a paper boat drifting down a rainy street</textarea>" in page
    assert '<option value="9:16" selected>' in page
    assert re.search(r'<option value="2"\s+selected>2 s</option>', page)
    assert 'data-testid="draw-again"' in page
    assert shot.title == "Shot 1"


def test_draw_again_uses_the_shots_settings_with_new_seeds_and_no_new_shot(alice, acme):
    fund(acme, 100)
    client = client_for(alice, acme)
    client.post("/studio/", _form(count="1"))
    shot = _shot(acme)
    for key in ("again-1", "again-2", "again-2"):  # the repeated key is a double click
        response = client.post(f"/shots/{shot.pk}/draw/", {"idempotency_key": key})
        assert response.status_code == 302
    takes = list(Take.objects.filter(shot=shot))
    assert len(takes) == 3
    assert {t.aspect_ratio for t in takes} == {"9:16"} and {t.duration_seconds for t in takes} == {
        2
    }
    assert len({t.seed for t in takes}) == 3
    assert Shot.objects.dangerously_unscoped().filter(project__workspace=acme).count() == 1


def test_editing_the_prompt_starts_a_new_version_and_keeps_old_takes_grouped(alice, acme):
    fund(acme, 100)
    client = client_for(alice, acme)
    client.post("/studio/", _form(count="1"))
    shot = _shot(acme)
    client.post("/studio/", _form(shot=shot.pk, prompt="a paper boat at sea", idempotency_key="2"))
    shot.refresh_from_db()
    assert shot.prompt_version == 2 and shot.prompt == "a paper boat at sea"
    takes = {t.prompt_version: t for t in Take.objects.filter(shot=shot)}
    assert takes[1].prompt == "a paper boat drifting down a rainy street"
    assert takes[2].prompt == "a paper boat at sea"
    page = client.get(f"/studio/?shot={shot.pk}").content.decode()
    assert page.count('data-testid="prompt-group"') == 2


def test_reuse_draws_into_the_same_shot_with_the_takes_reference_image(alice, acme):
    subscribe(acme, "standard")
    fund(acme, 200)
    client = client_for(alice, acme)
    image = SimpleUploadedFile("ref.png", png_bytes(90, 160), content_type="image/png")
    client.post(
        "/studio/", _form(model="wan2.1-i2v-14b", resolution="480p", count="1", image=image)
    )
    shot = _shot(acme)
    [first] = Take.objects.filter(shot=shot)
    assert first.reference_image
    page = client.get(f"/studio/?shot={shot.pk}&from={first.pk}&seed=1").content.decode()
    assert 'data-testid="kept-image"' in page and f'value="{first.seed}"' in page
    response = client.post(
        "/studio/",
        _form(
            model="wan2.1-i2v-14b",
            count="1",
            shot=shot.pk,
            from_take=first.pk,
            seed_mode="fixed",
            seed=first.seed,
            idempotency_key="reuse",
        ),
    )
    assert response.status_code == 302
    second = Take.objects.filter(shot=shot).exclude(pk=first.pk).get()
    assert second.reference_image == first.reference_image and second.seed == first.seed
    assert Shot.objects.dangerously_unscoped().filter(project__workspace=acme).count() == 1
    assert 'data-testid="input-frames"' in client.get(f"/takes/{second.pk}/").content.decode()


def test_projects_and_shots_are_created_renamed_reordered_and_archived(alice, acme, charlie):
    client = client_for(alice, acme)
    response = client.post("/projects/", {"name": "Night market"})
    project = Project.objects.dangerously_unscoped().get(workspace=acme, name="Night market")
    assert response["Location"] == f"/projects/{project.pk}/"
    # Bad input: a clear error, nothing changes.
    client.post("/projects/", {"name": "   "})
    assert Project.objects.dangerously_unscoped().filter(workspace=acme).count() == 1
    # The name field wraps a long name; what it sends is kept on one line.
    client.post(f"/projects/{project.pk}/edit/", {"name": "Night market,\r\n  ep. 1 "})
    project.refresh_from_db()
    assert project.name == "Night market, ep. 1"
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert '<textarea id="project-name" name="name" rows="1"' in page
    for title in ("Stalls", "Lanterns", ""):
        response = client.post(f"/projects/{project.pk}/edit/", {"new_shot": "1", "title": title})
        assert response.status_code == 302 and "/studio/?shot=" in response["Location"]
    shots = list(project.shots.order_by("position"))
    assert [str(s) for s in shots] == ["Stalls", "Lanterns", "Shot 3"]
    new_order = [shots[2].pk, shots[0].pk, shots[1].pk]
    response = client.post(
        f"/projects/{project.pk}/edit/",
        {"order": ",".join(map(str, new_order))},
        HTTP_ACCEPT="application/json",
    )
    assert response.json() == {"ok": True}
    assert list(project.shots.order_by("position").values_list("pk", flat=True)) == new_order
    # An order that leaves a shot out is refused and changes nothing.
    response = client.post(
        f"/projects/{project.pk}/edit/", {"order": str(shots[0].pk)}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 400
    assert list(project.shots.order_by("position").values_list("pk", flat=True)) == new_order
    client.post(f"/shots/{shots[1].pk}/edit/", {"move": "up"})
    assert list(project.shots.order_by("position").values_list("pk", flat=True)) == [
        shots[2].pk,
        shots[1].pk,
        shots[0].pk,
    ]
    client.post(f"/shots/{shots[1].pk}/edit/", {"title": "Red lanterns"})
    client.post(f"/shots/{shots[2].pk}/edit/", {"archived": "1"})
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert "Red lanterns" in page and page.count('data-testid="shot-tile"') == 2
    client.post(f"/projects/{project.pk}/edit/", {"archived": "1"})
    assert "Night market" not in client.get("/projects/").content.decode()
    assert "Night market" in client.get("/projects/?archived=1").content.decode()
    # charlie sees none of it.
    outsider = client_for(charlie)
    assert outsider.post(f"/projects/{project.pk}/edit/", {"name": "x"}).status_code == 404
    assert outsider.post(f"/shots/{shots[0].pk}/edit/", {"title": "x"}).status_code == 404


def _succeed(take: Take) -> Take:
    Take.objects.filter(pk=take.pk).update(
        status=TakeStatus.SUCCEEDED,
        output_original=f"takes/{take.pk}/original.mp4",
        output_poster=f"takes/{take.pk}/poster.jpg",
        charged=take.quote["total"],
    )
    take.refresh_from_db()
    return take


def test_finalize_shows_its_quote_and_is_offered_only_when_it_raises_resolution(alice, acme):
    subscribe(acme, "standard")
    fund(acme, 200)
    client = client_for(alice, acme)
    client.post("/studio/", _form(mode="draft", resolution="720p", count="1"))
    draft = _succeed(Take.objects.get(workspace=acme))
    assert draft.resolution == "480p"
    page = client.get(f"/takes/{draft.pk}/").content.decode()
    assert f"/takes/{draft.pk}/finalize/" in page
    confirm = client.get(f"/takes/{draft.pk}/finalize/")
    body = confirm.content.decode()
    assert confirm.status_code == 200
    assert 'data-testid="finalize-confirm"' in body and "at 720p" in body
    assert re.search(r"data-testid=\"quote-size\">(720×\d+|\d+×720)<", body)
    before = wallet(acme).held
    assert Take.objects.filter(workspace=acme).count() == 1  # the GET changed nothing
    response = client.post(f"/takes/{draft.pk}/finalize/")
    final = Take.objects.get(draft_of=draft)
    assert response["Location"] == f"/takes/{final.pk}/"
    assert final.resolution == "720p" and final.seed == draft.seed
    assert wallet(acme).held > before


def test_finalize_is_not_offered_on_a_plan_that_renders_no_higher(alice, acme):
    fund(acme, 200)  # Free plan: 480p at most
    client = client_for(alice, acme)
    client.post("/studio/", _form(mode="draft", count="1"))
    draft = _succeed(Take.objects.get(workspace=acme))
    assert f"/takes/{draft.pk}/finalize/" not in client.get(f"/takes/{draft.pk}/").content.decode()
    assert client.get(f"/takes/{draft.pk}/finalize/").status_code == 400
    client.post(f"/takes/{draft.pk}/finalize/")
    assert Take.objects.filter(workspace=acme).count() == 1


def test_draft_quote_names_the_resolution_it_bills_and_why(alice, acme):
    subscribe(acme, "standard")
    client = client_for(alice, acme)
    body = client.get("/studio/quote/", _form(mode="draft", resolution="720p")).content.decode()
    assert "at 480p" in body and "drafts render at 480p, not 720p" in body


def test_quote_warns_a_member_whose_cap_it_would_cross(alice, acme, bob):
    fund(acme, 500)
    Membership.objects.filter(workspace=acme, user=bob).update(monthly_spend_cap=3)
    body = client_for(bob, acme).get("/studio/quote/", _form()).content.decode()
    assert 'data-testid="quote-cap"' in body and "alice@example.com" in body
    body = client_for(alice, acme).get("/studio/quote/", _form()).content.decode()
    assert 'data-testid="quote-cap"' not in body


def test_download_has_a_readable_name(alice, acme):
    fund(acme, 100)
    client = client_for(alice, acme)
    client.post("/projects/", {"name": "Paper boats"})
    project = Project.objects.dangerously_unscoped().get(workspace=acme, name="Paper boats")
    client.post("/studio/", _form(project=project.pk, count="1"))
    take = _succeed(Take.objects.get(workspace=acme))
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    default_storage.save(take.output_original, ContentFile(b"\x00\x00\x00\x18ftypmp42"))
    signed = client.get(f"/takes/{take.pk}/download/")["Location"]
    response = client.get(signed)
    assert response.status_code == 200
    expected = f"paper-boats-shot-1-take1-{take.seed}.mp4"
    assert f'attachment; filename="{expected}"' == response["Content-Disposition"]


def test_a_take_link_from_another_of_my_workspaces_offers_to_switch(alice, acme, charlie):
    fund(acme, 100)
    client_for(alice, acme).post("/studio/", _form())
    take = Take.objects.get(workspace=acme)
    personal = client_for(alice)  # alice, working in her personal workspace
    response = personal.get(f"/takes/{take.pk}/")
    assert response.status_code == 409
    body = response.content.decode()
    assert 'data-testid="switch-offer"' in body and "Acme" in body
    switched = personal.post(f"/workspaces/{acme.pk}/switch/", {"next": f"/takes/{take.pk}/"})
    assert switched["Location"] == f"/takes/{take.pk}/"
    assert personal.get(f"/takes/{take.pk}/").status_code == 200
    assert client_for(charlie).get(f"/takes/{take.pk}/").status_code == 404
