"""Fixtures for tests that run the whole platform live: a live Django server, real Celery
worker subprocesses (with beat) on the test database and Redis, and two real reference
nodes (Cog servers) uploading to the live server. Used by the pipeline and browser tests;
registered suite-wide from the root conftest (`pytest_plugins`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from django.conf import settings
from django.db import connection

from generation.models import Node, Take
from generation.tests.helpers import NODE_TOKEN, setup_catalog

from .conftest import start_node, stop_node

SHARED_MEDIA = Path(tempfile.mkdtemp(prefix="retake-pipeline-media-"))
atexit.register(shutil.rmtree, SHARED_MEDIA, ignore_errors=True)


@pytest.fixture
def shared_media(settings) -> Path:
    """One media root shared with the worker subprocesses (overrides the suite's per-test one)."""
    settings.MEDIA_ROOT = SHARED_MEDIA
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(SHARED_MEDIA), "base_url": "/media/"},
        },
    }
    return SHARED_MEDIA


@pytest.fixture(scope="session")
def node_pair(live_server) -> Iterator[list[str]]:
    """Two single-slot reference nodes uploading to the live server's ingest endpoint."""
    upload = f"{live_server.url}/ingest/{NODE_TOKEN}/"
    started = [start_node(upload_url=upload) for _ in range(2)]
    yield [url for url, _ in started]
    for _, proc in started:
        stop_node(proc)


class Workers:
    """Celery worker subprocesses (with embedded beat) on the test database and Redis."""

    def __init__(self, live_url: str, tmp: Path) -> None:
        db = connection.settings_dict
        self.env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": "",
            "MEDIA_ROOT": str(SHARED_MEDIA),
            "STORAGE_BACKEND": "filesystem",
            "PUBLIC_BASE_URL": live_url,
            "TAKE_LEASE_SECONDS": "3",
            "DISPATCH_INTERVAL_MS": "500",
            "SWEEP_INTERVAL_MS": "1000",
            "NODE_DOWN_AFTER_FAILURES": "2",
            "NODE_TIMEOUT_SECONDS": "3",
            "RETAKE_VAR_DIR": str(tmp),
            "LOG_LEVEL": "WARNING",
            # The local fake providers serve their outputs from 127.0.0.1 over http.
            "OUTBOUND_TRUSTED_HOSTS": "127.0.0.1",
        }
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []

    def start(self) -> subprocess.Popen:
        argv = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "-B",
            "-Q", ",".join(settings.CELERY_QUEUES_ALL), "-c", "2", "-l", "WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-s", str(self.tmp / f"beat-{len(self.procs)}"),
            "-n", f"w{len(self.procs)}@%h",
        ]  # fmt: skip
        proc = subprocess.Popen(argv, env=self.env, cwd=settings.BASE_DIR, start_new_session=True)
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL the worker and its pool children (the whole process group)."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it and its children are gone already
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


@pytest.fixture
def broker():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    return client


@pytest.fixture
def workers(live_server, broker, tmp_path, settings) -> Iterator[Workers]:
    settings.PUBLIC_BASE_URL = live_server.url
    settings.TAKE_LEASE_SECONDS = 3  # the live server sets leases too (webhooks)
    pool = Workers(live_server.url, tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture
def catalog(node_pair, settings, live_server):
    """The demo models served by both reference nodes (one slot each)."""
    settings.PUBLIC_BASE_URL = live_server.url
    first = setup_catalog(base_url=node_pair[0])
    second = Node.objects.create(
        name="reference-2", pool=first.pool, base_url=node_pair[1], auth_token=NODE_TOKEN
    )
    second.served_models.set(first.served_models.all())
    for url in node_pair:
        wait_idle(url)
    return [first, second]


def wait_idle(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/health-check", timeout=2).json()["status"] == "READY":
            return
        time.sleep(0.1)
    raise AssertionError(f"node {url} still busy")


def wait_until(predicate: Callable[[], bool], timeout: float = 60, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    states = list(
        Take.objects.values_list("status", "attempts", "lease_expires_at", "node_id", "error")
    )
    raise AssertionError(f"timed out waiting; takes: {states}")
