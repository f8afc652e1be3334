"""How many statements one submission costs (issue 16; it was 26 for one take): a count
that only grows by a regression."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from generation.submission import TakeSpec, submit_takes

from .helpers import fund, setup_catalog, subscribe


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr("workers.tasks.dispatch_takes.delay", lambda *a, **k: None)


def _queries(fn) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        fn()
    skipped = ("SAVEPOINT", "RELEASE SAVEPOINT")  # the test's own transaction makes these
    return [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(skipped)]


def test_statements_per_submission(alice, acme):
    setup_catalog()
    fund(acme, 10_000)
    subscribe(acme, "pro")
    spec = TakeSpec(model="wan2.1-t2v-1.3b", prompt="a cat", resolution="480p", duration=5)
    submit_takes(acme, alice, spec, idempotency_key="warm")  # the inbox exists from here on
    one = _queries(lambda: submit_takes(acme, alice, spec, idempotency_key="one"))
    # model, plan, replay check, rate card, schedule, submission, inbox, the new shot's
    # place in the storyboard (count and last position, for "Shot N"), shot; the queue's
    # sort key (the workspace's latest usage counter and, as it has none this month, the
    # billing time zone); the hold (membership, wallet lock, one data-modifying
    # statement); the take.
    assert len(one) == 15, "\n".join(one)
    four = _queries(
        lambda: submit_takes(
            acme, alice, TakeSpec(**{**spec.__dict__, "count": 4}), idempotency_key="four"
        )
    )
    assert len(four) == len(one) + 3 * 4, "\n".join(four)  # per extra take: its hold, its row
