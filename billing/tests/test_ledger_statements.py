"""The hot path's statement counts: a hold and a settlement are a few set-based
statements however many lots they touch (issue 16). A new query here is a regression."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.ledger import audit_wallets, grant_credits, place_hold, release_hold, settle_hold
from billing.models import CreditSource, HoldAllocation

# set-based (PostgreSQL) / portable: hold, settle, release, a member's hold
STATEMENTS = {"set-based": (2, 2, 2, 3), "portable": (5, 6, 5, 6)}


@pytest.fixture
def three_lots(acme, ledger_path):
    grant_credits(acme, 4, source=CreditSource.DAILY_FREE, idempotency_key="daily")
    grant_credits(acme, 4, source=CreditSource.PROMOTION, idempotency_key="promo")
    grant_credits(acme, 100, source=CreditSource.PURCHASE, idempotency_key="buy")
    return acme


def _statements(fn) -> int:
    with CaptureQueriesContext(connection) as queries:
        fn()
    skipped = ("SAVEPOINT", "RELEASE SAVEPOINT")  # the test's own transaction makes these
    return sum(not q["sql"].startswith(skipped) for q in queries.captured_queries)


def test_hold_and_settle_take_a_few_statements_across_three_lots(three_lots, ledger_path):
    hold_n, settle_n, _release_n, _member_n = STATEMENTS[ledger_path]
    holder = {}

    def hold():
        holder["hold"] = place_hold(three_lots, 10, idempotency_key="h")

    assert _statements(hold) == hold_n
    assert HoldAllocation.objects.filter(hold=holder["hold"]).count() == 3
    assert _statements(lambda: settle_hold(holder["hold"], 6, idempotency_key="s")) == settle_n
    assert audit_wallets() == []


def test_release_takes_no_more_statements_than_a_settlement(three_lots, ledger_path):
    hold = place_hold(three_lots, 10, idempotency_key="h")
    release = STATEMENTS[ledger_path][2]
    assert _statements(lambda: release_hold(hold, idempotency_key="r")) == release
    assert audit_wallets() == []


def test_a_member_without_a_cap_adds_one_statement(three_lots, bob, ledger_path):
    member = STATEMENTS[ledger_path][3]
    assert _statements(lambda: place_hold(three_lots, 3, idempotency_key="h", member=bob)) == member
