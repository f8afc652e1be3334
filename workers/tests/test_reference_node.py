"""The reference GPU node, driven over the real Cog HTTP protocol."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import uuid

import av
import httpx
import numpy as np
from PIL import Image

from workers.tests.conftest import NODE_DIR, start_node, stop_node

SMALL = {"width": 160, "height": 96, "fps": 12, "seconds": 1.0}


def predict_sync(base_url: str, **inputs) -> dict:
    response = httpx.put(
        f"{base_url}/predictions/{uuid.uuid4().hex}", json={"input": inputs}, timeout=60
    )
    assert response.status_code == 200, response.text
    return response.json()


def video_bytes(output: str) -> bytes:
    header, _, data = output.partition(",")
    assert header == "data:video/mp4;base64"
    return base64.b64decode(data)


def decode(data: bytes) -> tuple[av.video.stream.VideoStream, list[np.ndarray]]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return stream, frames


def test_sync_prediction_renders_h264_of_requested_size_fps_and_duration(idle_node):
    result = predict_sync(
        idle_node, prompt="a red kite over the sea", width=192, height=108, fps=15, seconds=2
    )

    assert result["status"] == "succeeded"
    with av.open(io.BytesIO(video_bytes(result["output"]))) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (192, 108)
        assert stream.average_rate == 15
        assert float(stream.duration * stream.time_base) == 2.0
        assert sum(1 for _ in container.decode(stream)) == 30
    assert "progress: 100%" in result["logs"]


def test_same_seed_and_prompt_give_identical_frames_and_bytes_across_runs_and_processes(
    idle_node,
):
    inputs = {"prompt": "lanterns", "seed": 7, **SMALL}
    first = video_bytes(predict_sync(idle_node, **inputs)["output"])
    again = video_bytes(predict_sync(idle_node, **inputs)["output"])
    other_url, other_node = start_node()  # a second node process: nothing shared in memory
    try:
        elsewhere = video_bytes(predict_sync(other_url, **inputs)["output"])
    finally:
        stop_node(other_node)

    _, frames = decode(first)
    for render in (again, elsewhere):
        _, rendered = decode(render)
        assert len(rendered) == len(frames) == 12
        assert all(np.array_equal(a, b) for a, b in zip(frames, rendered, strict=True))
    assert first == again == elsewhere


def test_different_seed_or_prompt_gives_visibly_different_frames(idle_node):
    _, base = decode(
        video_bytes(predict_sync(idle_node, prompt="lanterns", seed=7, **SMALL)["output"])
    )
    _, reseeded = decode(
        video_bytes(predict_sync(idle_node, prompt="lanterns", seed=8, **SMALL)["output"])
    )
    _, reprompted = decode(
        video_bytes(predict_sync(idle_node, prompt="a desert road", seed=7, **SMALL)["output"])
    )

    def distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
        return float(np.mean([np.abs(x.astype(int) - y).mean() for x, y in zip(a, b, strict=True)]))

    assert distance(base, reseeded) > 20
    assert distance(base, reprompted) > 20
    # and the video moves: its last frame differs from its first
    assert np.abs(base[0].astype(int) - base[-1]).mean() > 3


def _png_data_url(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _reference_picture(width: int, height: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    picture = np.zeros((height, width, 3), dtype=np.uint8)
    picture[..., 0] = (xs * 255 // width).astype(np.uint8)
    picture[..., 1] = (ys * 255 // height).astype(np.uint8)
    picture[..., 2] = 90
    return picture


def test_image_to_video_starts_on_the_reference_image(idle_node):
    picture = _reference_picture(160, 96)
    result = predict_sync(idle_node, prompt="pan", image=_png_data_url(picture), **SMALL)

    _, frames = decode(video_bytes(result["output"]))
    assert np.abs(frames[0].astype(int) - picture).mean() < 6
    assert np.abs(frames[-1].astype(int) - picture).mean() > 10


def test_first_and_last_frame_are_both_honoured(idle_node):
    start = _reference_picture(160, 96)
    end = 255 - start
    result = predict_sync(
        idle_node,
        prompt="morph",
        image=_png_data_url(start),
        last_frame=_png_data_url(end),
        **SMALL,
    )

    _, frames = decode(video_bytes(result["output"]))
    assert np.abs(frames[0].astype(int) - start).mean() < 6
    assert np.abs(frames[-1].astype(int) - end).mean() < 6


def test_bad_input_is_rejected_with_422(idle_node):
    wrong_type = httpx.put(
        f"{idle_node}/predictions/{uuid.uuid4().hex}",
        json={"input": {"prompt": "x", "width": "wide"}},
    )
    missing_prompt = httpx.put(
        f"{idle_node}/predictions/{uuid.uuid4().hex}", json={"input": {"seconds": 1}}
    )
    too_long = httpx.put(
        f"{idle_node}/predictions/{uuid.uuid4().hex}",
        json={"input": {"prompt": "x", "seconds": 600}},
    )

    assert wrong_type.status_code == 422
    assert wrong_type.json()["detail"][0]["loc"] == ["body", "input", "width"]
    assert missing_prompt.status_code == 422
    assert missing_prompt.json()["detail"][0]["loc"] == ["body", "input", "prompt"]
    assert too_long.status_code == 422


def test_odd_size_fails_the_prediction_with_a_readable_error(idle_node):
    response = httpx.put(
        f"{idle_node}/predictions/{uuid.uuid4().hex}",
        json={"input": {"prompt": "x", "width": 161, "height": 96, "seconds": 0.5}},
        timeout=30,
    )

    assert response.json()["status"] == "failed"
    assert "must be even" in response.json()["error"]


def test_async_prediction_sends_progress_webhooks_and_uploads_the_file(idle_node, catcher):
    take_id = f"take-{uuid.uuid4().hex[:12]}"
    accepted = httpx.put(
        f"{idle_node}/predictions/{take_id}",
        headers={"Prefer": "respond-async"},
        json={
            "input": {"prompt": "a train at dusk", "speed": 1.5, **SMALL},
            "webhook": f"{catcher.url}/hooks/{take_id}",
        },
    )
    assert accepted.status_code == 202
    assert accepted.json()["status"] == "processing"

    done = catcher.completed(take_id)

    hooks = catcher.webhooks(take_id)
    assert hooks[0]["status"] == "processing"
    assert any("progress: " in h["logs"] and h["status"] == "processing" for h in hooks[1:-1])
    assert done["status"] == "succeeded"
    assert "progress: 100%" in done["logs"]
    assert done["metrics"]["predict_time"] >= 1.5, "speed 1.5 spends 1.5 s per video second"
    (upload,) = catcher.uploads(take_id)
    assert upload.path == f"/ingest/{take_id}.mp4"
    assert upload.headers["content-type"] == "video/mp4"
    assert done["output"] == f"{catcher.url}/media/outputs/ingest/{take_id}.mp4"
    stream, frames = decode(upload.body)
    assert stream.codec_context.name == "h264" and len(frames) == 12


def test_same_put_again_after_completion_answers_from_the_rendered_file(idle_node, catcher):
    take_id = f"take-{uuid.uuid4().hex[:12]}"
    body = {"input": {"prompt": "replay", **SMALL}, "webhook": f"{catcher.url}/hooks/{take_id}"}
    headers = {"Prefer": "respond-async"}
    httpx.put(f"{idle_node}/predictions/{take_id}", headers=headers, json=body)
    catcher.completed(take_id)
    httpx.put(f"{idle_node}/predictions/{take_id}", headers=headers, json=body)
    catcher.wait_for(
        lambda: [h["status"] for h in catcher.webhooks(take_id)].count("succeeded") == 2
    )

    first, second = catcher.uploads(take_id)
    assert first.body == second.body
    assert "already rendered" in catcher.webhooks(take_id)[-1]["logs"]


def test_committed_openapi_schema_is_what_cog_derives_from_the_predictor():
    env = {**os.environ, "COG_PREDICT_TYPE_STUB": "predict.py:Predictor"}
    generated = subprocess.run(
        [sys.executable, "-m", "cog.command.openapi_schema"],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    committed = json.loads((NODE_DIR / ".cog" / "openapi_schema.json").read_text())

    assert json.loads(generated.stdout) == committed
    assert committed["components"]["schemas"]["Input"]["required"] == ["prompt"]
