"""A double-clicked Generate on PostgreSQL: two requests with one idempotency key race,
and the workspace ends up with one set of takes and one hold per take."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from billing.models import Hold, HoldStatus
from generation.models import Submission, Take
from generation.submission import TakeSpec, submit_takes

from .helpers import fund, setup_catalog, subscribe, wallet

pytestmark = pytest.mark.django_db(transaction=True)


def test_racing_submissions_with_one_key_hold_credits_once(alice, acme, monkeypatch):
    monkeypatch.setattr("workers.tasks.dispatch_takes.delay", lambda *a, **k: None)
    setup_catalog()
    fund(acme, 1000)
    subscribe(acme, "pro")
    spec = TakeSpec(
        model="wan2.1-t2v-1.3b", prompt="two clicks", resolution="480p", duration=2, count=3
    )
    start = threading.Barrier(4)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def click() -> None:
        try:
            start.wait()
            takes = submit_takes(acme, alice, spec, idempotency_key="double-click")
            results.append(sorted(str(take.pk) for take in takes))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(results) == 4 and all(ids == results[0] for ids in results)
    assert Submission.objects.count() == 1 and Take.objects.count() == 3
    holds = Hold.objects.filter(workspace=acme)
    assert holds.count() == 3 and all(h.status == HoldStatus.PENDING for h in holds)
    assert wallet(acme).held == sum(h.amount for h in holds) == 12
