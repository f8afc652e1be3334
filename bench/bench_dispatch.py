"""Dispatch latency: from `submit_takes` returning to the node accepting the take (the
take is `running` after the node answered the PUT), with idle capacity, as a ratio to a
bare Celery task round trip on the same broker, measured in the same run. Target ≤ 3×.

Real parts: a scratch PostgreSQL database, Redis, one Celery worker subprocess and one
reference node (Cog server). A small local HTTP server takes the node's webhooks and
uploads (the web app is not part of what is measured).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import redis
from django.conf import settings
from django.db import connection

ROUNDS = 15


class _Sink(BaseHTTPRequestHandler):
    def _ok(self, status: int) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        self._ok(200)

    def do_PUT(self) -> None:
        self._ok(201)

    def log_message(self, *args) -> None:
        pass


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_node(upload_url: str) -> tuple[str, subprocess.Popen]:
    port = _free_port()
    env = {
        **os.environ,
        "COG_PREDICT_TYPE_STUB": "predict.py:Predictor",
        "COG_MAX_CONCURRENCY": "1",
        "COG_LOG_LEVEL": "WARNING",
        "PORT": str(port),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cog.server.http",
            "--host",
            "127.0.0.1",
            "--upload-url",
            upload_url,
        ],
        cwd=settings.BASE_DIR / "platform" / "nodes" / "reference",
        env=env,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, 60)
    return url, proc


def _wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health-check", timeout=1).json()["status"] == "READY":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"node at {url} not ready")


def _start_worker(db_name: str, sink_url: str) -> subprocess.Popen:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db_name}",
        "CELERY_BROKER_URL": "",
        "PUBLIC_BASE_URL": sink_url,
        # Persistent connections, as production runs workers.
        "DB_CONN_MAX_AGE": "60",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--include", "bench.tasks",
         "-Q", ",".join(settings.CELERY_QUEUES_ALL), "-c", "2", "-l", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=env,
        cwd=settings.BASE_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _baseline(client: redis.Redis) -> list[float]:
    from bench.tasks import ping

    samples = []
    for _ in range(ROUNDS + 3):
        key = f"bench:ping:{uuid.uuid4().hex}"
        started = time.perf_counter()
        ping.delay(key)
        client.blpop([key], timeout=30)
        samples.append(time.perf_counter() - started)
    return samples[3:]  # the first rounds warm the worker's connections


def _dispatch(user, workspace, node_url: str) -> list[float]:
    from generation.models import Take, TakeStatus
    from generation.submission import TakeSpec, submit_takes

    samples, after_commit = [], []
    for index in range(ROUNDS + 3):
        spec = TakeSpec(
            model="wan2.1-t2v-1.3b", prompt=f"bench {index}", resolution="480p", duration=1
        )
        started = time.perf_counter()
        [take] = submit_takes(workspace, user, spec, idempotency_key=f"bench-{index}")
        committed = time.perf_counter()
        query = Take.objects.dangerously_unscoped().filter(pk=take.pk, status=TakeStatus.RUNNING)
        while not query.exists():
            time.sleep(0.002)
        samples.append(time.perf_counter() - started)
        after_commit.append(time.perf_counter() - committed)
        _wait_ready(node_url)
        # Free the slot as settlement would (the web app is not running here).
        Take.objects.dangerously_unscoped().filter(pk=take.pk).update(status=TakeStatus.SUCCEEDED)
    return samples[3:], after_commit[3:]


def main() -> None:
    from conftest import make_user
    from generation.tests.helpers import fund, setup_catalog

    old_name = connection.settings_dict["NAME"]
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"bench_dispatch_{old_name}"
    db_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    sink_url = f"http://127.0.0.1:{sink.server_address[1]}"
    media = tempfile.mkdtemp(prefix="bench-media-")
    os.environ["MEDIA_ROOT"] = media
    node_url, node = _start_node(f"{sink_url}/ingest/")
    worker = _start_worker(db_name, sink_url)
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        setup_catalog(base_url=node_url)
        user = make_user("bench@example.com")
        workspace = user.workspaces.get()
        fund(workspace, 10_000)
        baseline = _baseline(client)
        dispatch, from_commit = _dispatch(user, workspace, node_url)
    finally:
        worker.terminate()
        node.terminate()
        worker.wait(timeout=20)
        node.wait(timeout=20)
        sink.shutdown()
        connection.creation.destroy_test_db(old_name, verbosity=0)
    base = statistics.median(baseline)
    median = statistics.median(dispatch)
    p95 = sorted(dispatch)[int(0.95 * (len(dispatch) - 1))]
    print(f"bare Celery round trip (median of {len(baseline)}): {base * 1000:.1f} ms")
    print(f"submit -> node accepted (median of {len(dispatch)}): {median * 1000:.1f} ms")
    print(f"  p95: {p95 * 1000:.1f} ms")
    print(f"  ratio to the bare round trip: {median / base:.2f}x (target <= 3x)")
    queued = statistics.median(from_commit)
    print(f"takes committed -> node accepted (median): {queued * 1000:.1f} ms")
    print(f"  ratio to the bare round trip: {queued / base:.2f}x")
