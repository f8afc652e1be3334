"""Settlement racing itself on PostgreSQL: a redelivered message and the sweeper settle the
same take at once, and the take is charged exactly once."""

from __future__ import annotations

import base64
import threading

import pytest
from django.db import connection

from billing.models import Hold, HoldStatus, LedgerEntry
from generation import lifecycle
from generation.models import TakeStatus
from generation.submission import TakeSpec, submit_takes
from generation.tests.helpers import fund, setup_catalog, wallet
from workers import dispatch
from workers.backends.cog import state_of
from workers.settlement import settle_take

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_settlements_charge_a_take_once(alice, acme, reference, tmp_path, monkeypatch):
    monkeypatch.setattr("workers.tasks.dispatch_takes.delay", lambda *a, **k: None)
    monkeypatch.setattr("workers.tasks.process_take_output.delay", lambda *a, **k: None)
    setup_catalog()
    fund(acme, 100)
    spec = TakeSpec(model="wan2.1-t2v-1.3b", prompt="a lighthouse", resolution="480p", duration=2)
    [take] = submit_takes(acme, alice, spec, idempotency_key="race")
    assert dispatch.claim_next().pk == take.pk
    video = tmp_path / "out.mp4"
    reference.render_video(str(video), prompt="a lighthouse", seed=1, width=320, height=180,
                           fps=16, seconds=2.0)  # fmt: skip
    output = "data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode()
    take.refresh_from_db()
    done = state_of({"id": str(take.pk), "status": "succeeded", "output": output})
    assert lifecycle.apply_state(take.pk, done, secret=take.webhook_secret)

    start = threading.Barrier(3)
    settled: list[bool] = []
    errors: list[BaseException] = []

    def settle() -> None:
        try:
            start.wait()
            settled.append(settle_take(take.pk) is not None)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=settle) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(settled) == [False, False, True]
    take.refresh_from_db()
    assert take.status == TakeStatus.SUCCEEDED and take.charged == 4  # 2 s × 2 credits/s
    assert LedgerEntry.objects.filter(hold_id=take.hold_id, kind="settle").count() == 1
    assert Hold.objects.get(pk=take.hold_id).status == HoldStatus.SETTLED
    assert (wallet(acme).balance, wallet(acme).held) == (96, 0)
