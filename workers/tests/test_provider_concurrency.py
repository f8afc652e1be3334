"""Concurrent dispatchers on PostgreSQL never place more takes at a provider than its
concurrency limit (provider rows are claimed like node slots)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from generation.models import Take, TakeStatus
from generation.submission import TakeSpec, submit_takes
from generation.tests.helpers import fund, setup_catalog, subscribe
from workers import dispatch

from .provider_support import make_provider, only_upstream, route

pytestmark = pytest.mark.django_db(transaction=True)
MODEL = "wan2.1-t2v-1.3b"


def test_parallel_dispatchers_respect_each_providers_limit(fakes, alice, acme):
    setup_catalog(base_url="http://127.0.0.1:9")
    only_upstream(MODEL)
    fund(acme, 1000)
    subscribe(acme, "studio")
    small = make_provider(fakes["replicate"], max_concurrency=2)
    large = make_provider(fakes["fal"], max_concurrency=3)
    route(MODEL, small, 10)
    route(MODEL, large, 20)
    spec = TakeSpec(model=MODEL, prompt="rain on neon", resolution="480p", duration=1, count=8)
    submit_takes(acme, alice, spec, idempotency_key="parallel")
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def dispatcher() -> None:
        try:
            start.wait()
            for _ in range(6):
                dispatch.claim_next()
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    placed = Take.objects.filter(status=TakeStatus.DISPATCHING)
    # A dispatcher that finds the provider rows locked by another skips this round, so how
    # many land concurrently depends on timing; never more than each limit does not.
    assert placed.filter(provider=small).count() <= 2
    assert placed.filter(provider=large).count() <= 3
    while dispatch.claim_next() is not None:
        pass
    assert placed.filter(provider=small).count() == 2
    assert placed.filter(provider=large).count() == 3
    assert Take.objects.filter(status=TakeStatus.QUEUED).count() == 3
