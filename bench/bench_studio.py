"""The studio under load: 50 signed-in creators (locust, headless, bounded in time) poll
their take grids while takes render, open takes, check a take's status and ask for
quotes, against the platform served by gunicorn on this machine.

Baseline, in the same run and from the same users: `/bench/bare/`, a DRF view with the
project's authentication and permission defaults and nothing else
(`bench/studio/urls.py`). Goal: p99 of the grid poll ≤ 4× p99 of the bare endpoint.

Real parts: a scratch PostgreSQL database, gunicorn with the platform's config (3
workers × 4 threads on this 2-core machine), takes made by `submit_takes`; a thread moves
the running takes' progress and finishes and queues takes while the users browse.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from django.conf import settings
from django.db import connection
from django.db.models import F

from bench.scratch import scratch_database

logging.getLogger("httpx").setLevel(logging.WARNING)

QUICK = os.environ.get("BENCH_QUICK") == "1"
USERS = 5 if QUICK else 50
SECONDS = 8 if QUICK else 40
TAKES_PER_USER = 24  # a full grid (generation.views.GRID_SIZE)


def _seed() -> list[dict]:
    """USERS creators on the Pro plan, each with a grid of takes in every state."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from config.celery import app
    from conftest import make_user
    from generation.models import Take, TakeStatus
    from generation.submission import TakeSpec, submit_takes
    from generation.tests.helpers import fund, setup_catalog, subscribe

    # Nothing dispatches the seeded takes: their messages go nowhere, not to the broker
    # that a test suite's workers may be listening on.
    app.conf.broker_url = "memory://"
    setup_catalog()
    identities = []
    for n in range(USERS):
        user = make_user(f"creator{n}@example.com")
        workspace = user.workspaces.get()
        fund(workspace, 1_000_000)
        subscribe(workspace, "pro")
        spec = TakeSpec(
            model="wan2.1-t2v-1.3b", prompt=f"shot {n}", resolution="480p", duration=5, count=8
        )
        takes = []
        for batch in range(TAKES_PER_USER // spec.count):
            takes += submit_takes(workspace, user, spec, idempotency_key=f"seed-{n}-{batch}")
        ids = [take.pk for take in takes]
        # A third finished, a third rendering, a third queued (as submitted).
        Take.objects.dangerously_unscoped().filter(pk__in=ids[0::3]).update(
            status=TakeStatus.SUCCEEDED
        )
        Take.objects.dangerously_unscoped().filter(pk__in=ids[1::3]).update(
            status=TakeStatus.RUNNING, progress=10
        )
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        identities.append({"session": session.session_key, "takes": [str(i) for i in ids]})
    return identities


def _render(stop: threading.Event) -> None:
    """Takes render meanwhile: progress moves, a few finish and as many are queued."""
    from generation.models import Take, TakeStatus

    takes = Take.objects.dangerously_unscoped()
    while not stop.wait(0.5):
        running = takes.filter(status=TakeStatus.RUNNING)
        running.filter(progress__lt=95).update(progress=F("progress") + 5)
        done = list(running.filter(progress__gte=95).values_list("pk", flat=True)[:5])
        takes.filter(pk__in=done).update(status=TakeStatus.SUCCEEDED, progress=100)
        queued = list(takes.filter(status=TakeStatus.QUEUED).values_list("pk", flat=True)[:5])
        takes.filter(pk__in=queued).update(status=TakeStatus.RUNNING, progress=0)
    connection.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(db_name: str, port: int) -> subprocess.Popen:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.studio.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db_name}",
        "DB_CONN_MAX_AGE": "60",
        "DEBUG": "0",
        "SECRET_KEY": settings.SECRET_KEY,
        "LOG_LEVEL": "WARNING",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "3",
        "GUNICORN_THREADS": "4",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi:application",
         "-c", "platform/gunicorn.conf.py", "--access-logfile", "/dev/null"],
        cwd=settings.BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _wait_up(url: str, identity: dict, timeout: float = 120) -> None:
    """Until gunicorn answers; then warm every worker on every endpoint measured."""
    headers = {"Cookie": f"sessionid={identity['session']}"}
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = httpx.get(f"{url}/bench/bare/", headers=headers)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start") from None
            time.sleep(0.2)
    if r.status_code != 200:
        raise RuntimeError(f"/bench/bare/ answered {r.status_code}: {r.text[:300]}")
    take = identity["takes"][0]
    paths = ["/bench/bare/", "/studio/takes/", f"/takes/{take}/", f"/takes/{take}/status/"]
    with httpx.Client(base_url=url, headers=headers) as client:
        for _ in range(6):
            for path in paths:
                client.get(path).raise_for_status()


def _locust(url: str, users_file: str, out: str) -> dict[str, dict]:
    env = {**os.environ, "BENCH_STUDIO_USERS": users_file}
    subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(Path(__file__).parent / "studio/locustfile.py"),
         "--headless", "-u", str(USERS), "-r", str(USERS), "-t", f"{SECONDS}s",
         "--host", url, "--csv", out, "--only-summary", "--loglevel", "WARNING"],
        cwd=settings.BASE_DIR, env=env, check=False, capture_output=True, timeout=SECONDS + 120,
    )  # fmt: skip
    with open(f"{out}_stats.csv") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def main() -> dict:
    with scratch_database("studio") as db_name:
        identities = _seed()
        connection.close()
        work = tempfile.mkdtemp(prefix="bench-studio-")
        users_file = os.path.join(work, "users.json")
        with open(users_file, "w") as f:
            json.dump(identities, f)
        port = _free_port()
        server = _serve(db_name, port)
        stop = threading.Event()
        renderer = threading.Thread(target=_render, args=(stop,), daemon=True)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_up(url, identities[0])
            renderer.start()
            stats = _locust(url, users_file, os.path.join(work, "locust"))
        finally:
            stop.set()
            renderer.join(timeout=10)
            server.terminate()
            server.wait(timeout=30)
            connection.close()
    print(f"{USERS} signed-in users for {SECONDS} s (locust, headless), gunicorn 3x4 threads")
    print(f"  {'endpoint':<12} {'requests':>8} {'failures':>8} {'median':>8} {'p99':>8}")
    for name in ("bare DRF", "poll grid", "open take", "take status", "quote"):
        row = stats.get(name)
        if row:
            print(
                f"  {name:<12} {row['Request Count']:>8} {row['Failure Count']:>8} "
                f"{row['50%']:>6}ms {row['99%']:>6}ms"
            )
    failures = int(stats["Aggregated"]["Failure Count"])
    bare, grid = float(stats["bare DRF"]["99%"]), float(stats["poll grid"]["99%"])
    print(f"  ratio p99 poll grid / p99 bare DRF: {grid / bare:.2f}x (goal <= 4x)")
    if failures:
        raise RuntimeError(f"{failures} requests failed")
    return {"p99_ratio": grid / bare}
