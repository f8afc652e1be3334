"""Run the whole embedded platform in one foreground process group.

Starts the web server, a Celery worker, Celery beat and the processes other apps add
(`stack_processes()` below); Ctrl-C (SIGINT to the group) or SIGTERM stops all of them,
and if any one exits the rest are stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

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


class Command(BaseCommand):
    help = "Run web, worker, beat (and the reference node) until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host: str, port: int, **options) -> None:
        for folder in ("queue", "processed", "control"):
            os.makedirs(settings.VAR_DIR / "broker" / folder, exist_ok=True)
        children: dict[str, subprocess.Popen] = {}
        stopping = False

        def stop(*_args) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for name, argv, extra_env, *workdir in stack_processes(host, port):
            env = {**os.environ, **extra_env}
            cwd = workdir[0] if workdir else settings.BASE_DIR
            children[name] = subprocess.Popen(argv, env=env, cwd=cwd)
            self.stdout.write(f"started {name} (pid {children[name].pid})")
        self.stdout.write(self.style.SUCCESS(f"Retake is running on http://{host}:{port}/"))
        while not stopping:
            exited = [name for name, proc in children.items() if proc.poll() is not None]
            if exited:
                self.stderr.write(f"{', '.join(exited)} exited; stopping the stack")
                break
            time.sleep(0.5)
        for proc in children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in children.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.stdout.write("stopped")
