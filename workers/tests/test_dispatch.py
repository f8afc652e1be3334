"""The dispatcher, lifecycle and node callbacks, without a worker: claim order, capacity,
off-peak windows and deadlines, retries, health, and webhook authentication."""

from __future__ import annotations

import base64
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.test import Client

from billing.models import Hold, HoldStatus, PricingSchedule
from billing.pricing import WindowSpec, set_schedule
from conftest import make_user
from generation import lifecycle
from generation.models import Node, NodeState, Take, TakeStatus
from generation.queue import queue_position
from generation.submission import TakeSpec, submit_takes
from generation.tests.helpers import fund, setup_catalog, subscribe, wallet
from workers import dispatch, sweeper
from workers.backends.cog import state_of


def apply_prediction(take, payload: dict) -> bool:
    """What a node's webhook for the take's current attempt does."""
    state = state_of({"id": str(take.pk), **payload})
    return lifecycle.apply_state(take.pk, state, secret=take.webhook_secret)


pytestmark = pytest.mark.django_db
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr("workers.tasks.dispatch_takes.delay", lambda *a, **k: None)
    monkeypatch.setattr("workers.tasks.process_take_output.delay", lambda *a, **k: None)
    monkeypatch.setattr("workers.tasks.cancel_attempt.delay", lambda *a, **k: None)


@pytest.fixture
def node(db):
    return setup_catalog(base_url="http://127.0.0.1:9")


def workspace_of(email: str, plan: str | None = None):
    user = make_user(email)
    workspace = user.workspaces.get()
    fund(workspace, 1000)
    if plan:
        subscribe(workspace, plan)
    return user, workspace


_keys = iter(range(10**6))


def submit(user, workspace, **kwargs):
    spec = TakeSpec(
        model="wan2.1-t2v-1.3b", prompt="a lighthouse", resolution="480p", duration=1, **kwargs
    )
    return submit_takes(workspace, user, spec, idempotency_key=f"k{next(_keys)}")


def test_higher_plan_class_is_dispatched_first(node, alice, charlie):
    free_user, free_ws = workspace_of("free@example.com")
    studio_user, studio_ws = workspace_of("studio@example.com", "studio")
    [older] = submit(free_user, free_ws)
    [newer] = submit(studio_user, studio_ws)
    assert queue_position(newer) == 1 and queue_position(older) == 2
    assert dispatch.claim_next().pk == newer.pk


def test_lighter_workspace_of_the_period_goes_first_within_a_class(node):
    heavy_user, heavy = workspace_of("heavy@example.com")
    light_user, light = workspace_of("light@example.com")
    [done] = submit(heavy_user, heavy)
    assert dispatch.claim_next().pk == done.pk  # counted in heavy's usage of the period
    Take.objects.filter(pk=done.pk).update(status=TakeStatus.SUCCEEDED)
    [heavy_take] = submit(heavy_user, heavy)
    [light_take] = submit(light_user, light)
    assert dispatch.claim_next().pk == light_take.pk
    node.slots = 2
    node.save()
    assert dispatch.claim_next().pk == heavy_take.pk


def test_node_slots_are_never_exceeded(node):
    a_user, a = workspace_of("a@example.com")
    b_user, b = workspace_of("b@example.com")
    submit(a_user, a)
    [second] = submit(b_user, b)
    assert dispatch.claim_next() is not None
    assert dispatch.claim_next() is None
    second.refresh_from_db()
    assert second.status == TakeStatus.QUEUED


def test_workspace_concurrency_limit_keeps_extra_takes_queued(node):
    node.slots = 4
    node.save()
    user, ws = workspace_of("solo@example.com")  # Free: one take at a time
    first = submit(user, ws)[0]
    second = submit(user, ws)[0]
    assert dispatch.claim_next().pk == first.pk
    assert dispatch.claim_next() is None
    second.refresh_from_db()
    assert second.status == TakeStatus.QUEUED and queue_position(second) == 1


def _schedule():
    every_day = (0, 1, 2, 3, 4, 5, 6)
    return set_schedule(
        PricingSchedule(name="Default", time_zone="Asia/Shanghai", is_active=True),
        [
            WindowSpec(every_day, time(9), time(23), "peak", Decimal("1")),
            WindowSpec(every_day, time(23), time(9), "off_peak", Decimal("0.5")),
        ],
    )


# A Tuesday; _schedule() has no holidays. Every fixture (catalog, users, credits, plan)
# is made inside this frozen clock, so the test reads the same on any real day.
TUESDAY_10AM = "2026-11-24T10:00:00+08:00"


@pytest.mark.frozen_at(TUESDAY_10AM)
def test_off_peak_take_waits_for_its_window(node):
    _schedule()
    user, ws = workspace_of("night@example.com", "standard")
    [take] = submit(user, ws, mode="off_peak")
    assert take.quote["total"] == 1  # 1 s × 2 credits × 0.5, rounded up
    assert dispatch.claim_next() is None
    with time_machine.travel(datetime(2026, 11, 24, 23, 30, tzinfo=SHANGHAI), tick=False):
        assert dispatch.claim_next().pk == take.pk


@pytest.mark.frozen_at(TUESDAY_10AM)
def test_off_peak_take_expires_past_its_deadline_and_releases_its_hold(node, settings):
    _schedule()
    user, ws = workspace_of("late@example.com", "standard")
    start = datetime.fromisoformat(TUESDAY_10AM)
    [take] = submit(user, ws, mode="off_peak")
    Node.objects.update(state=NodeState.DOWN)  # no capacity: it never starts
    with time_machine.travel(start + timedelta(hours=47), tick=False):
        assert sweeper.sweep()["expired"] == 0
    with time_machine.travel(
        start + timedelta(hours=settings.OFF_PEAK_DEADLINE_HOURS, minutes=1), tick=False
    ):
        assert sweeper.sweep()["expired"] == 1
    take.refresh_from_db()
    assert take.status == TakeStatus.EXPIRED
    assert Hold.objects.get(pk=take.hold_id).status == HoldStatus.RELEASED
    assert wallet(ws).held == 0


def test_unreachable_node_requeues_then_fails_after_max_attempts(node, settings):
    settings.TAKE_MAX_ATTEMPTS = 2
    user, ws = workspace_of("retry@example.com")
    [take] = submit(user, ws)
    dispatch.send_take(dispatch.claim_next())
    take.refresh_from_db()
    assert (take.status, take.attempts, take.previous_node_id) == ("queued", 1, node.pk)
    dispatch.send_take(dispatch.claim_next())
    take.refresh_from_db()
    assert take.status == TakeStatus.FAILED and "2 attempts" in take.error
    assert Hold.objects.get(pk=take.hold_id).status == HoldStatus.RELEASED


def test_failed_health_checks_mark_a_node_down_and_requeue_its_takes(node, settings):
    settings.NODE_DOWN_AFTER_FAILURES = 2
    user, ws = workspace_of("health@example.com")
    [take] = submit(user, ws)
    dispatch.claim_next()
    assert sweeper.check_node(node) == "UNREACHABLE"
    node.refresh_from_db()
    assert node.state == NodeState.ACTIVE and node.consecutive_failures == 1
    sweeper.check_node(node)
    node.refresh_from_db()
    assert node.state == NodeState.DOWN
    take.refresh_from_db()
    assert take.status == TakeStatus.QUEUED and take.node is None


def _running_take(node):
    user, ws = workspace_of("hooks@example.com")
    [take] = submit(user, ws)
    take = dispatch.claim_next()
    assert apply_prediction(take, {"status": "processing", "logs": "progress: 40%\n"})
    take.refresh_from_db()
    return take


def test_forged_webhook_changes_nothing(node, alice, charlie):
    take = _running_take(node)
    url = f"/webhooks/takes/{take.pk}/forged-secret/"
    done = {"id": str(take.pk), "status": "succeeded", "output": "data:video/mp4;base64,AAAA"}
    response = Client().post(url, done, content_type="application/json")
    assert response.status_code == 404
    unknown = Client().post(
        f"/webhooks/takes/00000000-0000-0000-0000-000000000000/{take.webhook_secret}/",
        done,
        content_type="application/json",
    )
    assert unknown.status_code == 404
    again = Take.objects.get(pk=take.pk)
    assert (again.status, again.progress, again.output_original) == ("running", 40, "")


def test_replayed_webhook_changes_nothing(node):
    take = _running_take(node)
    url = f"/webhooks/takes/{take.pk}/{take.webhook_secret}/"
    data = base64.b64encode(b"not really a video").decode()
    done = {"id": str(take.pk), "status": "succeeded", "output": f"data:video/mp4;base64,{data}"}
    assert Client().post(url, done, content_type="application/json").status_code == 200
    take.refresh_from_db()
    assert take.status == TakeStatus.FINALIZING and take.progress == 100
    stored = take.output_original
    late = {"id": str(take.pk), "status": "processing", "logs": "progress: 10%\n"}
    failed = {"id": str(take.pk), "status": "failed", "error": "boom"}
    for replay in (done, late, failed):
        assert Client().post(url, replay, content_type="application/json").status_code == 200
    again = Take.objects.get(pk=take.pk)
    assert (again.status, again.progress, again.output_original) == ("finalizing", 100, stored)
    assert Hold.objects.get(pk=take.hold_id).status == HoldStatus.PENDING


def test_unplayable_output_fails_the_take_and_releases_the_hold(node):
    from workers.settlement import settle_take

    take = _running_take(node)
    data = base64.b64encode(b"not really a video").decode()
    apply_prediction(take, {"status": "succeeded", "output": f"data:video/mp4;base64,{data}"})
    assert settle_take(take.pk) is None
    take.refresh_from_db()
    assert take.status == TakeStatus.FAILED and "playable" in take.error
    assert Hold.objects.get(pk=take.hold_id).status == HoldStatus.RELEASED
    assert wallet(take.workspace).balance == 1000


def test_webhook_from_a_previous_attempt_is_ignored(node):
    take = _running_take(node)
    old_secret = take.webhook_secret
    lifecycle.requeue(take.pk, old_secret, "test")
    take = dispatch.claim_next()
    url = f"/webhooks/takes/{take.pk}/{old_secret}/"
    done = {"id": str(take.pk), "status": "failed", "error": "old node"}
    assert Client().post(url, done, content_type="application/json").status_code == 404
    assert Take.objects.get(pk=take.pk).status == TakeStatus.DISPATCHING
