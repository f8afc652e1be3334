"""docker-compose.yml can't run here (no Docker engine), so check that it can't rot:
every command a service runs must exist in this project."""

import importlib
import importlib.util
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands
from django.urls import resolve

from config.celery import app as celery_app

ROOT = Path(settings.BASE_DIR)
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
PROJECT_SERVICES = {name: svc for name, svc in SERVICES.items() if "build" in svc}


def _argv(command) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def _dockerfile_cmd(svc: dict) -> list[str]:
    text = (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).read_text()
    cmd_line = [line for line in text.splitlines() if line.startswith("CMD ")][-1]
    return yaml.safe_load(cmd_line[4:])


def _assert_command_exists(argv: list[str], workdir: Path) -> None:
    program = argv[0]
    if program == "gunicorn":
        module = argv[1].split(":")[0]
        assert importlib.util.find_spec(module), f"gunicorn app module {module} missing"
        config = argv[argv.index("-c") + 1]
        assert (ROOT / config).is_file(), f"gunicorn config {config} missing"
    elif program == "celery":
        assert argv[1:3] == ["-A", "config"]
        assert argv[3] in {"worker", "beat", "inspect"}
        if "-Q" in argv:
            queues = set(argv[argv.index("-Q") + 1].split(","))
            declared = {queue.name for queue in celery_app.conf.task_queues}
            assert queues <= declared, f"undeclared queues {queues - declared}"
    elif program == "python" and argv[1] == "manage.py":
        assert argv[2] in get_commands(), f"manage.py has no command {argv[2]}"
    elif program == "python" and argv[1] == "-m":
        assert importlib.util.find_spec(argv[2]), f"module {argv[2]} is not installed"
        if argv[2] == "cog.server.http":
            assert (workdir / "predict.py").is_file(), "the node image has no predict.py"
            assert (workdir / ".cog" / "openapi_schema.json").is_file()
            if "--upload-url" in argv:
                upload = argv[argv.index("--upload-url") + 1]
                upload = urlsplit(re.sub(r"\$\{REFERENCE_NODE_TOKEN:[-?][^}]*\}", "t", upload))
                match = resolve(upload.path + "x.mp4")
                assert match.url_name == "ingest", f"{upload} is not the ingest endpoint"
    elif program == "python" and argv[1] == "-c":
        compile(argv[2], "<healthcheck>", "exec")
    else:
        pytest.fail(f"unknown program in compose command: {argv}")


def _workdir(svc: dict) -> Path:
    dockerfile = svc["build"]["dockerfile"]
    if dockerfile.startswith("platform/nodes/"):
        return ROOT / Path(dockerfile).parent  # a node with its own image (diffusers)
    if "node" in dockerfile:
        return ROOT / "platform" / "nodes" / "reference"
    return ROOT


@pytest.mark.parametrize("name", sorted(PROJECT_SERVICES))
def test_every_project_service_runs_a_command_that_exists(name):
    svc = PROJECT_SERVICES[name]
    dockerfile = ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]
    assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
    argv = _argv(svc.get("command") or _dockerfile_cmd(svc))
    _assert_command_exists(argv, _workdir(svc))
    health = svc.get("healthcheck", {}).get("test")
    if health:
        _assert_command_exists(_argv(health)[1:], _workdir(svc))


def test_dockerfile_default_commands_exist():
    for svc in PROJECT_SERVICES.values():
        _assert_command_exists(_dockerfile_cmd(svc), _workdir(svc))


def test_stack_has_the_production_services_with_health_checks_and_volumes():
    expected = {"postgres", "redis", "minio", "web", "worker", "beat"}
    assert expected <= set(SERVICES)
    nodes = [n for n, s in PROJECT_SERVICES.items() if "node" in s["build"]["dockerfile"]]
    assert len(nodes) >= 2, "two reference GPU nodes"
    for name in ["postgres", "redis", "minio", "web", *nodes]:
        assert "healthcheck" in SERVICES[name], f"{name} has no health check"
    assert {"pgdata", "redisdata", "miniodata"} <= set(COMPOSE["volumes"])
    assert SERVICES["web"]["environment"]["STORAGE_BACKEND"] == "s3"


def test_gpu_profile_runs_a_diffusers_node_on_an_nvidia_gpu_and_registers_it():
    node = SERVICES["diffusers-node"]
    assert node["profiles"] == ["gpu"]
    assert "nvidia/cuda" in (ROOT / node["build"]["dockerfile"]).read_text()
    [device] = node["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert node["environment"]["RETAKE_NODE_MODEL"].startswith("${GPU_NODE_MODEL")
    assert "healthcheck" in node
    register = _argv(SERVICES["register-gpu-node"]["command"])
    assert register[:3] == ["python", "manage.py", "register_node"]
    assert register[3] == "gpu1=http://diffusers-node:5000" and "--model" in register
    assert SERVICES["register-gpu-node"]["profiles"] == ["gpu"]
