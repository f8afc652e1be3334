"""The sweeper: beat's safety net, so a lost message or a dead process delays a take but
never loses it.

- takes at an upstream provider are polled when no webhook came before their lease ran
  out (`workers.providers.poll_take`);
- takes whose lease ran out while on a node are polled (the submit PUT is re-sent; the
  node answers with the current state, or starts the take again if it forgot it); an
  unreachable node sends the take back to the queue for another node;
- takes whose settlement never finished are settled again (idempotent);
- off-peak takes past their deadline expire (hold released);
- nodes are health-checked: marked down after repeated failures, active again when healthy;
  takes on a node that went down go back to the queue.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from generation.lifecycle import expire_overdue_takes
from generation.models import ACTIVE_ON_NODE, Node, NodeState, Take, TakeStatus

from .backends import BackendError, PermanentBackendError, TransientBackendError
from .callbacks import apply_prediction
from .dispatch import client_for, prediction_input, requeue, webhook_url

log = logging.getLogger(__name__)
HEALTHY = {"READY", "BUSY"}


def _extend_lease(take: Take) -> bool:
    """Take the re-drive of one overdue take for ourselves (only one sweeper wins)."""
    lease = timezone.now() + timedelta(seconds=settings.TAKE_LEASE_SECONDS)
    return bool(
        Take.objects.dangerously_unscoped()
        .filter(pk=take.pk, status=take.status, lease_expires_at=take.lease_expires_at)
        .update(lease_expires_at=lease)
    )


def poll_take(take: Take) -> None:
    node = take.node
    try:
        state = client_for(node).poll(str(take.pk), prediction_input(take), webhook_url(take))
    except PermanentBackendError as exc:
        from generation.lifecycle import fail_take

        fail_take(take.pk, str(exc))
    except TransientBackendError as exc:
        requeue(take.pk, node.pk, f"node did not answer a poll: {exc}")
    else:
        apply_prediction(take.pk, state, node_id=node.pk)


def redrive_overdue_takes(now=None) -> int:
    """Poll or re-settle takes whose lease ran out; returns how many were re-driven."""
    from .tasks import process_take_output

    now = now or timezone.now()
    overdue = list(
        Take.objects.dangerously_unscoped()
        .filter(status__in=(*ACTIVE_ON_NODE, TakeStatus.FINALIZING), lease_expires_at__lt=now)
        .select_related("node", "provider", "shot")
    )
    count = 0
    for take in overdue:
        if not _extend_lease(take):
            continue
        count += 1
        if take.status == TakeStatus.FINALIZING:
            process_take_output.delay(str(take.pk))
        elif take.provider_id is not None:
            from .providers import poll_take as poll_provider_take

            poll_provider_take(take)
        elif take.node is None:
            requeue(take.pk, None, "lost its node")
        else:
            poll_take(take)
    return count


def check_node(node: Node) -> str:
    """Health-check one node and update its state; returns the status seen."""
    try:
        status = client_for(node).health()
    except BackendError as exc:
        status = "UNREACHABLE"
        log.warning("node %s health check failed: %s", node, exc)
    now = timezone.now()
    if status in HEALTHY:
        updates = {"consecutive_failures": 0, "last_health": status, "last_health_at": now}
        if node.state == NodeState.DOWN:
            updates["state"] = NodeState.ACTIVE
        Node.objects.filter(pk=node.pk).update(**updates)
    else:
        Node.objects.filter(pk=node.pk).update(
            consecutive_failures=F("consecutive_failures") + 1,
            last_health=status,
            last_health_at=now,
        )
        node.refresh_from_db()
        if (
            node.state != NodeState.DOWN
            and node.consecutive_failures >= settings.NODE_DOWN_AFTER_FAILURES
        ):
            Node.objects.filter(pk=node.pk).update(state=NodeState.DOWN)
            log.warning("node %s is down", node)
    if Node.objects.filter(pk=node.pk, state=NodeState.DOWN).exists():
        stranded = Take.objects.dangerously_unscoped().filter(node=node, status__in=ACTIVE_ON_NODE)
        for take_id in stranded.values_list("pk", flat=True):
            requeue(take_id, node.pk, f"node {node} is down")
    return status


def check_nodes() -> dict[str, str]:
    return {node.name: check_node(node) for node in Node.objects.all()}


def sweep(now=None) -> dict[str, int]:
    return {
        "expired": expire_overdue_takes(now),
        "redriven": redrive_overdue_takes(now),
    }
