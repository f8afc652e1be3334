"""Run in a separate process by test_ledger_concurrency: its own Django, its own connection."""

from __future__ import annotations

import os
import random
import time


def spend(database_url: str, workspace_id: int, user_id: int, seed: int, start_at: float) -> dict:
    """Hold and settle (or release) on one wallet in a loop; report what was charged."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from accounts.models import Workspace
    from billing import ledger

    workspace = Workspace.objects.get(pk=workspace_id)
    member = get_user_model().objects.get(pk=user_id)
    rng = random.Random(seed)
    charged = refused = capped = 0
    time.sleep(max(0.0, start_at - time.time()))
    try:
        with transaction.atomic(durable=True):
            ledger.place_hold(workspace, 5, idempotency_key="shared-key", member=member)
    except ledger.IdempotencyConflict:
        pass  # another process used the key for another member first
    for i in range(25):
        amount = rng.randint(1, 15)
        try:
            with transaction.atomic(durable=True):
                hold = ledger.place_hold(
                    workspace, amount, idempotency_key=f"p{seed}-h{i}", member=member
                )
        except ledger.InsufficientCredits:
            refused += 1
            continue
        except ledger.SpendingCapExceeded:
            capped += 1
            continue
        if rng.random() < 0.25:
            ledger.release_hold(hold, idempotency_key=f"p{seed}-r{i}")
        else:
            settled = ledger.settle_hold(
                hold, rng.randint(0, amount + 3), idempotency_key=f"p{seed}-s{i}"
            )
            charged += settled.charged
    connection.close()
    return {"charged": charged, "refused": refused, "capped": capped}
