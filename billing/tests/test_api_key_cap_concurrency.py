"""An API key's monthly cap under racing holds on PostgreSQL: six holds of one key start
together, the cap has room for two, and exactly two are placed."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from accounts.api_keys import create_api_key
from billing import ledger
from billing.models import Hold
from generation.tests.helpers import fund, subscribe, wallet

pytestmark = pytest.mark.django_db(transaction=True)

RACERS = 6
AMOUNT = 10
CAP = 25  # room for two holds of 10, not three


def test_racing_holds_never_cross_an_api_keys_monthly_cap(alice, acme):
    subscribe(acme, "pro")  # a plan with API access
    fund(acme, 1000)
    key, _ = create_api_key(acme, name="racer", acting_user=alice, monthly_spend_cap=CAP)
    start = threading.Barrier(RACERS)
    outcomes: list[str] = []

    def hold(index: int) -> None:
        try:
            start.wait()
            with transaction.atomic(durable=True):
                ledger.place_hold(
                    acme, AMOUNT, idempotency_key=f"race-{index}", member=alice, api_key=key
                )
            outcomes.append("held")
        except ledger.ApiKeyCapExceeded:
            outcomes.append("capped")
        except BaseException as exc:  # surfaced by the assertion below
            outcomes.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["capped"] * (RACERS - 2) + ["held"] * 2
    assert Hold.objects.filter(api_key=key).count() == 2
    assert wallet(acme).held == 2 * AMOUNT
