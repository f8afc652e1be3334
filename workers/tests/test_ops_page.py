"""The operations page: staff only; queue depth per class, takes per state, node use, and
credits charged against estimated GPU cost per hour over the last day."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.utils import timezone

from billing.demo import seed_plans
from conftest import client_for, make_user
from generation.models import Node, Take, TakeStatus
from generation.submission import TakeSpec, submit_takes
from generation.tests.helpers import fund, setup_catalog, subscribe
from workers import ops

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    user = make_user("ops@example.com")
    user.is_staff = True
    user.save()
    return user


def _takes(workspace, user, n: int, key: str) -> list[Take]:
    spec = TakeSpec(
        model="wan2.1-t2v-1.3b", prompt="a kite", resolution="480p", duration=1, count=n
    )
    with mock.patch("workers.tasks.dispatch_takes.delay"):
        return submit_takes(workspace, user, spec, idempotency_key=key)


def test_ops_figures_by_class_state_node_and_hour(alice, acme, charlie):
    node = setup_catalog()
    Node.objects.filter(pk=node.pk).update(cost_per_gpu_second=Decimal("0.5"), slots=2)
    seed_plans()
    subscribe(acme, "standard")
    fund(acme, 100)
    fund(charlie_ws := charlie.memberships.get().workspace, 100)
    queued = _takes(acme, alice, 3, "acme")
    [free] = _takes(charlie_ws, charlie, 1, "charlie")
    now = timezone.now()
    Take.objects.filter(pk=queued[0].pk).update(
        status=TakeStatus.SUCCEEDED,
        node=node,
        charged=2,
        dispatched_at=now - timedelta(seconds=10),
        finished_at=now,
    )
    Take.objects.filter(pk=queued[1].pk).update(status=TakeStatus.RUNNING, node=node)

    depth = {row["label"]: row["queued"] for row in ops.queue_depth_by_class()}
    assert depth["Standard"] == 1 and depth["Free"] == 1
    states = {row["status"]: row["count"] for row in ops.takes_by_state()}
    assert (states["queued"], states["running"], states["succeeded"]) == (2, 1, 1)
    [status] = [row for row in ops.node_status() if row["node"].pk == node.pk]
    assert (status["busy"], status["utilization"]) == (1, 50)
    hours = ops.last_day_by_hour()
    assert len(hours) == 24
    assert hours[-1].charged == 2 and hours[-1].gpu_cost == Decimal("5.00")
    assert free.status == TakeStatus.QUEUED


def test_ops_page_is_for_staff_only(alice, acme, charlie, staff):
    setup_catalog()
    seed_plans()
    page = client_for(staff).get("/ops/")
    assert page.status_code == 200
    body = page.content.decode()
    sections = ("ops-hourly", "ops-queues", "ops-states", "ops-nodes", "ops-node-attempts")
    for section in (*sections, "ops-providers"):
        assert f'data-testid="{section}"' in body
    assert "Attempts per node" in body and "Upstream providers" in body
    assert "<svg" in body and "reference-1" in body
    for outsider in (alice, charlie):
        response = client_for(outsider).get("/ops/")
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    admin_index = client_for(staff).get("/admin/")
    assert admin_index.status_code == 200 and 'href="/ops/"' in admin_index.content.decode()
