import os
import subprocess
import sys

import pytest
from django.conf import settings

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
