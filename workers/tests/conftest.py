"""Fixtures that run the real reference GPU node (the Cog HTTP server) and catch its calls.

`cog_node` starts `python -m cog.server.http` on the reference predictor once per test
session, with one slot (the production setting) and `--upload-url` pointing at `catcher`,
a small local HTTP server that records the node's webhooks (POST) and uploads (PUT).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from django.conf import settings

NODE_DIR = Path(settings.BASE_DIR) / "platform" / "nodes" / "reference"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_reference_predictor() -> ModuleType:
    """Import the reference node's predict.py by path (platform/ is not a package)."""
    spec = importlib.util.spec_from_file_location("reference_predict", NODE_DIR / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Caught:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Catcher:
    """Records every request; answers uploads with 201 and a Location like an ingest would."""

    url: str = ""
    requests: list[Caught] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def webhooks(self, prediction_id: str) -> list[dict]:
        with self.changed:
            found = [r.json() for r in self.requests if r.method == "POST"]
        return [body for body in found if body.get("id") == prediction_id]

    def uploads(self, prediction_id: str) -> list[Caught]:
        with self.changed:
            return [
                r
                for r in self.requests
                if r.method == "PUT" and r.headers.get("x-prediction-id") == prediction_id
            ]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out; caught {len(self.requests)} requests")
                self.changed.wait(remaining)

    def completed(self, prediction_id: str, timeout: float = 20) -> dict:
        def done() -> bool:
            return any(
                b.get("status") in {"succeeded", "failed", "canceled"}
                for b in self.webhooks(prediction_id)
            )

        self.wait_for(done, timeout)
        return self.webhooks(prediction_id)[-1]


def _handler(catcher: Catcher) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with catcher.changed:
                catcher.requests.append(
                    Caught(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
                catcher.changed.notify_all()
            return body

        def do_POST(self) -> None:
            self._record()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            # Stands in for a node whose proxy is failing.
            self._record()
            body = b'{"detail": "upstream unavailable"}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:
            self._record()
            self.send_response(201)
            self.send_header("Location", f"{catcher.url}/media/outputs{self.path}?signature=x")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture(scope="session")
def catcher() -> Iterator[Catcher]:
    catcher = Catcher()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(catcher))
    catcher.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield catcher
    server.shutdown()
    server.server_close()


def start_node(
    *,
    upload_url: str | None = None,
    max_concurrency: int = 1,
    node_dir: Path = NODE_DIR,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    wait: bool = True,
    port: int | None = None,
) -> tuple[str, subprocess.Popen]:
    """Start a node exactly as runstack does (the reference one unless told otherwise) and
    wait until it is READY (`wait=False`: return at once, then call `wait_started`)."""
    port = port or free_port()
    bin_dir = str(Path(python).parent)
    environ = {
        **os.environ,
        "COG_PREDICT_TYPE_STUB": "predict.py:Predictor",
        "COG_MAX_CONCURRENCY": str(max_concurrency),
        "COG_LOG_LEVEL": "WARNING",
        "PORT": str(port),
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        **(env or {}),
    }
    argv = [python, "-m", "cog.server.http", "--host", "127.0.0.1"]
    if upload_url:
        argv += ["--upload-url", upload_url]
    proc = subprocess.Popen(argv, cwd=node_dir, env=environ, stdout=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"
    if wait:
        wait_started(base_url, proc)
    return base_url, proc


def wait_started(base_url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"node {base_url} exited with {proc.returncode}")
        try:
            if httpx.get(f"{base_url}/health-check", timeout=1).json()["status"] == "READY":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"node {base_url} did not become READY in {timeout:.0f} s")


def stop_node(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_ready(base_url: str, timeout: float = 20) -> None:
    """Block until the node has no prediction running (tests share one single-slot node)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{base_url}/health-check", timeout=2).json()["status"] == "READY":
            return
        time.sleep(0.05)
    raise AssertionError("node still busy")


@pytest.fixture(scope="session")
def cog_node(catcher: Catcher) -> Iterator[str]:
    """Base URL of a running reference node (one slot, uploads go to `catcher`)."""
    base_url, proc = start_node(upload_url=f"{catcher.url}/ingest/")
    yield base_url
    stop_node(proc)


@pytest.fixture
def idle_node(cog_node: str) -> Iterator[str]:
    """The shared node, idle before and after the test."""
    wait_ready(cog_node)
    yield cog_node
    wait_ready(cog_node)


@pytest.fixture(scope="session")
def reference() -> ModuleType:
    return load_reference_predictor()


@pytest.fixture(scope="session")
def fake_servers(reference: ModuleType) -> Iterator[dict]:
    """One local fake per upstream provider (see fake_providers.py), for the session."""
    from .fake_providers import start_fake

    started = {
        kind: start_fake(kind, reference) for kind in ("replicate", "fal", "kling", "runway")
    }
    yield {kind: fake for kind, (fake, _) in started.items()}
    for _, server in started.values():
        server.shutdown()
        server.server_close()


@pytest.fixture
def fakes(fake_servers: dict, settings) -> dict:
    """The fake providers, with no jobs, calls or queued faults left from other tests
    (their outputs are on 127.0.0.1 over http: trusted here, as an on-premises host)."""
    settings.OUTBOUND_TRUSTED_HOSTS = ["127.0.0.1"]
    for fake in fake_servers.values():
        fake.reset()
    return fake_servers
