"""Local HTTP servers that speak the upstream providers' documented shapes.

One `FakeProvider` per kind (replicate, fal, kling, runway) runs in a thread of the test
process. It checks authentication as the provider does (Bearer token, fal's `Key`, Kling's
HS256 JWT, Runway's `X-Runway-Version`), answers submissions, status queries and cancels in
the provider's JSON shapes, serves real MP4 outputs (rendered by the reference node's
`render_video`), and builds the provider's webhooks (Replicate's signed per Standard
Webhooks). Faults are queued per call: "429", "500", "timeout", "malformed", "moderation",
"invalid".

Each status query moves a job one step on: queued → running → its outcome ("succeed",
"fail" or "blocked").
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt

from workers.backends.replicate import sign

API_KEY = "test-api-key"
SECRET_KEY = "test-kling-secret-key-0123456789abcdef"
REPLICATE_WEBHOOK_SECRET = "whsec_" + "c2VjcmV0LWZvci10ZXN0cy0xMjM0NTY3ODkw"


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeJob:
    id: str
    endpoint: str
    input: dict
    webhook: str = ""
    status: str = "queued"
    outcome: str = "succeed"
    seconds: float = 1.0


@dataclass
class FakeProvider:
    kind: str
    reference: ModuleType
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    status_faults: list[str] = field(default_factory=list)
    outcome: str = "succeed"
    # Seconds of video actually delivered (None: the duration asked for).
    deliver_seconds: float | None = None
    hang_seconds: float = 2.0
    # When set, a job finishes this many seconds after submission and its webhook is sent.
    auto_complete: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    files: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fake-provider-")))

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.jobs.clear()
            self.faults.clear()
            self.status_faults.clear()
            self.outcome = "succeed"
            self.deliver_seconds = None
            self.auto_complete = None

    def submissions(self) -> list[Call]:
        return [c for c in self.calls if c.method == "POST" and "cancel" not in c.path]

    def only_job(self) -> FakeJob:
        assert len(self.jobs) == 1, self.jobs
        return next(iter(self.jobs.values()))

    # --- what a job looks like to the client ------------------------------------------

    def video_url(self, job: FakeJob) -> str:
        return f"{self.url}/files/{job.id}.mp4"

    def render(self, job: FakeJob) -> Path:
        path = self.files / f"{job.id}.mp4"
        if not path.exists():
            self.reference.render_video(
                str(path),
                prompt="fake provider",
                width=192,
                height=108,
                fps=16,
                seconds=job.seconds,
            )
        return path

    def step(self, job: FakeJob) -> None:
        if job.status == "queued":
            job.status = "running"
        elif job.status == "running":
            job.status = {"succeed": "succeeded", "fail": "failed", "blocked": "blocked"}[
                job.outcome
            ]

    def finish(self, job_id: str) -> FakeJob:
        job = self.jobs[job_id]
        while job.status in ("queued", "running"):
            self.step(job)
        return job

    def state(self, job: FakeJob) -> tuple[int, Any]:
        return getattr(self, f"_{self.kind}_state")(job)

    def _replicate_state(self, job: FakeJob) -> tuple[int, Any]:
        status = {"queued": "starting", "running": "processing", "blocked": "failed"}.get(
            job.status, job.status
        )
        error = {"failed": "CUDA out of memory", "blocked": "NSFW content detected"}
        return 200, {
            "id": job.id,
            "model": job.endpoint,
            "version": "v1",
            "input": job.input,
            "logs": "",
            "status": status,
            "output": self.video_url(job) if job.status == "succeeded" else None,
            "error": error.get(job.status),
            "created_at": "2026-01-01T00:00:00.000Z",
            "metrics": {"predict_time": 3.2} if job.status == "succeeded" else {},
            "urls": {
                "get": f"{self.url}/v1/predictions/{job.id}",
                "cancel": f"{self.url}/v1/predictions/{job.id}/cancel",
            },
        }

    def _fal_state(self, job: FakeJob) -> tuple[int, Any]:
        status = {"queued": "IN_QUEUE", "running": "IN_PROGRESS"}.get(job.status, "COMPLETED")
        return 200, {"status": status, "request_id": job.id, "logs": None}

    def _kling_state(self, job: FakeJob) -> tuple[int, Any]:
        return 200, self.kling_envelope(self.kling_task(job))

    def kling_task(self, job: FakeJob) -> dict:
        status = {"queued": "submitted", "running": "processing", "succeeded": "succeed"}.get(
            job.status, "failed"
        )
        task: dict[str, Any] = {
            "task_id": job.id,
            "task_status": status,
            "task_status_msg": {
                "failed": "generation failed",
                "blocked": "Failure to pass the risk control system",
            }.get(job.status, ""),
            "created_at": 1722769557708,
            "updated_at": 1722769557708,
        }
        if job.status == "succeeded":
            task["task_result"] = {
                "videos": [{"id": "v1", "url": self.video_url(job), "duration": str(job.seconds)}]
            }
        return task

    def kling_envelope(self, data: Any, code: int = 0, message: str = "SUCCEED") -> dict:
        return {"code": code, "message": message, "request_id": uuid.uuid4().hex, "data": data}

    def _runway_state(self, job: FakeJob) -> tuple[int, Any]:
        status = {
            "queued": "PENDING",
            "running": "RUNNING",
            "succeeded": "SUCCEEDED",
            "failed": "FAILED",
            "blocked": "FAILED",
            "canceled": "CANCELLED",
        }[job.status]
        task: dict[str, Any] = {"id": job.id, "status": status, "createdAt": "2026-01-01T00:00Z"}
        if status == "RUNNING":
            task["progress"] = 0.5
        if job.status == "succeeded":
            task["output"] = [self.video_url(job)]
        if job.status == "failed":
            task.update(failure="An unexpected error occurred.", failureCode="INTERNAL.BAD_OUTPUT")
        if job.status == "blocked":
            task.update(failure="Input text did not pass moderation.", failureCode="SAFETY.INPUT")
        return 200, task

    # --- webhooks ---------------------------------------------------------------------

    def webhook(self, job_id: str) -> tuple[str, bytes, dict[str, str]]:
        """The provider's callback for the job's current state: (url, body, headers)."""
        job = self.jobs[job_id]
        headers = {"content-type": "application/json"}
        if self.kind == "replicate":
            body = json.dumps(self._replicate_state(job)[1]).encode()
            webhook_id, timestamp = f"msg_{uuid.uuid4().hex}", str(int(time.time()))
            headers.update(
                {
                    "webhook-id": webhook_id,
                    "webhook-timestamp": timestamp,
                    "webhook-signature": sign(
                        REPLICATE_WEBHOOK_SECRET, webhook_id, timestamp, body
                    ),
                }
            )
        elif self.kind == "fal":
            ok = job.status == "succeeded"
            payload: dict[str, Any] = (
                {"video": {"url": self.video_url(job), "content_type": "video/mp4"}}
                if ok
                else {"detail": [self._fal_error(job)]}
            )
            body = json.dumps(
                {
                    "request_id": job.id,
                    "gateway_request_id": job.id,
                    "status": "OK" if ok else "ERROR",
                    "payload": payload,
                    "error": None if ok else "Invalid status code: 422",
                }
            ).encode()
        elif self.kind == "kling":
            body = json.dumps(self.kling_task(job)).encode()
        else:
            raise AssertionError("Runway sends no webhooks")
        return job.webhook, body, headers

    def _fal_error(self, job: FakeJob) -> dict:
        if job.status == "blocked":
            return {"type": "content_policy_violation", "msg": "The content could not be processed"}
        return {"type": "internal_error", "msg": "generation failed"}

    def complete_and_call_back(self, job_id: str) -> None:
        with self.lock:
            self.finish(job_id)
        self.deliver(job_id)

    def deliver(self, job_id: str, client=None):
        """POST the job's webhook: through a Django test client, or over HTTP."""
        url, body, headers = self.webhook(job_id)
        if client is not None:
            path = urlsplit(url).path
            extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
            extra.pop("HTTP_CONTENT_TYPE")
            return client.post(path, body, content_type="application/json", **extra)
        return httpx.post(url, content=body, headers=headers, timeout=10)


def _handler(fake: FakeProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _reply(self, status: int, body: Any = None, raw: bytes | None = None) -> None:
            data = (
                raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
            )
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            call = Call(
                self.command,
                parts.path,
                parse_qs(parts.query),
                {k.lower(): v for k, v in self.headers.items()},
                body,
            )
            if parts.path.startswith("/files/"):
                return self._file(parts.path)
            with fake.lock:
                fake.calls.append(call)
            denied = self._auth(call)
            if denied:
                return self._reply(*denied)
            is_submit = call.method == "POST" and not call.path.endswith("/cancel")
            queue = fake.faults if is_submit else fake.status_faults
            with fake.lock:
                fault = queue.pop(0) if queue and call.method != "DELETE" else None
            if fault:
                return self._fault(fault)
            with fake.lock:
                status, answer = getattr(self, f"_{fake.kind}")(call)
            self._reply(status, answer)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def _file(self, path: str) -> None:
            job = fake.jobs.get(Path(path).stem)
            if job is None or job.status != "succeeded":
                return self._reply(404, {"detail": "not found"})
            data = fake.render(job).read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _fault(self, fault: str) -> None:
            if fault == "timeout":
                time.sleep(fake.hang_seconds)
                return self._reply(504, {"detail": "too late"})
            if fault == "malformed":
                return self._reply(200, raw=b"{not json")
            if fake.kind == "kling":
                codes = {"429": (429, 1303), "500": (500, 5000), "moderation": (400, 1301)}
                status, code = codes.get(fault, (400, 1201))
                message = {1301: "Failure to pass the risk control system"}.get(code, fault)
                return self._reply(status, fake.kling_envelope(None, code, message))
            if fault == "moderation":
                if fake.kind == "fal":
                    detail = [{"type": "content_policy_violation", "msg": "flagged", "loc": []}]
                    return self._reply(422, {"detail": detail})
                return self._reply(400, {"detail": "prompt flagged as sensitive"})
            if fault == "invalid":
                return self._reply(422, {"detail": "duration: must be 5 or 10"})
            status = int(fault)
            self._reply(status, {"detail": f"fake {status}", "error": f"fake {status}"})

        def _auth(self, call: Call) -> tuple[int, Any] | None:
            auth = call.headers.get("authorization", "")
            if fake.kind in ("replicate", "runway") and auth != f"Bearer {API_KEY}":
                return 401, {"detail": "Unauthenticated"}
            if fake.kind == "runway" and call.headers.get("x-runway-version") != "2024-11-06":
                return 400, {"error": "X-Runway-Version header is required"}
            if fake.kind == "fal" and auth != f"Key {API_KEY}":
                return 401, {"detail": "No user found for Key ID and Secret"}
            if fake.kind == "kling":
                try:
                    claims = jwt.decode(
                        auth.removeprefix("Bearer "), SECRET_KEY, algorithms=["HS256"]
                    )
                except jwt.PyJWTError:
                    return 401, fake.kling_envelope(None, 1004, "Authorization is invalid")
                if claims.get("iss") != API_KEY:
                    return 401, fake.kling_envelope(None, 1002, "Authorization is invalid")
            return None

        def _new_job(self, endpoint: str, data: dict, webhook: str) -> FakeJob:
            wanted = data.get("duration") or 1
            seconds = fake.deliver_seconds or float(wanted)
            job = FakeJob(uuid.uuid4().hex[:16], endpoint, data, webhook, "queued", fake.outcome)
            job.seconds = seconds
            fake.jobs[job.id] = job
            if fake.auto_complete is not None and webhook:
                threading.Timer(fake.auto_complete, fake.complete_and_call_back, [job.id]).start()
            return job

        def _progress(self, job_id: str) -> FakeJob | None:
            job = fake.jobs.get(job_id)
            if job is not None:
                fake.step(job)
            return job

        def _replicate(self, call: Call) -> tuple[int, Any]:
            path = call.path
            if call.method == "POST" and path.endswith("/cancel"):
                job = fake.jobs.get(path.split("/")[3])
                if job is None:
                    return 404, {"detail": "Not found."}
                job.status = "canceled"
                return fake._replicate_state(job)
            if call.method == "POST":
                data = call.json()
                model = path.removeprefix("/v1/models/").removesuffix("/predictions")
                endpoint = data.get("version") if path == "/v1/predictions" else model
                job = self._new_job(endpoint, data["input"], data.get("webhook", ""))
                return 201, fake._replicate_state(job)[1]
            job = self._progress(path.split("/")[-1])
            return (404, {"detail": "Not found."}) if job is None else fake._replicate_state(job)

        def _fal(self, call: Call) -> tuple[int, Any]:
            path = call.path
            if "/requests/" not in path:
                data = call.json()
                job = self._new_job(path.strip("/"), data, call.query.get("fal_webhook", [""])[0])
                base = "/".join(path.strip("/").split("/")[:2])
                root = f"{fake.url}/{base}/requests/{job.id}"
                return 200, {
                    "request_id": job.id,
                    "response_url": root,
                    "status_url": f"{root}/status",
                    "cancel_url": f"{root}/cancel",
                    "queue_position": 0,
                }
            job_id = path.split("/requests/")[1].split("/")[0]
            job = fake.jobs.get(job_id)
            if job is None:
                return 404, {"detail": "Request not found"}
            if path.endswith("/cancel"):
                if job.status not in ("queued", "running"):
                    return 400, {"status": "ALREADY_COMPLETED"}
                job.status = "canceled"
                return 202, {"status": "CANCELLATION_REQUESTED"}
            if path.endswith("/status"):
                fake.step(job)
                return fake._fal_state(job)
            if job.status == "succeeded":
                return 200, {"video": {"url": fake.video_url(job), "content_type": "video/mp4"}}
            return 422, {"detail": [fake._fal_error(job)]}

        def _kling(self, call: Call) -> tuple[int, Any]:
            path = call.path
            if call.method == "POST":
                data = call.json()
                kind = path.split("/")[-1]
                if kind == "image2video" and not data.get("image"):
                    return 400, fake.kling_envelope(None, 1201, "image is required")
                job = self._new_job(
                    f"{kind}:{data['model_name']}", data, data.get("callback_url", "")
                )
                return 200, fake.kling_envelope(
                    {
                        "task_id": job.id,
                        "task_status": "submitted",
                        "created_at": 1,
                        "updated_at": 1,
                    }
                )
            kind, job_id = path.split("/")[-2:]
            job = fake.jobs.get(job_id)
            if job is None or not job.endpoint.startswith(f"{kind}:"):
                return 404, fake.kling_envelope(None, 1203, "task not found")
            fake.step(job)
            return fake._kling_state(job)

        def _runway(self, call: Call) -> tuple[int, Any]:
            path = call.path
            if call.method == "POST":
                data = call.json()
                if path == "/v1/image_to_video" and not data.get("promptImage"):
                    return 400, {"error": "promptImage is required"}
                job = self._new_job(f"{path.split('/')[-1]}:{data['model']}", data, "")
                return 200, {"id": job.id}
            job = fake.jobs.get(path.split("/")[-1])
            if job is None:
                return 404, {"error": "Task not found"}
            if call.method == "DELETE":
                job.status = "canceled"
                return 204, None
            fake.step(job)
            return fake._runway_state(job)

    return Handler


def start_fake(kind: str, reference: ModuleType) -> tuple[FakeProvider, ThreadingHTTPServer]:
    fake = FakeProvider(kind, reference)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return fake, server
