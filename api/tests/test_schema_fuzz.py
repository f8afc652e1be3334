"""schemathesis against `/api/v1/schema/`: a bounded number of generated requests to every
operation of the public API, with a key of a funded workspace. No answer may be a 5xx, and
every answer must match the schema (status code, content type, body)."""

from __future__ import annotations

import uuid

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from generation.models import RoughCut, RoughCutStatus
from generation.submission import inbox_for

pytestmark = pytest.mark.django_db

# Each operation gets this many generated requests (explicit examples come on top).
EXAMPLES_PER_OPERATION = 12
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def no_connection_closing():
    """As Django's test client does: keep the test's connection (and its transaction) open
    across WSGI requests."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def rough_cuts(pro_acme):
    """A finished and a queued rough cut, so their lists answer real objects (signed links,
    clips) for the schema check, not only empty pages."""
    project = inbox_for(pro_acme)
    clip = {"shot": 1, "title": "Rain", "take": str(uuid.uuid4()), "file": "rain.mp4"}
    RoughCut.objects.create(
        workspace=pro_acme,
        project=project,
        status=RoughCutStatus.SUCCEEDED,
        progress=100,
        clips=[{**clip, "frames": 16, "seconds": 1.0}],
        width=320,
        height=180,
        fps=24,
        duration_seconds=1.0,
        **{field: f"rough-cuts/fuzz/{kind}" for kind, field in RoughCut.FILES.items()},
    )
    RoughCut.objects.create(workspace=pro_acme, project=project)


def test_every_operation_answers_within_its_schema(
    settings, acme_key, rough_cuts, no_connection_closing
):
    settings.API_RATE_BURST = "100000/s"
    settings.API_RATE_SUSTAINED = "100000/hour"
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", get_wsgi_application())
    headers = {"Authorization": f"Bearer {acme_key}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25

    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        exercise()
