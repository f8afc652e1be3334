"""The ledger's hot path against the cheapest correct way to move credits, in one run.

Three measures, each against a baseline taken in the same run (interleaved where both run
in one process), on a scratch PostgreSQL database:

1. One client: hold + settle for one take (two transactions, as a take does them) against
   the *minimal correct debit* (one transaction: a conditional wallet `UPDATE … RETURNING`
   and one entry `INSERT`) and against a bare conditional `UPDATE` on the wallet (no
   transaction, no entry). Goal: ≤ 4× the minimal debit (hold + settle are two of them).
2. Eight client processes on one hot wallet: takes settled per second against minimal
   debits per second by eight clients on one wallet, phases alternating. Goal ≥ 0.25×.
3. Reading a balance (what the studio and the wallet page show: the wallet row and the
   credits available now) with 1,000 and with 1,000,000 ledger entries. Goal ≤ 1.5×.

`BENCH_QUICK=1` shrinks every measure to a few seconds (the test suite's check that the
benchmark still runs); `BENCH_LEDGER_ENTRIES=1000,1000000` sets the ledger sizes read.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time

from django.db import connection, transaction

from bench.scratch import scratch_database

QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = 3 if QUICK else 15  # interleaved rounds of the single-client measure
BATCH = 10 if QUICK else 40  # operations per round and kind
CLIENTS = 2 if QUICK else 8
PHASE_SECONDS = 0.5 if QUICK else 2.5
PHASES = 2 if QUICK else 3  # of each kind, alternating
ENTRIES = [int(n) for n in os.environ.get("BENCH_LEDGER_ENTRIES", "1000,1000000").split(",") if n]
if QUICK:
    ENTRIES = [1_000, 5_000]
READS = 50 if QUICK else 400


def _workspace(email: str, credits: int):
    from accounts.actions import create_workspace
    from billing import ledger
    from billing.models import CreditSource
    from conftest import make_user

    workspace = create_workspace(make_user(email), email.split("@")[0])
    ledger.grant_credits(
        workspace, credits, source=CreditSource.PURCHASE, idempotency_key=f"bench:{email}"
    )
    return workspace


def minimal_debit(wallet_id: int, workspace_id: int, key: str) -> None:
    """The least a correct debit can do: one transaction, a conditional `UPDATE` that
    refuses to overdraw, one append-only entry with the balance after it."""
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE billing_wallet SET balance = balance - 1 WHERE id = %s AND balance >= 1 "
            "RETURNING balance",
            [wallet_id],
        )
        [(balance,)] = cursor.fetchall()
        cursor.execute(
            "INSERT INTO billing_ledgerentry (wallet_id, workspace_id, kind, amount, held_delta, "
            "balance_after, reason, params, idempotency_key, created_at) "
            "VALUES (%s, %s, 'hold', -1, 0, %s, '', '{}', %s, now())",
            [wallet_id, workspace_id, balance, key],
        )


def bare_update(wallet_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE billing_wallet SET balance = balance - 1 WHERE id = %s AND balance >= 1",
            [wallet_id],
        )
        assert cursor.rowcount == 1


def hold_and_settle(workspace, key: str) -> None:
    """One take's ledger work: a hold at submission, a settlement at delivery."""
    from billing import ledger

    with transaction.atomic(durable=True):
        hold = ledger.place_hold(workspace, 5, idempotency_key=f"{key}:h")
    with transaction.atomic(durable=True):
        ledger.settle_hold(hold, 3, idempotency_key=f"{key}:s")


def _single_client() -> dict:
    from billing import ledger

    takes = _workspace("takes@example.com", 10_000_000)
    debits = _workspace("debits@example.com", 10_000_000)
    bare = _workspace("bare@example.com", 10_000_000)
    debit_wallet = ledger.get_wallet(debits)
    bare_wallet = ledger.get_wallet(bare)
    samples: dict[str, list[float]] = {"bare": [], "debit": [], "take": []}
    for index in range(-1, ROUNDS):  # round -1 warms the connection and the plans
        for kind, op in (
            ("bare", lambda i: bare_update(bare_wallet.pk)),
            ("debit", lambda i, r=index: minimal_debit(debit_wallet.pk, debits.pk, f"d{r}:{i}")),
            ("take", lambda i, r=index: hold_and_settle(takes, f"t{r}:{i}")),
        ):
            started = time.perf_counter()
            for i in range(BATCH):
                op(i)
            if index >= 0:
                samples[kind].append((time.perf_counter() - started) / BATCH)
    problems = ledger.audit_wallet(ledger.get_wallet(takes))
    ms = {kind: statistics.median(values) * 1e3 for kind, values in samples.items()}
    print(f"one client, {ROUNDS} interleaved rounds of {BATCH}, medians:")
    print(f"  bare conditional UPDATE:          {ms['bare']:7.3f} ms")
    print(f"  minimal correct debit (1 txn):    {ms['debit']:7.3f} ms")
    print(f"  hold + settle (2 txns):           {ms['take']:7.3f} ms")
    print(
        f"  ratio hold+settle / minimal debit: {ms['take'] / ms['debit']:.2f}x (goal <= 4x); "
        f"/ bare UPDATE: {ms['take'] / ms['bare']:.1f}x; ledger_audit clean: {not problems}"
    )
    return {
        "take_vs_debit": ms["take"] / ms["debit"],
        "take_vs_bare": ms["take"] / ms["bare"],
        "audit_clean": not problems,
    }


def _client(db_name: str, ids: dict, seed: int, ready, results) -> None:
    """One client process: alternating phases of minimal debits and of takes."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()  # (already done when the parent ran as `python -m bench`)
    connection.close()
    connection.settings_dict["NAME"] = db_name
    from accounts.models import Workspace

    takes = Workspace.objects.get(pk=ids["takes"])
    done = {"debit": 0, "take": 0}
    # Warm this process's connection before the clock starts.
    minimal_debit(ids["debit_wallet"], ids["debits"], f"c{seed}:warm")
    hold_and_settle(takes, f"c{seed}:warm")
    ready.wait()  # every client has started and warmed up
    start_at = time.time()
    for phase in range(2 * PHASES):
        kind = "debit" if phase % 2 == 0 else "take"
        until = start_at + (phase + 1) * PHASE_SECONDS
        i = 0
        while time.time() < until:
            if kind == "debit":
                minimal_debit(ids["debit_wallet"], ids["debits"], f"c{seed}:{phase}:{i}")
            else:
                hold_and_settle(takes, f"c{seed}:{phase}:{i}")
            i += 1
        done[kind] += i
    connection.close()
    results.put(done)


def _hot_wallet(db_name: str) -> dict:
    from billing import ledger

    takes = _workspace("hot-takes@example.com", 100_000_000)
    debits = _workspace("hot-debits@example.com", 100_000_000)
    ids = {"takes": takes.pk, "debits": debits.pk, "debit_wallet": ledger.get_wallet(debits).pk}
    connection.close()
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(CLIENTS)
    queue = context.Queue()
    clients = [
        context.Process(target=_client, args=(db_name, ids, n, ready, queue))
        for n in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    results = [queue.get(timeout=300) for _ in clients]
    for client in clients:
        client.join(timeout=30)
    seconds = PHASES * PHASE_SECONDS
    debit_rate = sum(r["debit"] for r in results) / seconds
    take_rate = sum(r["take"] for r in results) / seconds
    problems = ledger.audit_wallet(ledger.get_wallet(takes))
    print(f"{CLIENTS} clients on one hot wallet, {PHASES} alternating phases of each:")
    print(f"  minimal debits: {debit_rate:8.1f}/s; takes held and settled: {take_rate:8.1f}/s")
    print(
        f"  ratio takes / minimal debits: {take_rate / debit_rate:.2f}x (goal >= 0.25x); "
        f"ledger_audit clean: {not problems}"
    )
    return {"hot_ratio": take_rate / debit_rate}


def _add_entries(workspace, total: int) -> None:
    """Grow the workspace's ledger to `total` entries (generated in the database)."""
    from billing import ledger
    from billing.models import LedgerEntry

    wallet = ledger.get_wallet(workspace)
    missing = total - LedgerEntry.objects.filter(wallet=wallet).count()
    if missing <= 0:
        return
    # History that moves nothing (amount 0), so the wallet's audit stays clean.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_ledgerentry (wallet_id, workspace_id, kind, amount, "
            "held_delta, balance_after, reason, params, idempotency_key, created_at) "
            "SELECT %s, %s, CASE WHEN n %% 2 = 0 THEN 'grant' ELSE 'release' END, 0, 0, "
            "%s, '', '{}', 'history:' || %s || ':' || n, "
            "now() - (n || ' seconds')::interval FROM generate_series(1, %s) AS n",
            [wallet.pk, workspace.pk, wallet.balance, total, missing],
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE billing_ledgerentry")


def _balance_reads() -> dict:
    from billing import ledger

    # One reader per ledger size, read in turn (interleaved, so both see the same load).
    readers = {total: _workspace(f"reader{total}@example.com", 1_000) for total in ENTRIES}
    for total, workspace in readers.items():
        _add_entries(workspace, total)
    times: dict[int, list[float]] = {total: [] for total in ENTRIES}
    for _ in range(READS):
        for total, workspace in readers.items():
            started = time.perf_counter()
            ledger.get_wallet(workspace).balance  # noqa: B018 — the read being measured
            ledger.available_credits(workspace)
            times[total].append(time.perf_counter() - started)
    medians = {total: statistics.median(values) * 1e3 for total, values in times.items()}
    low, high = medians[ENTRIES[0]], medians[ENTRIES[-1]]
    print(f"balance read (wallet row + credits available now), interleaved, median of {READS}")
    for total, value in medians.items():
        print(f"  {total:>9,} ledger entries: {value:6.3f} ms")
    print(f"  ratio {ENTRIES[-1]:,} / {ENTRIES[0]:,} entries: {high / low:.2f}x (goal <= 1.5x)")
    return {"read_ratio": high / low}


def main() -> dict:
    with scratch_database("ledger") as db_name:
        result = _single_client()
        result.update(_hot_wallet(db_name))
        result.update(_balance_reads())
        return result
