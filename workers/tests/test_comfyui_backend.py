"""The ComfyUI backend against a local server speaking ComfyUI's HTTP and websocket shapes:
the route's workflow with the take in its named inputs, image uploads, progress over the
websocket, results from the history and /view, node and queue errors, cancel, health."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from generation.reports import CANCELED, FAILED, QUEUED, RUNNING, SUCCEEDED
from workers.backends import PermanentBackendError, Request, TransientBackendError, backend_for
from workers.backends.comfyui import ComfyUIBackend
from workers.models import Provider

from .fake_comfyui import FakeComfyUI, start_fake_comfyui

WORKFLOW = {
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["38", 0]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["38", 0]}},
    "3": {
        "class_type": "KSampler",
        "inputs": {"seed": 0, "steps": 30, "cfg": 6, "model": ["37", 0]},
    },
    "40": {
        "class_type": "WanFirstLastFrameToVideo",
        "inputs": {"width": 832, "height": 480, "length": 81, "batch_size": 1},
    },
    "52": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
    "53": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
    "12": {"class_type": "VHS_VideoCombine", "inputs": {"frame_rate": 16, "images": ["8", 0]}},
}
INPUTS = {
    "prompt": "6.text",
    "negative_prompt": "7.text",
    "seed": "3.seed",
    "width": "40.width",
    "height": "40.height",
    "length": "40.length",
    "fps": "12.frame_rate",
    "image": "52.image",
    "last_frame": "53.image",
}


def png_data_url(color) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def comfy_server(reference) -> Iterator[FakeComfyUI]:
    path = "/tmp/retake-comfyui-fake.mp4"
    reference.render_video(path, prompt="a heron", width=64, height=64, fps=8, seconds=1)
    with open(path, "rb") as fh:
        fake, server = start_fake_comfyui(fh.read())
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def comfy(comfy_server: FakeComfyUI) -> FakeComfyUI:
    comfy_server.reset()
    return comfy_server


@pytest.fixture
def backend(comfy) -> Iterator[ComfyUIBackend]:
    provider = Provider(name="Studio ComfyUI", slug="studio", kind="comfyui", base_url=comfy.url)
    with backend_for(provider, timeout=5) as client:
        yield client


def request(**fields) -> Request:
    values = dict(
        take_id="take",
        attempt=1,
        model="wan-flf2v",
        prompt="a heron lifts off a misty lake",
        negative_prompt="blurry",
        seed=42,
        width=832,
        height=480,
        duration=5,
        fps=16,
        extra={"workflow": WORKFLOW, "inputs": INPUTS, "frame_step": 4},
    )
    values.update(fields)
    return Request(**values)


def test_submit_puts_the_take_into_the_named_inputs_and_uploads_its_images(backend, comfy):
    first, last = png_data_url((200, 30, 30)), png_data_url((30, 30, 200))
    state = backend.submit(request(image=first, last_frame=last))
    assert state.status == QUEUED
    prompt = comfy.prompts[state.external_id]
    sent = prompt.workflow
    assert sent["6"]["inputs"]["text"] == "a heron lifts off a misty lake"
    assert sent["7"]["inputs"]["text"] == "blurry"
    assert sent["3"]["inputs"] == {"seed": 42, "steps": 30, "cfg": 6, "model": ["37", 0]}
    # 5 s at 16 fps is 80 frames; Wan makes 4k+1, so 81.
    assert sent["40"]["inputs"]["length"] == 81
    assert (sent["40"]["inputs"]["width"], sent["40"]["inputs"]["height"]) == (832, 480)
    assert sent["12"]["inputs"]["frame_rate"] == 16
    # The images went to /upload/image first; the LoadImage nodes name them.
    first_name, last_name = sent["52"]["inputs"]["image"], sent["53"]["inputs"]["image"]
    assert comfy.uploads[first_name] == base64.b64decode(first.partition(",")[2])
    assert comfy.uploads[last_name] == base64.b64decode(last.partition(",")[2])
    assert prompt.client_id == "retake-studio"
    # The route's stored workflow is left as it was.
    assert WORKFLOW["6"]["inputs"]["text"] == ""


def test_running_prompt_reports_progress_from_the_websocket_then_its_video(backend, comfy):
    state = backend.submit(request())
    ref = state.external_id
    assert backend.status(request(), ref).status == QUEUED
    comfy.start(state.external_id)
    comfy.tick(state.external_id, 12, 30)
    running = backend.status(request(), ref)
    assert (running.status, running.progress) == (RUNNING, 40)
    comfy.finish(state.external_id)
    done = backend.status(request(), ref)
    assert done.status == SUCCEEDED and done.progress == 100
    # The workflow's video, not its preview image, fetched from /view.
    assert "/view?filename=retake_00001.mp4&subfolder=video&type=output" in done.output_url
    assert httpx.get(done.output_url).content == comfy.video


def test_a_workflow_comfyui_refuses_names_the_node_and_its_errors(backend, comfy):
    comfy.refuse_next = (
        400,
        {
            "error": {
                "type": "prompt_outputs_failed_validation",
                "message": "Prompt outputs failed validation",
                "details": "",
                "extra_info": {},
            },
            "node_errors": {
                "37": {
                    "errors": [
                        {
                            "type": "value_not_in_list",
                            "message": "Value not in list",
                            "details": "unet_name: 'wan2.1_flf2v_720p.safetensors' not in []",
                            "extra_info": {},
                        }
                    ],
                    "dependent_outputs": ["12"],
                    "class_type": "UNETLoader",
                }
            },
        },
    )
    with pytest.raises(PermanentBackendError) as caught:
        backend.submit(request())
    message = str(caught.value)
    assert "node 37 (UNETLoader)" in message and "wan2.1_flf2v_720p.safetensors" in message
    assert not comfy.prompts


def test_queue_errors_are_permanent_and_server_errors_transient(backend, comfy):
    comfy.refuse_next = (
        400,
        {"error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs"}},
    )
    with pytest.raises(PermanentBackendError, match="Prompt has no outputs"):
        backend.submit(request())
    comfy.refuse_next = (500, {"error": "internal"})
    with pytest.raises(TransientBackendError):
        backend.submit(request())
    dead = Provider(name="gone", slug="gone", kind="comfyui", base_url="http://127.0.0.1:9")
    with backend_for(dead, timeout=2) as client, pytest.raises(TransientBackendError):
        client.submit(request())


def test_failed_and_interrupted_prompts_end_the_take_with_the_nodes_reason(backend, comfy):
    failed = backend.submit(request())
    comfy.start(failed.external_id)
    comfy.fail(failed.external_id, "KSampler", "CUDA out of memory")
    state = backend.status(request(), failed.external_id)
    assert state.status == FAILED and state.error == "ComfyUI node KSampler: CUDA out of memory"

    running = backend.submit(request())
    comfy.start(running.external_id)
    assert backend.cancel(request(), running.external_id) is True
    assert ("POST", "/interrupt", {"prompt_id": running.external_id}) in comfy.calls
    assert backend.status(request(), running.external_id).status == CANCELED


def test_cancel_drops_a_waiting_prompt_from_the_queue(backend, comfy):
    waiting = backend.submit(request())
    assert backend.cancel(request(), waiting.external_id) is True
    assert ("POST", "/queue", {"delete": [waiting.external_id]}) in comfy.calls
    assert waiting.external_id not in comfy.prompts
    # Gone from queue and history: nothing to cancel, and its status is an error to retry.
    assert backend.cancel(request(), waiting.external_id) is False
    with pytest.raises(TransientBackendError, match="neither queued nor finished"):
        backend.status(request(), waiting.external_id)


def test_route_without_a_workflow_or_with_a_bad_input_target_is_refused(backend, comfy):
    with pytest.raises(PermanentBackendError, match="no workflow"):
        backend.submit(request(extra={"inputs": INPUTS}))
    with pytest.raises(PermanentBackendError, match="'99.text', which is not a node"):
        backend.submit(request(extra={"workflow": WORKFLOW, "inputs": {"prompt": "99.text"}}))
    with pytest.raises(PermanentBackendError, match="unknown input 'style'"):
        backend.submit(request(extra={"workflow": WORKFLOW, "inputs": {"style": "6.text"}}))
    assert not comfy.prompts


def test_health_reads_system_stats(backend):
    health = backend.health()
    assert health["version"] == "0.3.40"
    [device] = health["devices"]
    assert device["type"] == "cuda" and device["vram_free"] == 60_000_000_000


def test_progress_is_none_when_no_event_arrives_in_time(backend, comfy):
    state = backend.submit(request())
    comfy.start(state.external_id)
    started = time.monotonic()
    assert backend.status(request(), state.external_id).progress is None
    assert time.monotonic() - started < 3
