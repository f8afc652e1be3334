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


def stack_processes(host: str, port: int) -> list[tuple[str, list[str], dict[str, str]]]:
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
    ]


class Command(BaseCommand):
    help = "Run web, worker, beat (and the reference node) until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host: str, port: int, **options) -> None:
        for folder in ("queue", "processed"):
            os.makedirs(settings.VAR_DIR / "broker" / folder, exist_ok=True)
        children: dict[str, subprocess.Popen] = {}
        stopping = False

        def stop(*_args) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for name, argv, extra_env in stack_processes(host, port):
            env = {**os.environ, **extra_env}
            children[name] = subprocess.Popen(argv, env=env, cwd=settings.BASE_DIR)
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
