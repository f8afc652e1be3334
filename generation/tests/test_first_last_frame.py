"""First and last frame: a model that can end on a given frame gets both images; other
models, or a last frame without a first, are refused with nothing written."""

from __future__ import annotations

import base64
from unittest import mock

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from conftest import client_for
from generation.models import Shot, Take, VideoModel
from generation.submission import SubmissionError, TakeSpec, submit_takes
from generation.tests.helpers import fund, png_bytes, setup_catalog, wallet
from workers.backends.cog import prediction_input
from workers.dispatch import request_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _catalog():
    setup_catalog()


@pytest.fixture(autouse=True)
def _no_broker():
    with mock.patch("workers.tasks.dispatch_takes.delay"):
        yield


def _png(name: str, color) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, png_bytes(64, 48, color), "image/png")


def _spec(model: str) -> TakeSpec:
    return TakeSpec(model=model, prompt="a door opens", resolution="480p", duration=1)


def test_first_and_last_frame_reach_the_node_as_data_urls(alice, acme):
    fund(acme, 100)
    [take] = submit_takes(
        acme,
        alice,
        _spec("wan2.1-i2v-14b"),
        idempotency_key="flf",
        image=_png("first.png", (250, 0, 0)),
        last_frame=_png("last.png", (0, 0, 250)),
    )
    shot = take.shot
    assert default_storage.exists(shot.reference_image)
    assert default_storage.exists(shot.last_frame_image)
    data = prediction_input(request_for(take))
    assert data["image"].startswith("data:image/png;base64,")
    last = base64.b64decode(data["last_frame"].split(",", 1)[1])
    assert last == png_bytes(64, 48, (0, 0, 250))


@pytest.mark.parametrize(
    ("model", "with_first", "message"),
    [
        ("hunyuanvideo-i2v", True, "cannot end on a given last frame"),
        ("wan2.1-i2v-14b", False, "needs a reference image"),
    ],
)
def test_a_last_frame_the_model_cannot_use_is_refused(
    alice, acme, charlie, model, with_first, message
):
    fund(acme, 100)
    with pytest.raises(SubmissionError) as caught:
        submit_takes(
            acme,
            alice,
            _spec(model),
            idempotency_key=f"bad-{model}",
            image=_png("first.png", (1, 2, 3)) if with_first else None,
            last_frame=_png("last.png", (3, 2, 1)),
        )
    assert message in caught.value.message
    assert not Take.objects.filter(workspace=acme).exists()
    assert not Shot.objects.dangerously_unscoped().exists()
    assert wallet(acme).held == 0


def test_a_last_frame_without_a_first_frame_is_refused(alice, acme):
    # A model that also does text-to-video: the missing first frame is the only fault.
    VideoModel.objects.filter(slug="hunyuanvideo-i2v").update(supports_first_last_frame=True)
    fund(acme, 100)
    with pytest.raises(SubmissionError) as caught:
        submit_takes(
            acme,
            alice,
            _spec("hunyuanvideo-i2v"),
            idempotency_key="no-first",
            last_frame=_png("last.png", (3, 2, 1)),
        )
    assert caught.value.field == "last_frame"
    assert "needs a first frame" in caught.value.message


def test_the_studio_form_offers_a_last_frame_only_where_the_model_can(alice, acme, charlie):
    client = client_for(alice, acme)
    flf = client.get("/studio/options/", {"model": "wan2.1-i2v-14b"}).content.decode()
    assert 'name="last_frame"' in flf
    plain = client.get("/studio/options/", {"model": "hunyuanvideo-i2v"}).content.decode()
    assert 'name="last_frame"' not in plain
    fund(acme, 100)
    quote = client.get(
        "/studio/quote/",
        {
            "model": "hunyuanvideo-i2v",
            "prompt": "x",
            "resolution": "480p",
            "duration": "1",
            "has_image": "1",
            "has_last_frame": "1",
        },
    ).content.decode()
    assert "cannot end on a given last frame" in quote
    response = client.post(
        "/studio/",
        {
            "model": "wan2.1-i2v-14b",
            "prompt": "a door opens",
            "resolution": "480p",
            "duration": "1",
            "count": "1",
            "mode": "standard",
            "idempotency_key": "form-flf",
            "image": _png("first.png", (250, 0, 0)),
            "last_frame": _png("last.png", (0, 0, 250)),
        },
    )
    assert response.status_code == 302
    assert Take.objects.get(workspace=acme).shot.last_frame_image
    assert not Take.objects.filter(workspace=charlie.memberships.get().workspace).exists()
