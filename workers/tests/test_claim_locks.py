"""A claim locks only what it places (issue 16): the node it takes a slot on, the take and
its workspace. While one dispatcher's claim is still open, another claims another
workspace's take on a different node instead of finding every node locked; a take of the
workspace being placed is passed over (its concurrency count is only known once the open
claim commits), never waited for."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from generation.models import Node, Project, Take, TakeStatus
from generation.submission import TakeSpec, submit_takes
from generation.tests.helpers import fund, setup_catalog, subscribe
from workers import dispatch

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_open_claim_leaves_the_other_nodes_to_other_dispatchers(alice, acme, charlie):
    first = setup_catalog(base_url="http://127.0.0.1:9")
    second = Node.objects.create(
        name="second", pool=first.pool, base_url="http://127.0.0.1:9", auth_token="x"
    )
    second.served_models.set(first.served_models.all())
    other_workspace = charlie.workspaces.get()
    for workspace in (acme, other_workspace):
        fund(workspace, 1000)
        subscribe(workspace, "studio")
    spec = TakeSpec(model="wan2.1-t2v-1.3b", prompt="two nodes", resolution="480p", duration=1)
    submit_takes(acme, alice, TakeSpec(**{**spec.__dict__, "count": 2}), idempotency_key="k")
    submit_takes(other_workspace, charlie, spec, idempotency_key="k")
    claimed, release = threading.Event(), threading.Event()
    held: dict = {}

    def slow_dispatcher() -> None:
        try:
            with transaction.atomic():  # the claim stays open, its locks held
                held["take"] = dispatch.claim_next()
                claimed.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=slow_dispatcher)
    thread.start()
    try:
        assert claimed.wait(30)
        started = time.monotonic()
        other = dispatch.claim_next()
        waited = time.monotonic() - started
    finally:
        release.set()
        thread.join()
    assert held["take"] is not None and other is not None
    assert waited < 10  # it did not wait for the open claim to end
    assert {held["take"].workspace_id, other.workspace_id} == {acme.pk, other_workspace.pk}
    assert {held["take"].node_id, other.node_id} == {first.pk, second.pk}
    assert Take.objects.filter(status=TakeStatus.DISPATCHING).count() == 2
    # Both slots are taken now: nothing more fits, however many dispatchers ask.
    assert dispatch.claim_next() is None


def test_a_claim_and_a_cancel_of_the_same_workspace_do_not_deadlock(alice, acme):
    """A cancel holds a running take of the workspace (the claim's `record_usage` updates
    every live take's sort key, so it waits for that row) and, when it commits, checks its
    new rows' foreign keys to the workspace, which the claim has locked. With the workspace
    locked FOR UPDATE the two waited on each other until PostgreSQL killed one."""
    node = setup_catalog(base_url="http://127.0.0.1:9")
    node.slots = 2
    node.save()
    fund(acme, 1000)
    subscribe(acme, "studio")
    spec = TakeSpec(model="wan2.1-t2v-1.3b", prompt="no deadlock", resolution="480p", duration=1)
    submit_takes(acme, alice, spec, idempotency_key="first")
    running = dispatch.claim_next()
    assert running is not None
    submit_takes(acme, alice, spec, idempotency_key="second")
    locked = threading.Event()
    errors: list[BaseException] = []
    outcome: dict = {}

    def claim() -> None:
        try:
            assert locked.wait(30)
            outcome["take"] = dispatch.claim_next()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=claim)
    thread.start()
    try:
        with transaction.atomic():  # what a cancel does to the running take
            Take.objects.select_for_update().get(pk=running.pk)
            Project.objects.create(workspace=acme, name="checked at commit")
            locked.set()
            time.sleep(1.5)  # the claim locks the workspace and waits for the take
    except BaseException as exc:  # noqa: BLE001 - reported below
        errors.append(exc)
    finally:
        thread.join()
    assert errors == []
    assert outcome["take"] is not None and outcome["take"].pk != running.pk
