"""The sweeper: beat's safety net, so a lost message or a dead process delays a take but
never loses it.

- a take whose lease ran out while sent somewhere is re-driven one way, whatever its
  backend: ask the backend for the attempt's status (`Backend.status`: a provider's poll,
  a Cog node's re-sent PUT, which answers the current state or starts the take again) and
  hand the answer to `generation.lifecycle.apply_state`. A backend that does not answer
  sends the take back to the queue (a provider that must be polled gets more time until
  `PROVIDER_MAX_RUNTIME_SECONDS`); an attempt running past that is canceled and requeued;
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

from config import enqueue
from generation import lifecycle
from generation.models import IN_FLIGHT, Node, NodeState, Take, TakeStatus
from generation.reports import RUNNING, State

from .backends import (
    BackendError,
    PermanentBackendError,
    TransientBackendError,
    backend_class,
    backend_for,
)
from .backends.cog import CogBackend
from .dispatch import request_for, target_of
from .models import JobStatus, ProviderJob

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


def redrive(take: Take) -> None:
    """Ask the backend where the take's current attempt stands and apply the answer."""
    target = target_of(take)
    secret = take.webhook_secret
    if target is None:
        lifecycle.requeue(take.pk, secret, "lost its node")
        return
    external_id = str(take.pk)
    overdue = False
    if take.provider_id is not None:
        job = (
            ProviderJob.objects.dangerously_unscoped()
            .filter(take=take, attempt=take.attempts, provider_id=take.provider_id)
            .first()
        )
        if job is None or not job.external_id:
            lifecycle.requeue(take.pk, secret, "never reached its provider")
            return
        if job.status == JobStatus.SUCCEEDED:
            enqueue.send(enqueue.COLLECT, str(take.pk))
            return
        external_id = job.external_id
        overdue = timezone.now() - job.submitted_at > timedelta(
            seconds=settings.PROVIDER_MAX_RUNTIME_SECONDS
        )
    request = request_for(take)
    try:
        with backend_for(target) as backend:
            state = backend.status(request, external_id)
            if overdue and not state.finished:
                backend.cancel(request, external_id)
    except PermanentBackendError as exc:
        lifecycle.fail_take(take.pk, str(exc), secret=secret)
        return
    except TransientBackendError as exc:
        if take.provider_id is None:
            lifecycle.requeue(take.pk, secret, f"node did not answer a poll: {exc}")
            return
        log.warning("take %s: %s did not answer a poll: %s", take.pk, target, exc)
        if not overdue:
            calls_back = backend_class(target.backend_kind).calls_back
            seconds = settings.TAKE_LEASE_SECONDS if calls_back else settings.PROVIDER_POLL_SECONDS
            lifecycle.extend_lease(take.pk, secret, seconds)
            return
        state = State(external_id, RUNNING)
    if overdue and not state.finished:
        lifecycle.requeue(take.pk, secret, f"{target} took too long")
        return
    lifecycle.apply_state(take.pk, state, secret=secret, calls_back=backend.calls_back)


def redrive_overdue_takes(now=None) -> int:
    """Re-drive or re-settle takes whose lease ran out; returns how many were re-driven."""
    now = now or timezone.now()
    overdue = list(
        Take.objects.dangerously_unscoped()
        .filter(status__in=(*IN_FLIGHT, TakeStatus.FINALIZING), lease_expires_at__lt=now)
        .select_related("node", "provider", "shot")
    )
    count = 0
    for take in overdue:
        if not _extend_lease(take):
            continue
        count += 1
        if take.status == TakeStatus.FINALIZING:
            enqueue.send(enqueue.SETTLE, str(take.pk))
        else:
            redrive(take)
    return count


def check_node(node: Node) -> str:
    """Health-check one node and update its state; returns the status seen."""
    try:
        status = CogBackend(node).health()
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
        stranded = Take.objects.dangerously_unscoped().filter(node=node, status__in=IN_FLIGHT)
        for take_id, secret in stranded.values_list("pk", "webhook_secret"):
            lifecycle.requeue(take_id, secret, f"node {node} is down")
    return status


def check_nodes() -> dict[str, str]:
    return {node.name: check_node(node) for node in Node.objects.all()}


def sweep(now=None) -> dict[str, int]:
    return {
        "expired": lifecycle.expire_overdue_takes(now),
        "redriven": redrive_overdue_takes(now),
    }
