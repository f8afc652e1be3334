"""Hold + settle throughput on one wallet against a bare conditional `UPDATE` round trip.

Both run in the same process against the same throwaway database, so the ratio says what
the ledger's bookkeeping (locks, lots, allocations, entries, consumption rows) costs per
charged take over the cheapest possible "debit a balance" statement.
"""

from __future__ import annotations

import time

from django.db import connection, connections, transaction
from django.test.utils import setup_databases, teardown_databases

ITERATIONS = 300


def _timed(fn, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return time.perf_counter() - start


def main() -> dict:
    connections["default"].settings_dict.setdefault("TEST", {})["NAME"] = "bench_ledger"
    old = setup_databases(verbosity=0, interactive=False)
    try:
        from accounts.actions import create_workspace
        from billing import ledger
        from billing.models import CreditSource
        from conftest import make_user

        user = make_user("bench@example.com")
        workspace = create_workspace(user, "Bench")
        ledger.grant_credits(
            workspace, 10 * ITERATIONS, source=CreditSource.PURCHASE, idempotency_key="bench"
        )
        wallet = ledger.get_wallet(workspace)

        def bare_update(i: int) -> None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE billing_wallet SET balance = balance - 1 "
                    "WHERE id = %s AND balance >= 1",
                    [wallet.pk],
                )
                assert cursor.rowcount == 1
            with connection.cursor() as cursor:  # put it back: the ledger stays consistent
                cursor.execute(
                    "UPDATE billing_wallet SET balance = balance + 1 WHERE id = %s", [wallet.pk]
                )

        def hold_and_settle(i: int) -> None:
            with transaction.atomic(durable=True):
                hold = ledger.place_hold(workspace, 5, idempotency_key=f"bench-h{i}")
            with transaction.atomic(durable=True):
                ledger.settle_hold(hold, 3, idempotency_key=f"bench-s{i}")

        _timed(bare_update, 20)  # warm the connection
        baseline = _timed(bare_update, ITERATIONS) / 2  # two statements per call above
        ledger_time = _timed(hold_and_settle, ITERATIONS)
        problems = ledger.audit_wallets()
        per_update = baseline / ITERATIONS * 1e3
        per_take = ledger_time / ITERATIONS * 1e3
        result = {
            "bare_update_ms": round(per_update, 3),
            "hold_settle_ms": round(per_take, 3),
            "ratio": round(per_take / per_update, 1),
            "audit_clean": not problems,
        }
        print(
            f"bare conditional UPDATE: {per_update:.3f} ms; hold+settle (2 transactions): "
            f"{per_take:.3f} ms; ratio {result['ratio']}× (ledger_audit clean: "
            f"{result['audit_clean']})"
        )
        return result
    finally:
        teardown_databases(old, verbosity=0)
