"""A ComfyUI server as a backend: a route's workflow, with the take put into named inputs.

The route (kind provider, provider of kind `comfyui`) stores the workflow in ComfyUI's API
format and where each of the take's values goes, in its `extra_input`:

    {
      "workflow": {"3": {"class_type": "KSampler", "inputs": {...}}, ...},
      "inputs": {"prompt": "6.text", "negative_prompt": "7.text", "seed": "3.seed",
                 "width": "40.width", "height": "40.height", "length": "40.length",
                 "fps": "50.fps", "image": "52.image", "last_frame": "53.image"},
      "frame_step": 4,
      "output_node": "50"
    }

Each `inputs` value is `<node id>.<input name>`; a take value with no entry is not sent.
`length` is the frame count: seconds x fps, rounded up to `frame_step` x k + 1 when the
workflow's model has such a rule (Wan: 4). Images are uploaded first (`POST /upload/image`)
and their stored names go into the workflow.

The protocol, as ComfyUI serves it: `POST /prompt` {prompt, client_id} answers
{prompt_id, number, node_errors} or a 400 {error, node_errors}; progress comes over the
websocket `/ws?clientId=` ({"type": "progress", "data": {value, max, prompt_id}}), state
from `GET /queue` (running, pending) and `GET /history/{prompt_id}` (outputs and status
once finished); files from `GET /view?filename=&subfolder=&type=`; cancel with
`POST /queue {"delete": [id]}` (pending) or `POST /interrupt` (running); health from
`GET /system_stats`. ComfyUI sends no webhooks, so takes on it are polled.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from generation.reports import CANCELED, FAILED, QUEUED, RUNNING, SUCCEEDED, State

from .base import PermanentBackendError, Request, TransientBackendError
from .upstream import ProviderBackend, expect_dict

# The take's values a workflow can take, by the names `inputs` uses.
INPUT_NAMES = (
    "prompt",
    "negative_prompt",
    "seed",
    "width",
    "height",
    "length",
    "fps",
    "seconds",
    "image",
    "last_frame",
)
# Output kinds ComfyUI nodes report files under (SaveVideo, VHS_VideoCombine, SaveAnimated*).
OUTPUT_KINDS = ("videos", "gifs", "images")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv")
# How long a status poll listens on the websocket for a progress event.
PROGRESS_LISTEN_SECONDS = 0.5


class ComfyUIBackend(ProviderBackend):
    kind = "comfyui"
    default_base_url = "http://127.0.0.1:8188"
    calls_back = False

    @property
    def client_id(self) -> str:
        """One websocket client id per provider: ComfyUI sends a prompt's progress to the
        client that queued it."""
        return f"retake-{self.provider.slug}"

    def headers(self) -> dict[str, str]:
        key = self.provider.api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    # --- submit -------------------------------------------------------------------------

    def submit(self, request: Request) -> State:
        workflow = self.workflow_for(request)
        status, body = self.send(
            "POST", "/prompt", json={"prompt": workflow, "client_id": self.client_id}
        )
        body = expect_dict(self.provider, body, "prompt_id")
        if body.get("node_errors"):
            raise PermanentBackendError(_node_errors(body["node_errors"]))
        return State(str(body["prompt_id"]), QUEUED)

    def workflow_for(self, request: Request) -> dict:
        """The route's workflow with the take's values (and uploaded images) put in."""
        extra = request.extra
        workflow = extra.get("workflow")
        targets = extra.get("inputs") or {}
        if not isinstance(workflow, dict) or not workflow:
            raise PermanentBackendError(
                "The ComfyUI route has no workflow (extra_input.workflow, API format)."
            )
        workflow = copy.deepcopy(workflow)
        values = self._values(request)
        for name, target in targets.items():
            if name not in INPUT_NAMES:
                raise PermanentBackendError(
                    f"ComfyUI route: unknown input {name!r}; use {', '.join(INPUT_NAMES)}."
                )
            if values.get(name) is None:
                continue
            node_id, _, field = str(target).partition(".")
            node = workflow.get(node_id)
            if not field or not isinstance(node, dict):
                raise PermanentBackendError(
                    f"ComfyUI route: input {name!r} points at {target!r}, which is not a "
                    "node of the workflow (write <node id>.<input name>)."
                )
            if name in ("image", "last_frame"):
                value = self.upload_image(values[name], f"{request.attempt_id}-{name}")
            else:
                value = values[name]
            node.setdefault("inputs", {})[field] = value
        return workflow

    def _values(self, request: Request) -> dict[str, Any]:
        step = int(request.extra.get("frame_step") or 1)
        frames = max(1, round(request.duration * request.fps))
        length = math.ceil((frames - 1) / step) * step + 1 if step > 1 else frames
        return {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "seed": request.seed,
            "width": request.width,
            "height": request.height,
            "length": length,
            "fps": request.fps,
            "seconds": request.duration,
            "image": request.image,
            "last_frame": request.last_frame,
        }

    def upload_image(self, data_url: str, stem: str) -> str:
        """Store an image in ComfyUI's input folder; its name there, for a LoadImage node."""
        header, _, payload = data_url.partition(",")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise PermanentBackendError("The reference image is not valid base64.") from exc
        mime = header.removeprefix("data:").split(";")[0] or "image/png"
        extension = mime.split("/")[-1].replace("jpeg", "jpg")
        _, body = self.send(
            "POST",
            "/upload/image",
            files={"image": (f"retake-{stem}.{extension}", data, mime)},
            data={"type": "input", "overwrite": "true"},
        )
        body = expect_dict(self.provider, body, "name")
        subfolder = body.get("subfolder") or ""
        return f"{subfolder}/{body['name']}" if subfolder else str(body["name"])

    # --- status -------------------------------------------------------------------------

    def status(self, request: Request, external_id: str) -> State:
        prompt_id = external_id
        _, history = self.send("GET", f"/history/{prompt_id}")
        entry = history.get(prompt_id) if isinstance(history, dict) else None
        if entry:
            return self._finished(prompt_id, entry)
        _, queue = self.send("GET", "/queue")
        queue = expect_dict(self.provider, queue, "queue_running", "queue_pending")
        if any(_queued_id(item) == prompt_id for item in queue["queue_running"]):
            return State(prompt_id, RUNNING, progress=self.progress(prompt_id))
        if any(_queued_id(item) == prompt_id for item in queue["queue_pending"]):
            return State(prompt_id, QUEUED)
        # Neither queued nor in the history: the server restarted and forgot it.
        raise TransientBackendError(
            f"{self.provider.name}: prompt {prompt_id} is neither queued nor finished"
        )

    def _finished(self, prompt_id: str, entry: dict) -> State:
        status = entry.get("status") or {}
        messages = {name: data for name, data in status.get("messages") or []}
        if "execution_interrupted" in messages:
            return State(prompt_id, CANCELED, error="Interrupted on the ComfyUI server.")
        if status.get("status_str") == "error" or "execution_error" in messages:
            error = messages.get("execution_error") or {}
            node = error.get("node_type") or error.get("node_id") or "?"
            reason = error.get("exception_message") or "the workflow failed"
            return State(prompt_id, FAILED, error=f"ComfyUI node {node}: {reason}".strip())
        output = self._output(entry.get("outputs") or {})
        if output is None:
            return State(prompt_id, FAILED, error="The ComfyUI workflow saved no video.")
        return State(prompt_id, SUCCEEDED, output_url=output, progress=100)

    def _output(self, outputs: dict) -> str | None:
        """The /view URL of the workflow's video (the route's output node first)."""
        files = []
        for node_id, produced in outputs.items():
            for kind in OUTPUT_KINDS:
                for item in produced.get(kind) or []:
                    if isinstance(item, dict) and item.get("filename"):
                        files.append((node_id, item))
        if not files:
            return None
        videos = [f for f in files if f[1]["filename"].lower().endswith(VIDEO_SUFFIXES)]
        _, chosen = (videos or files)[0]
        query = urlencode(
            {
                "filename": chosen["filename"],
                "subfolder": chosen.get("subfolder", ""),
                "type": chosen.get("type", "output"),
            }
        )
        return f"{self.base_url}/view?{query}"

    def progress(self, prompt_id: str) -> int | None:
        """The running prompt's progress, from a progress event on the websocket, if one
        arrives within PROGRESS_LISTEN_SECONDS; None otherwise (never an error)."""
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        url = f"{scheme}://{parts.netloc}{parts.path}/ws?clientId={self.client_id}"
        deadline = time.monotonic() + PROGRESS_LISTEN_SECONDS
        try:
            with connect(url, additional_headers=self.headers(), open_timeout=2) as socket:
                while (left := deadline - time.monotonic()) > 0:
                    message = socket.recv(timeout=left)
                    if not isinstance(message, str):
                        continue  # binary frames are ComfyUI's own preview images
                    event = json.loads(message)
                    data = event.get("data") or {}
                    if event.get("type") == "progress" and data.get("prompt_id") == prompt_id:
                        return max(0, min(99, int(100 * data["value"] / max(1, data["max"]))))
        except (OSError, TimeoutError, WebSocketException, ValueError, KeyError, TypeError):
            return None
        return None

    # --- cancel, health -----------------------------------------------------------------

    def cancel(self, request: Request, external_id: str) -> bool:
        """Drop it from the queue if it waits; interrupt it if it runs."""
        prompt_id = external_id
        _, queue = self.send("GET", "/queue")
        queue = expect_dict(self.provider, queue, "queue_running", "queue_pending")
        if any(_queued_id(item) == prompt_id for item in queue["queue_pending"]):
            self.send("POST", "/queue", json={"delete": [prompt_id]})
            return True
        if any(_queued_id(item) == prompt_id for item in queue["queue_running"]):
            self.send("POST", "/interrupt", json={"prompt_id": prompt_id})
            return True
        return False

    def health(self) -> dict[str, Any]:
        """`/system_stats`: the server's versions and its devices with free memory."""
        _, body = self.send("GET", "/system_stats")
        body = expect_dict(self.provider, body, "devices")
        return {
            "version": (body.get("system") or {}).get("comfyui_version", ""),
            "devices": [
                {
                    "name": device.get("name", ""),
                    "type": device.get("type", ""),
                    "vram_free": device.get("vram_free"),
                    "vram_total": device.get("vram_total"),
                }
                for device in body["devices"]
            ],
        }

    def error_detail(self, body: Any) -> str:
        """ComfyUI's 400s: {"error": {"type", "message", "details"}, "node_errors": {…}}."""
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            error = body["error"]
            detail = ": ".join(
                part for part in (error.get("message"), error.get("details")) if part
            )
            if body.get("node_errors"):
                detail = f"{detail}; {_node_errors(body['node_errors'])}"
            return detail or str(error.get("type", ""))
        return super().error_detail(body)


def _queued_id(item: Any) -> str | None:
    """A queue entry is [number, prompt_id, prompt, extra_data, outputs_to_execute]."""
    return str(item[1]) if isinstance(item, list | tuple) and len(item) > 1 else None


def _node_errors(node_errors: dict) -> str:
    """`node_errors` as one readable line: which node, of what class, said what."""
    parts = []
    for node_id, problem in node_errors.items():
        messages = [
            ": ".join(p for p in (e.get("message"), e.get("details")) if p)
            for e in problem.get("errors") or []
        ]
        parts.append(
            f"node {node_id} ({problem.get('class_type', '?')}): {'; '.join(messages) or '?'}"
        )
    return "ComfyUI refused the workflow: " + " | ".join(parts)
