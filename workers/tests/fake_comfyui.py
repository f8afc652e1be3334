"""A local stand-in for a ComfyUI server (ComfyUI can't be installed here), speaking its
documented HTTP shapes and its websocket on one port, so the real backend client talks to
it exactly as it would to ComfyUI.

HTTP: POST /prompt, GET /queue, POST /queue {"delete"}, POST /interrupt, GET /history/{id},
GET /view, POST /upload/image (multipart), GET /system_stats. Websocket: /ws?clientId=,
sending a `status` event on connect and, while a prompt runs, its `progress` events to the
client that queued it (a sampler ticks them out continuously), like ComfyUI does.

Tests drive execution: `start(id)`, `tick(id, value, max)`, `finish(id)`, `fail(id, ...)`;
with `auto_finish` a prompt runs to the end as soon as it is queued.
"""

from __future__ import annotations

import base64
import hashlib
import json
import select
import struct
import threading
import uuid
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass
class FakePrompt:
    prompt_id: str
    number: int
    workflow: dict
    client_id: str
    state: str = "pending"  # pending, running, success, error, interrupted
    progress: tuple[int, int] | None = None
    error: dict | None = None


@dataclass
class FakeComfyUI:
    url: str = ""
    video: bytes = b""
    prompts: dict[str, FakePrompt] = field(default_factory=dict)
    uploads: dict[str, bytes] = field(default_factory=dict)
    calls: list[tuple[str, str, object]] = field(default_factory=list)
    # The next POST /prompt answers this (status, body) instead of queueing.
    refuse_next: tuple[int, dict] | None = None
    auto_finish: bool = False
    lock: threading.Condition = field(default_factory=threading.Condition)

    def reset(self) -> None:
        with self.lock:
            self.prompts.clear()
            self.uploads.clear()
            self.calls.clear()
            self.refuse_next = None
            self.auto_finish = False

    # --- what the "GPU" does, driven by tests ---------------------------------------------

    def start(self, prompt_id: str) -> None:
        with self.lock:
            self.prompts[prompt_id].state = "running"
            self.lock.notify_all()

    def tick(self, prompt_id: str, value: int, maximum: int) -> None:
        with self.lock:
            self.prompts[prompt_id].progress = (value, maximum)
            self.lock.notify_all()

    def finish(self, prompt_id: str) -> None:
        with self.lock:
            self.prompts[prompt_id].state = "success"
            self.lock.notify_all()

    def fail(self, prompt_id: str, node_type: str, message: str) -> None:
        with self.lock:
            prompt = self.prompts[prompt_id]
            prompt.state = "error"
            prompt.error = {
                "prompt_id": prompt_id,
                "node_id": "3",
                "node_type": node_type,
                "exception_message": message,
                "exception_type": "RuntimeError",
            }
            self.lock.notify_all()

    # --- HTTP shapes ------------------------------------------------------------------------

    def queue_item(self, prompt: FakePrompt) -> list:
        extra = {"client_id": prompt.client_id}
        return [prompt.number, prompt.prompt_id, prompt.workflow, extra, ["9"]]

    def history_entry(self, prompt: FakePrompt) -> dict:
        messages = [["execution_start", {"prompt_id": prompt.prompt_id}]]
        outputs: dict = {}
        if prompt.state == "success":
            outputs = {
                "9": {
                    "images": [{"filename": "preview_00001.png", "subfolder": "", "type": "temp"}]
                },
                "12": {
                    "gifs": [
                        {
                            "filename": f"retake_{prompt.number:05d}.mp4",
                            "subfolder": "video",
                            "type": "output",
                            "format": "video/h264-mp4",
                        }
                    ]
                },
            }
            messages.append(["execution_success", {"prompt_id": prompt.prompt_id}])
        elif prompt.state == "error":
            messages.append(["execution_error", prompt.error])
        elif prompt.state == "interrupted":
            messages.append(["execution_interrupted", {"prompt_id": prompt.prompt_id}])
        return {
            "prompt": self.queue_item(prompt),
            "outputs": outputs,
            "status": {
                "status_str": "success" if prompt.state == "success" else "error",
                "completed": prompt.state == "success",
                "messages": messages,
            },
        }


def _handler(fake: FakeComfyUI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _json(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            with fake.lock:
                fake.calls.append(("GET", parts.path, query))
            if parts.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
                return self._websocket(query.get("clientId", [""])[0])
            if parts.path == "/queue":
                with fake.lock:
                    live = list(fake.prompts.values())
                    running = [fake.queue_item(p) for p in live if p.state == "running"]
                    pending = [fake.queue_item(p) for p in live if p.state == "pending"]
                return self._json(200, {"queue_running": running, "queue_pending": pending})
            if parts.path.startswith("/history/"):
                prompt_id = parts.path.rsplit("/", 1)[1]
                with fake.lock:
                    prompt = fake.prompts.get(prompt_id)
                    done = prompt and prompt.state in ("success", "error", "interrupted")
                    body = {prompt_id: fake.history_entry(prompt)} if done else {}
                return self._json(200, body)
            if parts.path == "/view":
                if query.get("type") != ["output"] or not query.get("filename", [""])[0]:
                    return self._json(404, {"error": "not found"})
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(fake.video)))
                self.end_headers()
                self.wfile.write(fake.video)
                return None
            if parts.path == "/system_stats":
                return self._json(
                    200,
                    {
                        "system": {
                            "os": "posix",
                            "comfyui_version": "0.3.40",
                            "python_version": "3.12",
                        },
                        "devices": [
                            {
                                "name": "cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync",
                                "type": "cuda",
                                "index": 0,
                                "vram_total": 85_520_809_984,
                                "vram_free": 60_000_000_000,
                            }
                        ],
                    },
                )
            return self._json(404, {"error": "not found"})

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            raw = self._body()
            if path == "/upload/image":
                return self._upload(raw)
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return self._json(400, {"error": {"type": "invalid_json", "message": "bad JSON"}})
            with fake.lock:
                fake.calls.append(("POST", path, body))
            if path == "/prompt":
                return self._prompt(body)
            if path == "/queue":
                with fake.lock:
                    for prompt_id in body.get("delete", []):
                        prompt = fake.prompts.get(prompt_id)
                        if prompt and prompt.state == "pending":
                            del fake.prompts[prompt_id]
                return self._json(200, {})
            if path == "/interrupt":
                with fake.lock:
                    wanted = body.get("prompt_id")
                    for prompt in fake.prompts.values():
                        if prompt.state == "running" and wanted in (None, prompt.prompt_id):
                            prompt.state = "interrupted"
                    fake.lock.notify_all()
                return self._json(200, {})
            return self._json(404, {"error": "not found"})

        def _prompt(self, body: dict) -> None:
            with fake.lock:
                refused, fake.refuse_next = fake.refuse_next, None
                if refused:
                    return self._json(*refused)
                workflow = body.get("prompt")
                if not isinstance(workflow, dict) or not workflow:
                    return self._json(
                        400,
                        {
                            "error": {
                                "type": "no_prompt",
                                "message": "No prompt provided",
                                "details": "",
                            },
                            "node_errors": {},
                        },
                    )
                prompt = FakePrompt(
                    prompt_id=str(uuid.uuid4()),
                    number=len(fake.prompts) + 1,
                    workflow=workflow,
                    client_id=body.get("client_id", ""),
                )
                if fake.auto_finish:
                    prompt.state = "success"
                fake.prompts[prompt.prompt_id] = prompt
            return self._json(
                200, {"prompt_id": prompt.prompt_id, "number": prompt.number, "node_errors": {}}
            )

        def _upload(self, raw: bytes) -> None:
            message = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + raw
            )
            fields = {
                part.get_param("name", header="content-disposition"): part
                for part in message.iter_parts()
            }
            image = fields.get("image")
            if image is None or fields.get("type") is None:
                return self._json(400, {"error": "image and type are required"})
            name = image.get_filename()
            with fake.lock:
                fake.uploads[name] = image.get_payload(decode=True)
                fake.calls.append(("POST", "/upload/image", name))
            return self._json(200, {"name": name, "subfolder": "", "type": "input"})

        # --- the websocket ----------------------------------------------------------------

        def _websocket(self, client_id: str) -> None:
            key = self.headers["Sec-WebSocket-Key"]
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            self.send_response(101, "Switching Protocols")
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            sock = self.connection
            status = {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id}
            self._send_text({"type": "status", "data": status})
            while True:
                with fake.lock:
                    ticks = [
                        p
                        for p in fake.prompts.values()
                        if p.client_id == client_id and p.state == "running" and p.progress
                    ]
                for prompt in ticks:
                    value, maximum = prompt.progress
                    self._send_text(
                        {
                            "type": "progress",
                            "data": {
                                "value": value,
                                "max": maximum,
                                "prompt_id": prompt.prompt_id,
                                "node": "3",
                            },
                        }
                    )
                readable, _, _ = select.select([sock], [], [], 0.05)
                if readable and self._read_frame_is_close():
                    self._send_frame(0x8, b"")
                    return

        def _send_text(self, event: dict) -> None:
            self._send_frame(0x1, json.dumps(event).encode())

        def _send_frame(self, opcode: int, payload: bytes) -> None:
            header = bytes([0x80 | opcode])
            size = len(payload)
            if size < 126:
                header += bytes([size])
            elif size < 65536:
                header += bytes([126]) + struct.pack(">H", size)
            else:
                header += bytes([127]) + struct.pack(">Q", size)
            self.wfile.write(header + payload)
            self.wfile.flush()

        def _read_frame_is_close(self) -> bool:
            head = self.rfile.read(2)
            if len(head) < 2:
                return True
            opcode, size = head[0] & 0x0F, head[1] & 0x7F
            if size == 126:
                size = struct.unpack(">H", self.rfile.read(2))[0]
            elif size == 127:
                size = struct.unpack(">Q", self.rfile.read(8))[0]
            if head[1] & 0x80:
                self.rfile.read(4)  # the client's mask: the payload itself is not needed
            self.rfile.read(size)
            if opcode == 0x9:  # ping: pong
                self._send_frame(0xA, b"")
            return opcode == 0x8

    return Handler


def start_fake_comfyui(video: bytes) -> tuple[FakeComfyUI, ThreadingHTTPServer]:
    fake = FakeComfyUI(video=video)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return fake, server
