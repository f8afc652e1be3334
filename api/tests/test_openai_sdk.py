"""The official `openai` SDK, unmodified, against the live server with a real Celery worker
and real Cog reference nodes: create, poll, download and probe the bytes, list, delete,
image-to-video, and the SDK's own exceptions for bad input."""

from __future__ import annotations

import io
import time

import httpx
import openai
import pytest
from PIL import Image

from accounts.api_keys import create_api_key
from generation.models import VideoModel
from generation.submission import frame_size
from generation.tests.helpers import fund, png_bytes, subscribe
from workers import media

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


@pytest.fixture(autouse=True)
def _media_in_tmp(shared_media):
    """Media in one folder shared with the worker subprocesses."""


@pytest.fixture
def sdk(alice, acme, catalog, live_server, workers) -> openai.OpenAI:
    subscribe(acme, "pro")
    fund(acme, 500)
    _key, raw = create_api_key(acme, name="sdk", acting_user=alice)
    workers.start()
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=raw, max_retries=0)


def wait_done(sdk: openai.OpenAI, video_id: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        video = sdk.videos.retrieve(video_id)
        if video.status in ("completed", "failed"):
            return video
        time.sleep(0.3)
    raise AssertionError(f"{video_id} still {video.status}")


def size_of(slug: str, resolution: str, aspect: str) -> tuple[int, int]:
    """The size a take of this model really gets (the model's nearest accepted size)."""
    return frame_size(resolution, aspect, VideoModel.objects.get(slug=slug))


def test_the_openai_sdk_creates_polls_downloads_lists_and_deletes(sdk, live_server, acme):
    width, height = size_of("wan2.1-t2v-1.3b", "480p", "16:9")
    models = [m.id for m in sdk.models.list()]
    assert "wan2.1-t2v-1.3b" in models

    video = sdk.videos.create(
        model="wan2.1-t2v-1.3b",
        prompt="a paper boat on a rainy street",
        seconds="2",
        size=f"{width}x{height}",
    )
    assert video.object == "video" and video.status == "queued" and video.id.startswith("video_")
    assert video.model_extra["price_credits"] > 0 and video.model_extra["charged_credits"] == 0

    done = wait_done(sdk, video.id)
    assert done.status == "completed", done.error
    assert done.progress == 100 and done.seconds == "2" and done.size == f"{width}x{height}"
    assert 0 < done.model_extra["charged_credits"] <= done.model_extra["price_credits"]

    content = sdk.videos.download_content(video.id)
    info = media.probe(io.BytesIO(content.read()))
    assert info.codec == "h264" and (info.width, info.height) == (width, height)
    assert abs(info.duration_seconds - 2) < 0.1

    thumbnail = sdk.videos.download_content(video.id, variant="thumbnail").read()
    assert Image.open(io.BytesIO(thumbnail)).size == (width, height)
    sheet = Image.open(
        io.BytesIO(sdk.videos.download_content(video.id, variant="spritesheet").read())
    )
    assert sheet.format == "JPEG" and sheet.size[0] == 5 * 192

    ranged = httpx.get(
        f"{live_server.url}/v1/videos/{video.id}/content",
        headers={"Authorization": f"Bearer {sdk.api_key}", "Range": "bytes=0-99"},
    )
    assert ranged.status_code == 206 and len(ranged.content) == 100
    assert ranged.headers["Content-Range"].startswith("bytes 0-99/")

    assert video.id in [v.id for v in sdk.videos.list(limit=10)]
    deleted = sdk.videos.delete(video.id)
    assert deleted.deleted is True and deleted.object == "video.deleted"
    with pytest.raises(openai.NotFoundError):
        sdk.videos.retrieve(video.id)
    assert video.id not in [v.id for v in sdk.videos.list()]


def test_input_reference_makes_an_image_to_video_take(sdk):
    width, height = size_of("wan2.1-i2v-14b", "480p", "1:1")
    video = sdk.videos.create(
        model="wan2.1-i2v-14b",
        prompt="the red square starts to spin",
        seconds=1,
        size=f"{width}x{height}",
        input_reference=("ref.png", png_bytes(64, 64), "image/png"),
    )
    done = wait_done(sdk, video.id)
    assert done.status == "completed", done.error
    info = media.probe(io.BytesIO(sdk.videos.download_content(video.id).read()))
    assert (info.width, info.height) == (width, height) and info.codec == "h264"


def test_bad_input_raises_the_sdks_bad_request_error(sdk):
    with pytest.raises(openai.BadRequestError) as unknown:
        sdk.videos.create(model="sora-2", prompt="x")
    assert unknown.value.param == "model" if hasattr(unknown.value, "param") else True
    assert "wan2.1-t2v-1.3b" in unknown.value.message
    assert unknown.value.body["type"] == "invalid_request_error"

    with pytest.raises(openai.BadRequestError) as bad_size:
        sdk.videos.create(model="wan2.1-t2v-1.3b", prompt="x", size="1280x720x")
    width, height = size_of("wan2.1-t2v-1.3b", "480p", "16:9")
    assert f"{width}x{height}" in bad_size.value.message and bad_size.value.body["param"] == "size"

    with pytest.raises(openai.BadRequestError) as bad_seconds:
        sdk.videos.create(model="wan2.1-t2v-1.3b", prompt="x", seconds="12")
    assert "1, 2, 3, 5" in bad_seconds.value.message

    wrong_key = openai.OpenAI(base_url=str(sdk.base_url), api_key="rtk_000000000000_nope")
    with pytest.raises(openai.AuthenticationError):
        wrong_key.videos.list()
