import os
import subprocess
import sys

import pytest
from django.conf import settings

from config.startup import DOCUMENTED_NODE_TOKEN as NODE_TOKEN
from config.startup import EMBEDDED_SECRET_KEY

# Runs processes outside pytest: `--clock` can't move their clocks.
pytestmark = pytest.mark.live

PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "x" * 20 + "production-secret-with-enough-entropy-0123456789abcdef",
    "ALLOWED_HOSTS": "retake.example.com",
    "PUBLIC_BASE_URL": "https://retake.example.com",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_COOKIES": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "BEHIND_PROXY": "1",
    "REFERENCE_NODE_TOKEN": "a-node-token-of-this-deployment",
}


def _check(extra: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, **extra}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_reports_nothing_with_production_values():
    result = _check(PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_complains_about_embedded_defaults():
    result = _check({"DEBUG": "1", "SECRET_KEY": ""})
    assert result.returncode != 0


def test_check_refuses_the_embedded_secrets_outside_debug():
    result = _check(
        {**PRODUCTION_ENV, "SECRET_KEY": EMBEDDED_SECRET_KEY, "REFERENCE_NODE_TOKEN": NODE_TOKEN}
    )
    assert result.returncode != 0
    assert "retake.E001" in result.stdout + result.stderr
    assert "SECRET_KEY and REFERENCE_NODE_TOKEN" in result.stdout + result.stderr


def test_gunicorn_and_celery_refuse_the_embedded_secrets_outside_debug():
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": EMBEDDED_SECRET_KEY}
    for code in (
        "import config.wsgi",
        "from config.celery import _refuse_embedded_secrets as r; r()",
    ):
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=settings.BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0, code
        assert "embedded defaults" in result.stderr, result.stderr[-500:]
    embedded = {**env, "DEBUG": "1"}
    ok = subprocess.run(
        [sys.executable, "-c", "import config.wsgi"],
        cwd=settings.BASE_DIR,
        env=embedded,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr[-500:]
