"""The diffusers node through the real Cog server, one tiny node per supported model.

Each node runs the real diffusers pipelines (WanPipeline, WanImageToVideoPipeline,
LTXPipeline, LTXImageToVideoPipeline) with small random weights built in memory
(RETAKE_NODE_TINY=1). The platform side is played by `catcher`, which records webhooks
and uploads (outputs and live previews) like the ingest endpoint.
"""

from __future__ import annotations

import base64
import io
import re
import time
import uuid
from collections.abc import Iterator

import av
import httpx
import numpy as np
import pytest
from PIL import Image

from .conftest import Catcher, stop_node
from .diffusers_node import MODELS, start_diffusers_nodes

# Starts diffusers nodes (processes outside pytest): --clock can't move their clocks.
pytestmark = pytest.mark.live

SIZE_RULE = {"wan2.1-t2v-1.3b": 16, "wan2.1-i2v-14b": 16, "wan2.2-ti2v-5b": 32, "ltx-video": 32}
FIRST_FRAME_ONLY = {"wan2.1-i2v-14b"}  # needs an image: it is an image-to-video model
TAKES_IMAGES = {"wan2.1-i2v-14b", "wan2.2-ti2v-5b", "ltx-video"}
FPS = 8


@pytest.fixture(scope="module")
def nodes(catcher: Catcher) -> Iterator[dict[str, str]]:
    started = start_diffusers_nodes(MODELS, upload_url=f"{catcher.url}/ingest/")
    yield {model: base_url for model, (base_url, _) in started.items()}
    for _, proc in started.values():
        stop_node(proc)


def png_data_url(color: tuple[int, int, int], size=(64, 64)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def inputs(model: str, **extra) -> dict:
    multiple = SIZE_RULE[model]
    base = {
        "prompt": "a red kite over the sea at dawn",
        "negative_prompt": "blurry",
        "seed": 7,
        "width": multiple * 3,
        "height": multiple * 2,
        "fps": FPS,
        "seconds": 1.5,
        "steps": 4,
    }
    if model in FIRST_FRAME_ONLY:
        base["image"] = png_data_url((200, 40, 40))
    return {**base, **extra}


def run_sync(base_url: str, body: dict) -> dict:
    """A blocking prediction; the output comes back as a data URL."""
    response = httpx.put(
        f"{base_url}/predictions/{uuid.uuid4().hex}", json={"input": body}, timeout=120
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "succeeded", result.get("error")
    return result


def video_bytes(result: dict) -> bytes:
    header, _, data = result["output"].partition(",")
    assert header == "data:video/mp4;base64"
    return base64.b64decode(data)


def decode(data: bytes) -> tuple[str, str, list[np.ndarray], float]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
        return stream.codec_context.name, stream.codec_context.pix_fmt, frames, duration


def progress_of(webhooks: list[dict]) -> list[int]:
    found = re.findall(r"progress: (\d+)%", webhooks[-1].get("logs") or "")
    return [int(p) for p in found]


@pytest.mark.parametrize("model", MODELS)
def test_node_makes_h264_of_the_asked_size_and_length_with_progress_and_previews(
    model, nodes, catcher
):
    take_id = uuid.uuid4().hex
    body = inputs(model)
    response = httpx.put(
        f"{nodes[model]}/predictions/{take_id}",
        json={
            "input": body,
            "webhook": f"{catcher.url}/hook",
            "webhook_events_filter": ["logs", "completed"],
        },
        headers={"Prefer": "respond-async"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    final = catcher.completed(take_id, timeout=120)
    assert final["status"] == "succeeded", final.get("error")
    # Progress: one line per denoising step, in order, ending at 100.
    progress = progress_of(catcher.webhooks(take_id))
    assert progress == sorted(progress) and progress[-1] == 100
    assert len([p for p in progress if 0 < p <= 90]) == body["steps"]
    # The video went to the upload URL; previews went there before it.
    uploads = catcher.uploads(take_id)
    videos = [u for u in uploads if u.path.endswith(f"{take_id}.mp4")]
    previews = [u for u in uploads if u.path.endswith(f"{take_id}.preview.webp")]
    assert len(videos) == 1 and previews
    assert uploads.index(previews[0]) < uploads.index(videos[0])
    for preview in previews:
        assert preview.body[:4] == b"RIFF" and preview.body[8:12] == b"WEBP"
        assert len(preview.body) < 32 * 1024
        with Image.open(io.BytesIO(preview.body)) as img:
            assert getattr(img, "n_frames", 1) >= 2  # a few frames of the clip
    codec, pix_fmt, frames, duration = decode(videos[0].body)
    assert (codec, pix_fmt) == ("h264", "yuv420p")
    assert frames[0].shape == (body["height"], body["width"], 3)
    # 1.5 s at 8 fps is 12 frames; the model made 13 (4k+1, or 17 for LTX's 8k+1), trimmed.
    assert len(frames) == 12
    assert duration == pytest.approx(1.5, abs=0.01)


@pytest.mark.parametrize("model", MODELS)
def test_same_seed_gives_identical_frames_and_another_seed_does_not(model, nodes):
    first = video_bytes(run_sync(nodes[model], inputs(model, seed=11)))
    again = video_bytes(run_sync(nodes[model], inputs(model, seed=11)))
    other = video_bytes(run_sync(nodes[model], inputs(model, seed=12)))
    frames = decode(first)[2]
    assert all(np.array_equal(a, b) for a, b in zip(frames, decode(again)[2], strict=True))
    assert first == again
    assert not all(np.array_equal(a, b) for a, b in zip(frames, decode(other)[2], strict=True))


@pytest.mark.parametrize("model", sorted(TAKES_IMAGES))
def test_image_to_video_uses_its_first_frame(model, nodes):
    red = decode(
        video_bytes(run_sync(nodes[model], inputs(model, image=png_data_url((220, 30, 30)))))
    )[2]
    blue = decode(
        video_bytes(run_sync(nodes[model], inputs(model, image=png_data_url((30, 30, 220)))))
    )[2]
    assert not np.array_equal(red[0], blue[0])
    if model not in FIRST_FRAME_ONLY:
        text_only = decode(video_bytes(run_sync(nodes[model], inputs(model))))[2]
        assert not np.array_equal(red[0], text_only[0])


def test_first_and_last_frame_uses_both_images(nodes):
    model = "wan2.1-i2v-14b"
    first = png_data_url((220, 30, 30))
    ends_green = inputs(model, image=first, last_frame=png_data_url((30, 220, 30)))
    ends_blue = inputs(model, image=first, last_frame=png_data_url((30, 30, 220)))
    green = decode(video_bytes(run_sync(nodes[model], ends_green)))[2]
    blue = decode(video_bytes(run_sync(nodes[model], ends_blue)))[2]
    no_last = decode(video_bytes(run_sync(nodes[model], inputs(model, image=first))))[2]
    assert not np.array_equal(green[-1], blue[-1])
    assert not np.array_equal(green[-1], no_last[-1])


def test_a_text_only_take_on_an_image_model_fails_with_a_reason(nodes):
    body = inputs("wan2.1-i2v-14b")
    del body["image"]
    response = httpx.put(
        f"{nodes['wan2.1-i2v-14b']}/predictions/{uuid.uuid4().hex}",
        json={"input": body},
        timeout=60,
    )
    assert response.json()["status"] == "failed"
    assert "cannot generate from text only" in response.json()["error"]


@pytest.mark.parametrize("model", MODELS)
def test_a_size_the_model_cannot_make_is_a_422_naming_the_rule(model, nodes):
    multiple = SIZE_RULE[model]
    response = httpx.put(
        f"{nodes[model]}/predictions/{uuid.uuid4().hex}",
        json={"input": inputs(model, width=854, height=480)},
        timeout=10,
    )
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"][-1] == "width"
    assert f"multiple of {multiple}" in problem["msg"]


@pytest.mark.parametrize("model", ["wan2.1-t2v-1.3b", "ltx-video"])
def test_cancel_stops_mid_denoise_and_frees_the_slot(model, nodes, catcher):
    take_id = uuid.uuid4().hex
    body = inputs(model, steps=200, seconds=3)
    httpx.put(
        f"{nodes[model]}/predictions/{take_id}",
        json={
            "input": body,
            "webhook": f"{catcher.url}/hook",
            "webhook_events_filter": ["logs", "completed"],
        },
        headers={"Prefer": "respond-async"},
        timeout=10,
    ).raise_for_status()
    catcher.wait_for(lambda: any(p > 0 for p in progress_of(catcher.webhooks(take_id) or [{}])), 60)
    cancelled_at = time.monotonic()
    assert httpx.post(f"{nodes[model]}/predictions/{take_id}/cancel", timeout=10).status_code == 200
    final = catcher.completed(take_id, timeout=60)
    assert final["status"] == "canceled"
    assert time.monotonic() - cancelled_at < 15
    assert progress_of([final])[-1] < 90  # stopped while denoising
    assert not [u for u in catcher.uploads(take_id) if u.path.endswith(".mp4")]
    # The slot is free again: the next take runs.
    run_sync(nodes[model], inputs(model))
