"""Run the whole embedded platform in one foreground process group.

Starts the web server, a Celery worker, Celery beat and the processes other apps add
(`stack_processes()` below) and supervises them: a child that dies is logged and started
again with backoff, the others keep running. Only Ctrl-C (SIGINT to the group) or SIGTERM
stops the stack.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.management.base import BaseCommand

REFERENCE_NODE_DIR = "platform/nodes/reference"


def reference_node_process() -> tuple[str, list[str], dict[str, str], str]:
    """The reference GPU node: the real Cog server running the CPU predictor, one slot.

    Outputs are PUT to the platform's ingest endpoint; webhooks carry their URLs.
    """
    bin_dir = os.path.dirname(sys.executable)
    argv = [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"]
    argv += ["--upload-url", f"{settings.PUBLIC_BASE_URL}/ingest/{settings.REFERENCE_NODE_TOKEN}/"]
    env = {
        "COG_PREDICT_TYPE_STUB": "predict.py:Predictor",
        "COG_MAX_CONCURRENCY": "1",
        "PORT": str(settings.REFERENCE_NODE_PORT),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return ("node", argv, env, str(settings.BASE_DIR / REFERENCE_NODE_DIR))


def stack_processes(host: str, port: int) -> list[tuple]:
    """(name, argv, extra env[, working directory]) of every process in the stack."""
    python = sys.executable
    celery = [python, "-m", "celery", "-A", "config"]
    return [
        ("web", [python, "manage.py", "runserver", f"{host}:{port}", "--noreload"], {}),
        (
            "worker",
            celery
            + ["worker", "-Q", ",".join(settings.CELERY_QUEUES_ALL), "-c", "2", "-l", "INFO"],
            {},
        ),
        ("beat", celery + ["beat", "-s", settings.CELERY_BEAT_SCHEDULE_FILENAME, "-l", "INFO"], {}),
        reference_node_process(),
    ]


@dataclass
class Child:
    """One supervised process and its restart bookkeeping."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    restarts: int = 0


class Supervisor:
    """Keeps every child running: one that exits is logged and started again after a
    backoff (1 s, doubling to `max_backoff` while it keeps dying within `stable_after`
    seconds of starting). Only `stop()` (Ctrl-C or SIGTERM) ends the stack."""

    def __init__(
        self, children: list[Child], log, *, max_backoff: float = 30.0, stable_after: float = 30.0
    ) -> None:
        self.children = children
        self.log = log
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.stopping = False

    def start(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.argv, env=child.env, cwd=child.cwd)
        child.started_at = time.monotonic()
        child.restart_at = None
        self.log(f"started {child.name} (pid {child.proc.pid})")

    def start_all(self) -> None:
        for child in self.children:
            self.start(child)

    def check(self) -> None:
        """One supervision pass: notice exits, schedule and perform restarts."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at and not self.stopping:
                    child.restarts += 1
                    self.start(child)
                continue
            code = child.proc.poll() if child.proc else None
            if code is None or self.stopping:
                continue
            lived = now - child.started_at
            child.failures = 1 if lived >= self.stable_after else child.failures + 1
            delay = min(self.max_backoff, 2 ** (child.failures - 1))
            child.restart_at = now + delay
            self.log(
                f"{child.name} (pid {child.proc.pid}) exited with {code} after {lived:.0f} s; "
                f"restarting it in {delay:.0f} s"
            )

    def run(self, interval: float = 0.5) -> None:
        while not self.stopping:
            self.check()
            time.sleep(interval)

    def stop(self, *_args) -> None:
        self.stopping = True

    def shutdown(self, timeout: float = 15) -> None:
        running = [c.proc for c in self.children if c.proc and c.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Command(BaseCommand):
    help = "Run web, worker, beat (and the reference node) until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host: str, port: int, **options) -> None:
        for folder in ("queue", "processed", "control"):
            os.makedirs(settings.VAR_DIR / "broker" / folder, exist_ok=True)
        children = [
            Child(name, argv, {**os.environ, **extra_env}, (workdir or [str(settings.BASE_DIR)])[0])
            for name, argv, extra_env, *workdir in stack_processes(host, port)
        ]

        def log(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        supervisor = Supervisor(children, log)
        signal.signal(signal.SIGINT, supervisor.stop)
        signal.signal(signal.SIGTERM, supervisor.stop)
        supervisor.start_all()
        self.stdout.write(self.style.SUCCESS(f"Retake is running on http://{host}:{port}/"))
        supervisor.run()
        supervisor.shutdown()
        self.stdout.write("stopped")
