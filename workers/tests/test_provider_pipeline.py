"""Provider takes end to end: a real Celery worker (with beat) on PostgreSQL and Redis,
the live Django server receiving the providers' webhooks over HTTP, and the local fake
providers serving real MP4 files. Nothing leaves the machine."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.files.storage import default_storage

from billing.models import Hold, HoldStatus
from conftest import client_for
from generation.models import Take, TakeStatus
from generation.tests.helpers import fund, setup_catalog, wallet
from workers import media
from workers.models import JobStatus, ProviderJob

from .live import Workers, wait_until
from .provider_support import make_provider, only_upstream, route
from .test_pipeline import submit, take_status

pytestmark = pytest.mark.django_db(transaction=True)
MODEL = "wan2.1-t2v-1.3b"


@pytest.fixture(autouse=True)
def _media_shared_with_workers(shared_media):
    """Media in one folder shared with the worker subprocesses."""


@pytest.fixture
def workers(workers) -> Workers:
    """The live workers (flushed Redis, embedded beat), polling providers every second."""
    workers.env["PROVIDER_POLL_SECONDS"] = "1"
    return workers


@pytest.fixture
def upstream_only(settings, live_server):
    settings.PUBLIC_BASE_URL = live_server.url
    setup_catalog(base_url="http://127.0.0.1:9")
    only_upstream(MODEL)


def done(take_id) -> bool:
    return take_status(take_id) in (TakeStatus.SUCCEEDED, TakeStatus.FAILED)


def test_take_fails_over_to_the_second_provider_and_is_settled_by_the_worker(
    alice, acme, charlie, upstream_only, fakes, workers
):
    fund(acme, 100)
    fakes["replicate"].faults.append("429")
    fal = fakes["fal"]
    fal.auto_complete = 0.5
    replicate_row = make_provider(fakes["replicate"])
    fal_row = make_provider(fal)
    route(MODEL, replicate_row, 10)
    route(MODEL, fal_row, 20)
    workers.start()
    client = client_for(alice, acme)
    [body] = submit(client, duration=2)
    wait_until(lambda: done(body["id"]))
    take = Take.objects.get(pk=body["id"])
    assert take.status == TakeStatus.SUCCEEDED, take.error
    assert take.provider_id == fal_row.pk and take.attempts == 2
    jobs = list(ProviderJob.objects.filter(take=take).order_by("attempt"))
    assert [(j.provider_id, j.status) for j in jobs] == [
        (replicate_row.pk, JobStatus.FAILED_OVER),
        (fal_row.pk, JobStatus.SUCCEEDED),
    ]
    # The output was copied into storage and measured by the platform.
    info = media.probe(default_storage.path(take.output_original))
    assert info.codec == "h264" and abs(info.duration_seconds - 2) < 0.1
    assert take.charged == 4 and take.provider_cost == Decimal("2.0")
    assert Hold.objects.get(pk=take.hold_id).status == HoldStatus.SETTLED
    assert (wallet(acme).balance, wallet(acme).held) == (96, 0)
    assert client.get(f"/api/v1/takes/{take.pk}/").json()["status"] == "succeeded"
    assert client_for(charlie).get(f"/api/v1/takes/{take.pk}/").status_code == 404


def test_runway_take_is_polled_to_completion_by_beat(
    alice, acme, charlie, upstream_only, fakes, workers
):
    fund(acme, 100)
    route(MODEL, make_provider(fakes["runway"]), 10)
    workers.start()
    client = client_for(alice, acme)
    [body] = submit(client, duration=1)
    wait_until(lambda: done(body["id"]))
    take = Take.objects.get(pk=body["id"])
    assert take.status == TakeStatus.SUCCEEDED, take.error
    assert take.charged == 2 and take.provider_cost == Decimal("1.75")
    assert len(fakes["runway"].submissions()) == 1
    assert client_for(charlie).get(f"/api/v1/takes/{take.pk}/").status_code == 404
