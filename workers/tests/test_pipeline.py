"""The generation pipeline end to end: real Celery workers (subprocesses, with beat), real
reference nodes (Cog servers), the live Django server receiving webhooks and uploads,
PostgreSQL and Redis. Clips are short (1–2 s at 480p) to keep the suite fast.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import numpy as np
import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from billing.models import Hold, HoldStatus, LedgerEntry
from conftest import client_for
from generation.models import TERMINAL, Node, Take, TakeStatus
from generation.tests.helpers import NODE_TOKEN, fund, png_bytes, subscribe, wallet
from workers import media
from workers.models import ProviderJob

from .conftest import start_node, stop_node
from .live import wait_idle, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _media_in_tmp(shared_media):
    """Media in one folder shared with the worker subprocesses."""


def take_status(take_id) -> str:
    return Take.objects.get(pk=take_id).status


def submit(client, **data) -> list[dict]:
    data.setdefault("model", "wan2.1-t2v-1.3b")
    data.setdefault("prompt", "a paper boat drifting down a rainy street")
    data.setdefault("resolution", "480p")
    data.setdefault("duration", 1)
    key = data.pop("idempotency_key", f"k-{time.monotonic_ns()}")
    response = client.post("/api/v1/takes/", data, HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 201, response.json()
    return response.json()["takes"]


def settle_entries(take: Take) -> int:
    return LedgerEntry.objects.filter(hold_id=take.hold_id, kind="settle").count()


def test_submitted_take_is_rendered_stored_measured_and_charged_exactly(
    alice, acme, charlie, catalog, workers
):
    fund(acme, 100)
    workers.start()
    client = client_for(alice, acme)
    [body] = submit(client, duration=2)
    wait_until(lambda: take_status(body["id"]) in (TakeStatus.SUCCEEDED, TakeStatus.FAILED))
    take = Take.objects.get(pk=body["id"])
    assert take.status == TakeStatus.SUCCEEDED, take.error
    info = media.probe(default_storage.path(take.output_original))
    assert info.codec == "h264"
    assert abs(info.duration_seconds - 2) < 0.1
    assert abs(take.measured_duration - 2) < 0.1
    assert default_storage.exists(take.output_poster)
    assert default_storage.exists(take.output_preview)
    # 2 s × 2 credits/s at 480p, charged once; the wallet holds nothing any more.
    assert take.charged == 4
    hold = Hold.objects.get(pk=take.hold_id)
    assert hold.status == HoldStatus.SETTLED and hold.charged == 4
    assert settle_entries(take) == 1
    assert (wallet(acme).balance, wallet(acme).held) == (96, 0)
    # The attempt is recorded: on which node, how it ended, how long it took.
    [attempt] = ProviderJob.objects.filter(take=take)
    assert (attempt.node_id, attempt.provider_id, attempt.status) == (
        take.node_id,
        None,
        "succeeded",
    )
    assert attempt.finished_at > attempt.submitted_at
    detail = client.get(f"/api/v1/takes/{take.pk}/").json()
    assert detail["status"] == "succeeded" and detail["charged"] == 4
    assert httpx.get(detail["outputs"]["video"]).status_code == 200
    assert client_for(charlie).get(f"/api/v1/takes/{take.pk}/").status_code == 404

    # A replayed (or forged) completion webhook changes nothing.
    forged = {"id": str(take.pk), "status": "succeeded", "output": "data:video/mp4;base64,AAAA"}
    base = settings.PUBLIC_BASE_URL
    replay = httpx.post(f"{base}/webhooks/takes/{take.pk}/{take.webhook_secret}/", json=forged)
    assert replay.status_code == 200
    wrong = httpx.post(f"{base}/webhooks/takes/{take.pk}/not-the-secret/", json=forged)
    assert wrong.status_code == 404
    again = Take.objects.get(pk=take.pk)
    assert (again.status, again.output_original, again.charged) == (
        TakeStatus.SUCCEEDED,
        take.output_original,
        4,
    )
    assert settle_entries(take) == 1 and wallet(acme).balance == 96


def test_image_to_video_starts_from_the_reference_image(alice, acme, charlie, catalog, workers):
    fund(acme, 100)
    workers.start()
    image = SimpleUploadedFile("ref.png", png_bytes(320, 180, (250, 200, 10)), "image/png")
    [body] = submit(client_for(alice, acme), model="wan2.1-i2v-14b", image=image)
    wait_until(lambda: take_status(body["id"]) in (TakeStatus.SUCCEEDED, TakeStatus.FAILED))
    take = Take.objects.get(pk=body["id"])
    assert take.status == TakeStatus.SUCCEEDED, take.error
    import av

    with av.open(default_storage.path(take.output_original)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    mean = first.reshape(-1, 3).mean(axis=0)
    assert np.allclose(mean, (250, 200, 10), atol=25), mean
    assert client_for(charlie).get(f"/api/v1/takes/{take.pk}/").status_code == 404


def test_first_and_last_frame_take_starts_and_ends_on_them(alice, acme, charlie, catalog, workers):
    fund(acme, 100)
    workers.start()
    first = SimpleUploadedFile("first.png", png_bytes(320, 180, (250, 200, 10)), "image/png")
    last = SimpleUploadedFile("last.png", png_bytes(320, 180, (20, 40, 240)), "image/png")
    [body] = submit(client_for(alice, acme), model="wan2.1-i2v-14b", image=first, last_frame=last)
    wait_until(lambda: take_status(body["id"]) in (TakeStatus.SUCCEEDED, TakeStatus.FAILED))
    take = Take.objects.get(pk=body["id"])
    assert take.status == TakeStatus.SUCCEEDED, take.error
    import av

    with av.open(default_storage.path(take.output_original)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert np.allclose(frames[0].reshape(-1, 3).mean(axis=0), (250, 200, 10), atol=25)
    assert np.allclose(frames[-1].reshape(-1, 3).mean(axis=0), (20, 40, 240), atol=25)
    assert client_for(charlie).get(f"/api/v1/takes/{take.pk}/").status_code == 404


def test_two_single_slot_nodes_never_run_two_takes_at_once(alice, acme, catalog, workers):
    subscribe(acme, "studio")
    fund(acme, 1000)
    for node in catalog:
        node.extra_input = {"speed": 0.5}
        node.save()
    workers.start()
    bodies = submit(client_for(alice, acme), count=5, duration=1)
    ids = [b["id"] for b in bodies]
    worst = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        live = Take.objects.filter(pk__in=ids, status__in=["dispatching", "running"])
        per_node = {}
        for node_id in live.values_list("node_id", flat=True):
            per_node[node_id] = per_node.get(node_id, 0) + 1
        worst = max([worst, *per_node.values()])
        if Take.objects.filter(pk__in=ids, status=TakeStatus.SUCCEEDED).count() == 5:
            break
        time.sleep(0.02)
    takes = list(Take.objects.filter(pk__in=ids))
    assert all(t.status == TakeStatus.SUCCEEDED for t in takes), [t.error for t in takes]
    assert worst == 1
    # The nodes never had to refuse one (a 409 would have cost an attempt).
    assert all(t.attempts == 1 for t in takes)
    assert {t.node_id for t in takes} == {n.pk for n in catalog}


def test_killed_worker_mid_take_still_completes_and_charges_once(alice, acme, catalog, workers):
    fund(acme, 100)
    for node in catalog:
        node.extra_input = {"speed": 1.5}
        node.save()
    first = workers.start()
    [body] = submit(client_for(alice, acme), duration=2)
    # Kill it while it settles the take (probe, poster, preview, watermark, charge).
    wait_until(
        lambda: take_status(body["id"]) in (TakeStatus.FINALIZING, TakeStatus.SUCCEEDED),
        step=0.01,
    )
    workers.kill(first)
    workers.start()
    wait_until(lambda: take_status(body["id"]) in (TakeStatus.SUCCEEDED, TakeStatus.FAILED))
    take = Take.objects.get(pk=body["id"])
    assert take.status == TakeStatus.SUCCEEDED, take.error
    assert take.charged == 4 and settle_entries(take) == 1
    assert wallet(acme).balance == 96 and wallet(acme).held == 0


def test_killed_node_mid_render_retries_the_take_on_the_other_node(
    alice, acme, catalog, workers, live_server
):
    fund(acme, 100)
    doomed_url, doomed = start_node(upload_url=f"{live_server.url}/ingest/{NODE_TOKEN}/")
    try:
        # Only the doomed node is active at first, and it renders slowly.
        catalog[0].state = catalog[1].state = "draining"
        Node.objects.bulk_update(catalog, ["state"])
        node = Node.objects.create(
            name="doomed",
            pool=catalog[0].pool,
            base_url=doomed_url,
            auth_token=NODE_TOKEN,
            extra_input={"speed": 4},
        )
        node.served_models.set(catalog[0].served_models.all())
        workers.start()
        [body] = submit(client_for(alice, acme), duration=1)
        wait_until(lambda: take_status(body["id"]) == TakeStatus.RUNNING)
        os.kill(doomed.pid, signal.SIGKILL)
        Node.objects.filter(pk=catalog[1].pk).update(state="active")
        wait_until(
            lambda: take_status(body["id"]) in (TakeStatus.SUCCEEDED, TakeStatus.FAILED),
            timeout=90,
        )
    finally:
        stop_node(doomed)
    take = Take.objects.get(pk=body["id"])
    assert take.status == TakeStatus.SUCCEEDED, take.error
    assert take.node_id == catalog[1].pk and take.attempts == 2
    attempts = list(ProviderJob.objects.filter(take=take).order_by("attempt"))
    assert [(a.node.name, a.status) for a in attempts] == [
        ("doomed", "failed_over"),
        (catalog[1].name, "succeeded"),
    ]
    assert take.charged == 2 and wallet(acme).balance == 98
    assert Node.objects.get(name="doomed").state == "down"


def test_flushed_redis_loses_no_queued_take(alice, acme, catalog, workers, broker):
    subscribe(acme, "standard")
    fund(acme, 1000)
    bodies = submit(client_for(alice, acme), count=3, duration=1)
    assert broker.llen("dispatch") >= 1
    broker.flushdb()
    workers.start()
    ids = [b["id"] for b in bodies]
    wait_until(
        lambda: Take.objects.filter(pk__in=ids, status=TakeStatus.SUCCEEDED).count() == 3,
        timeout=90,
    )


def test_cancelling_a_running_take_stops_it_and_releases_the_hold(
    alice, acme, charlie, catalog, workers
):
    fund(acme, 100)
    for node in catalog:
        node.extra_input = {"speed": 10}  # a 2 s take renders for 20 s
        node.save()
    workers.start()
    client = client_for(alice, acme)
    [body] = submit(client, duration=2)
    wait_until(lambda: take_status(body["id"]) == TakeStatus.RUNNING)
    assert client_for(charlie).post(f"/api/v1/takes/{body['id']}/cancel/").status_code == 404
    response = client.post(f"/api/v1/takes/{body['id']}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "canceled"
    take = Take.objects.get(pk=body["id"])
    assert Hold.objects.get(pk=take.hold_id).status == HoldStatus.RELEASED
    assert (wallet(acme).balance, wallet(acme).held) == (100, 0)
    # The node stops rendering: it is idle again well before the 20 s render would end
    # (10 s leaves room for a loaded machine).
    wait_idle(take.node.base_url, timeout=10)
    time.sleep(1)
    assert take_status(take.pk) == TakeStatus.CANCELED


def test_cancelling_many_queued_and_running_takes_never_fails_another_take(
    alice, acme, charlie, catalog, workers
):
    """One single-slot node; takes are canceled while queued and as soon as they run. A
    canceled take keeps its slot until the node lets go of it, and a node's 409 costs no
    attempt, so the takes nobody canceled all render on their first attempt."""
    subscribe(acme, "studio")
    fund(acme, 1000)
    catalog[1].state = "draining"
    catalog[1].save()
    catalog[0].extra_input = {"speed": 0.5}
    catalog[0].save()
    client = client_for(alice, acme)
    ids = [b["id"] for _ in range(2) for b in submit(client, count=8, duration=1)]
    keep = set(ids[3::4])
    at_once = [i for i in ids if i not in keep][::2]
    when_running = [i for i in ids if i not in keep and i not in at_once]
    for take_id in at_once:
        assert client.post(f"/api/v1/takes/{take_id}/cancel/").status_code == 200
    workers.start()
    pending = list(when_running)
    deadline = time.monotonic() + 90
    while pending and time.monotonic() < deadline:
        for take_id in list(pending):
            status = take_status(take_id)
            if status in (TakeStatus.DISPATCHING, TakeStatus.RUNNING):
                assert client.post(f"/api/v1/takes/{take_id}/cancel/").status_code == 200
                pending.remove(take_id)
            elif status in (TakeStatus.SUCCEEDED, TakeStatus.FAILED):
                pending.remove(take_id)  # ran before we saw it start: not canceled
        time.sleep(0.01)
    canceled_while_running = len(when_running) - len(
        [i for i in when_running if take_status(i) != TakeStatus.CANCELED]
    )
    wait_until(
        lambda: Take.objects.filter(pk__in=ids, status__in=TERMINAL).count() == len(ids),
        timeout=120,
    )
    uncanceled = list(Take.objects.filter(pk__in=ids).exclude(status=TakeStatus.CANCELED))
    assert len(uncanceled) >= len(keep)
    assert all(t.status == TakeStatus.SUCCEEDED for t in uncanceled), [t.error for t in uncanceled]
    assert all(t.attempts == 1 for t in uncanceled), [(t.attempts, t.error) for t in uncanceled]
    assert canceled_while_running >= len(when_running) // 2
    assert (wallet(acme).held, client_for(charlie).get(f"/api/v1/takes/{ids[0]}/").status_code) == (
        0,
        404,
    )
