"""Pages that show takes cost a fixed number of queries however many takes they show:
queue places come from one query per page (`generation.queue.queue_positions`), not one
COUNT per card on a grid that polls every 2 s."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conftest import client_for
from generation.models import Take, TakeStatus
from generation.submission import TakeSpec, submit_takes
from generation.tests.helpers import fund, setup_catalog, subscribe

pytestmark = pytest.mark.django_db

# The grid partial, a project page and a take page, as measured when this test was
# written; a page may get cheaper, but not dearer per take.
MOST_QUERIES = 25


@pytest.fixture(autouse=True)
def _no_broker():
    with mock.patch("workers.tasks.dispatch_takes.delay"):
        yield


def _add_takes(user, workspace, count: int) -> list[Take]:
    spec = TakeSpec(
        model="wan2.1-t2v-1.3b",
        prompt="a lighthouse at dusk",
        resolution="480p",
        duration=1,
        count=count,
    )
    key = f"grid-{Take.objects.count()}"
    return submit_takes(workspace, user, spec, idempotency_key=key)


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


def test_grid_project_and_take_pages_cost_the_same_for_2_and_14_takes(alice, acme, charlie):
    setup_catalog()
    fund(acme, 1000)
    subscribe(acme, "studio")
    client = client_for(alice, acme)
    [first, second] = _add_takes(alice, acme, 2)
    project = first.shot.project
    pages = ["/studio/takes/", f"/projects/{project.pk}/", f"/takes/{first.pk}/"]
    few = [_queries(client, url) for url in pages]
    for _ in range(3):
        _add_takes(alice, acme, 4)
    assert Take.objects.filter(workspace=acme, status=TakeStatus.QUEUED).count() == 14
    many = [_queries(client, url) for url in pages]
    assert many == few, dict(zip(pages, zip(few, many, strict=True), strict=True))
    assert max(many) <= MOST_QUERIES, many
    # The cards show their places in the queue (the studio class goes first, by age).
    grid = client.get("/studio/takes/").content.decode()
    assert "#1 in queue" in grid and "#14 in queue" in grid
    assert client_for(charlie).get(f"/takes/{first.pk}/").status_code == 404
