"""The embedded default: SQLite, the filesystem broker and files on disk, one process
group started by `manage.py runstack` (what `make run` execs) and stopped by Ctrl-C."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings

# Runs processes outside pytest: `--clock` can't move their clocks.
pytestmark = pytest.mark.live


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _embedded_env(var_dir: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update({"RETAKE_VAR_DIR": str(var_dir), "DEBUG": "1", "PYTHONUNBUFFERED": "1"})
    return env


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def stack_log_now(tmp_path: Path) -> str:
    return (tmp_path / "stack.log").read_text()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_one_command_runs_the_platform_without_services_and_ctrl_c_stops_it(tmp_path):
    env = _embedded_env(tmp_path)
    _manage(env, "migrate", "--noinput")
    seeded = _manage(env, "seed_demo")
    assert "demo@retake.local" in seeded and "admin@retake.local" in seeded
    assert _manage(env, "seed_demo") == seeded, "seeding twice must be idempotent"

    port = _free_port()
    node_port = _free_port()
    env["REFERENCE_NODE_PORT"] = str(node_port)
    log = (tmp_path / "stack.log").open("w")
    stack = subprocess.Popen(
        [sys.executable, "manage.py", "runstack", "--port", str(port)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        health = None
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                if health.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        stack_log = (tmp_path / "stack.log").read_text()
        assert health is not None and health.status_code == 200, stack_log
        assert (tmp_path / "retake.sqlite3").exists()

        # The reference GPU node is part of the stack and becomes READY.
        node_status = None
        while time.monotonic() < deadline and node_status != "READY":
            try:
                node_health = httpx.get(f"http://127.0.0.1:{node_port}/health-check", timeout=5)
                node_status = node_health.json()["status"]
            except httpx.HTTPError:
                time.sleep(0.3)
        assert node_status == "READY", (tmp_path / "stack.log").read_text()

        # A child that dies is restarted; the rest of the stack keeps running.
        worker_pid = int(re.search(r"started worker \(pid (\d+)\)", stack_log_now(tmp_path))[1])
        os.kill(worker_pid, signal.SIGKILL)
        restarted = None
        while time.monotonic() < deadline + 30 and restarted is None:
            pids = re.findall(r"started worker \(pid (\d+)\)", stack_log_now(tmp_path))
            restarted = next((int(p) for p in pids if int(p) != worker_pid), None)
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
            time.sleep(0.3)
        assert restarted, stack_log_now(tmp_path)
        assert f"worker (pid {worker_pid}) exited with -9" in stack_log_now(tmp_path)
        assert stack.poll() is None, "the stack stopped when one child died"

        # The worker shares the filesystem broker: a task sent from another process is consumed.
        queue = tmp_path / "broker" / "queue"
        _manage(
            env,
            "shell",
            "-c",
            "from accounts.tasks import purge_expired_invitations as t; t.delay()",
        )
        deadline = time.monotonic() + 60
        while any(queue.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert not any(queue.iterdir()), "the worker did not consume the task"
        time.sleep(1)
        assert "purge_expired_invitations" in (tmp_path / "stack.log").read_text()
    finally:
        os.killpg(stack.pid, signal.SIGINT)
        try:
            stack.wait(timeout=40)
        finally:
            log.close()
    deadline = time.monotonic() + 10
    while _group_alive(stack.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _group_alive(stack.pid), "a child survived Ctrl-C"
    # Everything the embedded stack writes stays in its var folder.
    assert not (Path(settings.BASE_DIR) / "control").exists(), "the broker wrote to the checkout"
    assert stack.returncode == 0, (tmp_path / "stack.log").read_text()


def test_the_supervisor_restarts_a_dying_child_with_backoff_and_leaves_the_rest():
    from workers.management.commands.runstack import Child, Supervisor

    lines: list[str] = []
    dying = Child("dying", [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ), ".")
    steady = Child("steady", [sys.executable, "-c", "import time; time.sleep(60)"], {}, ".")
    supervisor = Supervisor([dying, steady], lines.append, max_backoff=2)
    supervisor.start_all()
    steady_pid = steady.proc.pid
    try:
        deadline = time.monotonic() + 8
        while dying.restarts < 3 and time.monotonic() < deadline:
            supervisor.check()
            time.sleep(0.05)
    finally:
        supervisor.stop()
        supervisor.shutdown(timeout=5)
    exits = [line for line in lines if line.startswith("dying")]
    assert dying.restarts >= 3, lines
    assert "exited with 3" in exits[0] and "restarting it in 1 s" in exits[0]
    assert "restarting it in 2 s" in exits[1] and "restarting it in 2 s" in exits[2], exits
    assert steady.proc.pid == steady_pid and not any(line.startswith("steady (") for line in lines)
    assert steady.proc.poll() is not None, "shutdown stops every child"
