"""Many processes, each with its own PostgreSQL connection, spend one wallet at once."""

from __future__ import annotations

import multiprocessing
import time
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum

from accounts.models import Membership
from billing.ledger import get_wallet, grant_credits
from billing.models import CreditLot, CreditSource, Hold, HoldStatus
from billing.tests.concurrency_worker import spend

# Runs processes outside pytest: `--clock` can't move their clocks.
pytestmark = pytest.mark.live

PROCESSES = 6
INITIAL = 300
BOB_CAP = 60


def _database_url() -> str:
    db = settings.DATABASES["default"]
    return (
        f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )


@pytest.mark.django_db(transaction=True)
def test_concurrent_spenders_never_overspend_one_wallet(acme, alice, bob, charlie):
    Membership.objects.filter(workspace=acme, user=bob).update(monthly_spend_cap=BOB_CAP)
    grant_credits(acme, INITIAL - 100, source=CreditSource.PURCHASE, idempotency_key="buy")
    grant_credits(acme, 100, source=CreditSource.PROMOTION, idempotency_key="promo")
    outsider = charlie.workspaces.get()
    grant_credits(outsider, 50, source=CreditSource.PURCHASE, idempotency_key="charlie")
    connection.close()  # nothing shared with the children

    start_at = time.time() + 4
    users = [alice.pk if i % 2 else bob.pk for i in range(PROCESSES)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(PROCESSES) as pool:
        results = pool.starmap(
            spend,
            [(_database_url(), acme.pk, users[i], i, start_at) for i in range(PROCESSES)],
        )

    charged = sum(r["charged"] for r in results)
    wallet = get_wallet(acme)
    holds = Hold.objects.filter(workspace=acme)
    assert sum(r["refused"] for r in results) > 0, "the wallet was never contended at its limit"
    assert holds.filter(idempotency_key="shared-key").count() == 1
    shared = holds.get(idempotency_key="shared-key")
    assert shared.status == HoldStatus.PENDING
    # Everything charged came out of the wallet, and no more than it had.
    assert wallet.balance == INITIAL - charged - shared.amount
    assert wallet.held == shared.amount
    assert 0 <= wallet.balance and charged <= INITIAL
    assert not CreditLot.objects.filter(remaining__lt=0).exists()
    assert holds.aggregate(s=Sum("charged"))["s"] == charged
    bob_spent = holds.filter(member=bob).exclude(status=HoldStatus.RELEASED)
    bob_total = sum(h.charged if h.status == "settled" else h.amount for h in bob_spent)
    assert bob_total <= BOB_CAP
    assert get_wallet(outsider).balance == 50

    out = StringIO()
    call_command("ledger_audit", stdout=out)
    assert "all consistent" in out.getvalue()
