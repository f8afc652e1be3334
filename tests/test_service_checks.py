"""`make test` fails at once, naming the service, when PostgreSQL or Redis does not answer."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

# Runs processes outside pytest: `--clock` can't move their clocks.
pytestmark = pytest.mark.live


def _pytest_with(**env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_celery_config.py", "-q"],
        cwd=settings.BASE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("env", "service"),
    [
        ({"DATABASE_URL": "postgres://postgres@127.0.0.1:1/retake"}, "PostgreSQL"),
        ({"REDIS_URL": "redis://127.0.0.1:1/9"}, "Redis"),
    ],
)
def test_a_silent_service_fails_the_run_with_its_name(env, service):
    result = _pytest_with(**env)
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"{service} is not answering" in result.stdout + result.stderr
    assert "passed" not in result.stdout
