"""Each model's size rule: submission picks the nearest size the model accepts, the take
and the quote show it, and the admin refuses a native size that breaks the rule."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from conftest import client_for
from generation.models import Take, VideoModel
from generation.submission import frame_size

from .helpers import fund, setup_catalog, subscribe

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr("workers.tasks.dispatch_takes.delay", lambda *a, **k: None)


def model(**fields) -> VideoModel:
    return VideoModel(slug="m", name="M", family="F", **fields)


WAN = {"size_multiple": 16, "native_sizes": ["832x480", "480x832"]}


@pytest.mark.parametrize(
    ("fields", "resolution", "aspect", "size"),
    [
        # No rule beyond H.264's even sides: the shape the creator asked for.
        ({}, "480p", "16:9", (854, 480)),
        # Wan 2.1: its native 832x480 (and the portrait one), multiples of 16 otherwise.
        (WAN, "480p", "16:9", (832, 480)),
        (WAN, "480p", "9:16", (480, 832)),
        (WAN, "480p", "1:1", (480, 480)),
        (WAN, "720p", "16:9", (1280, 720)),
        # LTX-Video: multiples of 32, ties rounding down (720 -> 704, not 736).
        ({"size_multiple": 32}, "480p", "16:9", (864, 480)),
        ({"size_multiple": 32}, "720p", "16:9", (1280, 704)),
        ({"size_multiple": 32}, "720p", "9:16", (704, 1280)),
        ({"size_multiple": 32}, "1080p", "1:1", (1088, 1088)),
    ],
)
def test_frame_size_is_the_nearest_size_the_model_accepts(fields, resolution, aspect, size):
    video_model = model(**fields)
    width, height = frame_size(resolution, aspect, video_model)
    assert (width, height) == size
    assert width % video_model.size_multiple == 0 and height % video_model.size_multiple == 0


def test_submitted_take_gets_the_models_size_and_the_quote_shows_it(alice, acme, charlie):
    setup_catalog()
    subscribe(acme, "pro")  # 720p needs a paid plan
    fund(acme, 1000)
    client = client_for(alice, acme)
    query = "model=ltx-video-2b&prompt=a+kite&resolution=720p&duration=2&aspect_ratio=16:9"
    quote = client.get(f"/studio/quote/?{query}")
    assert 'data-testid="quote-size">1280×704<' in quote.content.decode()
    response = client.post(
        "/api/v1/takes/",
        {
            "model": "ltx-video-2b",
            "prompt": "a kite",
            "resolution": "720p",
            "aspect_ratio": "16:9",
            "duration": 2,
            "idempotency_key": "size-1",
        },
    )
    assert response.status_code == 201, response.json()
    take = Take.objects.get(pk=response.json()["takes"][0]["id"])
    assert (take.width, take.height) == (1280, 704)
    # Billed as 720p seconds: the size changed, the tier and the price did not.
    assert take.quote["resolution"] == "720p"
    grid = client.get("/studio/takes/").content.decode()
    assert 'data-testid="take-size">1280×704<' in grid


@pytest.mark.parametrize(
    ("native_sizes", "message"),
    [
        ("832x480", "WIDTHxHEIGHT"),
        (["832 by 480"], "WIDTHxHEIGHT"),
        (["840x480"], "840x480: not multiples of 16"),
    ],
)
def test_admin_refuses_native_sizes_that_break_the_rule(native_sizes, message):
    video_model = model(size_multiple=16, native_sizes=native_sizes)
    with pytest.raises(ValidationError) as caught:
        video_model.clean()
    assert message in str(caught.value)
