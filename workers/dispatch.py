"""The dispatcher: the database is the queue.

`claim_next()` picks the next queued take and a node for it in one short transaction:
plan priority class first, then the workspace with the least usage this period, then age;
never more takes on a node than its slots, never more running takes for a workspace than
its plan's `max_concurrent_takes`. On PostgreSQL node rows and take rows are claimed with
`SELECT … FOR UPDATE SKIP LOCKED`, so several dispatchers work side by side; on SQLite,
whose writers are serialized (immediate transactions), the same code runs one at a time.

Upstream providers are claimed the same way: a provider row is a set of slots (its
concurrency limit), and a model's routes (node pools and providers) are tried in priority
order; providers that turned this take away (429, 5xx, timeout) go last.

`send_take()` then PUTs the take to its node (async: the node answers at once, the
outcome comes by webhook) or submits it to its provider (`workers.providers`). Nothing here
waits for a GPU.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from accounts.models import Workspace
from billing import ledger, plans, pricing
from generation.lifecycle import fail_take
from generation.models import (
    ACTIVE_ON_NODE,
    Node,
    NodeState,
    Route,
    RouteKind,
    Take,
    TakeStatus,
    new_secret,
)

from . import media
from .backends import NodeAtCapacity, PermanentBackendError, TransientBackendError
from .backends.cog import DISPATCH_EVENTS, CogClient
from .models import JobStatus, Provider, ProviderJob

log = logging.getLogger(__name__)

# How many queued takes one claim looks at (the best first) to find one that fits.
CLAIM_WINDOW = 50


def _locked(queryset: QuerySet, **kwargs: Any) -> QuerySet:
    """FOR UPDATE [SKIP LOCKED] where the database has it; SQLite serializes writers anyway."""
    if not connection.features.has_select_for_update:
        return queryset
    if kwargs.get("skip_locked") and not connection.features.has_select_for_update_skip_locked:
        kwargs.pop("skip_locked")
    return queryset.select_for_update(**kwargs)


def _in_flight_by(field: str, ids) -> dict[int, int]:
    """Takes holding a slot (dispatching or running) per node or provider id."""
    return dict(
        Take.objects.dangerously_unscoped()
        .filter(**{f"{field}__in": ids}, status__in=ACTIVE_ON_NODE)
        .order_by()
        .values(field)
        .annotate(n=Count("pk"))
        .values_list(field, "n")
    )


def takes_on_nodes(node_ids) -> dict[int, int]:
    return _in_flight_by("node_id", node_ids)


def queue_order(queryset: QuerySet, now) -> QuerySet:
    """Priority class, then the workspace with least usage this period, then age."""
    usage = (
        Take.objects.dangerously_unscoped()
        .filter(workspace=OuterRef("workspace"), dispatched_at__gte=ledger.month_start(now))
        .order_by()
        .values("workspace")
        .annotate(seconds=Sum("duration_seconds"))
        .values("seconds")
    )
    return queryset.annotate(usage=Coalesce(Subquery(usage), 0)).order_by(
        "-priority", "usage", "created_at", "id"
    )


def eligible_queued(now) -> QuerySet:
    """Queued takes allowed to start now (off-peak ones only inside an off-peak window)."""
    queryset = Take.objects.dangerously_unscoped().filter(status=TakeStatus.QUEUED)
    if not pricing.is_off_peak(now):
        queryset = queryset.exclude(mode=pricing.Mode.OFF_PEAK)
    return queryset


def takes_on_providers(provider_ids) -> dict[int, int]:
    return _in_flight_by("provider_id", provider_ids)


def _free_providers() -> list[Provider]:
    """Active providers below their concurrency limit (rows locked like nodes)."""
    providers = list(
        _locked(Provider.objects.filter(is_active=True).order_by("id"), skip_locked=True)
    )
    busy = takes_on_providers([p.pk for p in providers])
    return [p for p in providers if p.max_concurrency > busy.get(p.pk, 0)]


def _failed_over(take_ids) -> dict:
    """Take id → providers that turned it away (429, 5xx, timeout) on an earlier attempt."""
    result: dict = defaultdict(set)
    jobs = ProviderJob.objects.dangerously_unscoped().filter(
        take_id__in=take_ids, status=JobStatus.FAILED_OVER
    )
    for take_id, provider_id in jobs.values_list("take_id", "provider_id"):
        result[take_id].add(provider_id)
    return result


def _routes_by_model(
    nodes: list[Node], providers: list[Provider] = ()
) -> dict[int, list[Node | Provider]]:
    """Model id → free nodes and providers that may serve it, best route first (most free
    slots first within a pool)."""
    by_pool: dict[int, list[Node]] = defaultdict(list)
    for node in nodes:
        by_pool[node.pool_id].append(node)
    served = set(
        Node.served_models.through.objects.filter(node_id__in=[n.pk for n in nodes]).values_list(
            "node_id", "videomodel_id"
        )
    )
    free_providers = {p.pk: p for p in providers}
    result: dict[int, list[Node | Provider]] = defaultdict(list)
    routes = Route.objects.filter(
        Q(kind=RouteKind.NODE_POOL, pool_id__in=by_pool)
        | Q(kind=RouteKind.PROVIDER, provider_id__in=free_providers),
        is_active=True,
    ).order_by("priority", "id")
    for route in routes:
        if route.kind == RouteKind.PROVIDER:
            result[route.video_model_id].append(free_providers[route.provider_id])
            continue
        pool_nodes = sorted(by_pool[route.pool_id], key=lambda n: -n.free)
        for node in pool_nodes:
            if (node.pk, route.video_model_id) in served and node not in result[
                route.video_model_id
            ]:
                result[route.video_model_id].append(node)
    return result


def claim_next(now=None) -> Take | None:
    """Claim one queued take and a node slot for it; None when nothing fits right now."""
    now = now or timezone.now()
    with transaction.atomic():
        nodes = list(
            _locked(Node.objects.filter(state=NodeState.ACTIVE).order_by("id"), skip_locked=True)
        )
        busy = takes_on_nodes([n.pk for n in nodes])
        free_nodes = []
        for node in nodes:
            node.free = node.slots - busy.get(node.pk, 0)
            if node.free > 0:
                free_nodes.append(node)
        free_providers = _free_providers()
        if not free_nodes and not free_providers:
            return None
        candidates_for = _routes_by_model(free_nodes, free_providers)
        if not candidates_for:
            return None
        queued = eligible_queued(now).filter(video_model_id__in=list(candidates_for))
        window = list(
            _locked(queue_order(queued, now), skip_locked=True, of=("self",))[:CLAIM_WINDOW]
        )
        if not window:
            return None
        full_workspaces: set[int] = set()
        # Only providers are skipped for having turned a take away; nodes use previous_node.
        turned_away = _failed_over([take.pk for take in window]) if free_providers else {}
        plan_of = plans.plans_for({take.workspace_id for take in window})
        for take in window:
            if take.workspace_id in full_workspaces:
                continue
            # The workspace row serializes concurrency checks across dispatchers: count
            # running takes only once it is locked.
            list(_locked(Workspace.objects.filter(pk=take.workspace_id).values_list("pk")))
            running = (
                Take.objects.dangerously_unscoped()
                .filter(workspace_id=take.workspace_id, status__in=ACTIVE_ON_NODE)
                .count()
            )
            if running >= plan_of[take.workspace_id].max_concurrent_takes:
                full_workspaces.add(take.workspace_id)
                continue
            options = candidates_for[take.video_model_id]
            others = [
                target
                for target in options
                if not (
                    target.pk == take.previous_node_id
                    if isinstance(target, Node)
                    else target.pk in turned_away.get(take.pk, ())
                )
            ]
            target = (others or options)[0]
            take.status = TakeStatus.DISPATCHING
            take.node = target if isinstance(target, Node) else None
            take.provider = target if isinstance(target, Provider) else None
            take.attempts += 1
            take.progress = 0
            take.dispatched_at = now
            take.lease_expires_at = now + timedelta(seconds=settings.TAKE_LEASE_SECONDS)
            # A fresh secret per attempt: a node we gave up on cannot report on it any more.
            take.webhook_secret = new_secret()
            take.save(
                update_fields=[
                    "status",
                    "node",
                    "provider",
                    "attempts",
                    "progress",
                    "dispatched_at",
                    "lease_expires_at",
                    "webhook_secret",
                ]
            )
            return take
        return None


def webhook_url(take: Take) -> str:
    path = reverse("cog_webhook", args=[take.pk, take.webhook_secret])
    return f"{settings.PUBLIC_BASE_URL}{path}"


def prediction_input(take: Take) -> dict[str, Any]:
    """The Cog input for a take: its parameters, its reference frames as data URLs."""
    shot = take.shot
    data: dict[str, Any] = {
        "prompt": shot.prompt,
        "negative_prompt": shot.negative_prompt,
        "seed": take.seed,
        "width": take.width,
        "height": take.height,
        "fps": take.fps,
        "seconds": take.duration_seconds,
    }
    if shot.reference_image:
        data["image"] = media.data_url(shot.reference_image)
    if shot.last_frame_image:
        data["last_frame"] = media.data_url(shot.last_frame_image)
    if take.node is not None:
        data.update(take.node.extra_input or {})
    return data


_clients: dict[tuple[str, str, float], CogClient] = {}


def client_for(node: Node) -> CogClient:
    """A kept-alive client per node and process (building one costs more than a PUT)."""
    key = (node.base_url, node.auth_token, float(settings.NODE_TIMEOUT_SECONDS))
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = CogClient(node.base_url, node.auth_token, timeout=key[2])
    return client


def requeue(take_id, node_id: int | None, reason: str, *, provider_id: int | None = None) -> None:
    """Put a take that could not run on `node_id` (or at `provider_id`) back in the queue,
    or fail it when out of attempts. Only acts if the take is still there."""
    with transaction.atomic():
        take = _locked(Take.objects.dangerously_unscoped().filter(pk=take_id)).get()
        if take.status not in ACTIVE_ON_NODE or take.node_id != node_id:
            return
        if take.provider_id != provider_id:
            return
        if take.attempts >= settings.TAKE_MAX_ATTEMPTS:
            fail_take(take.pk, f"Gave up after {take.attempts} attempts: {reason}")
            return
        log.info("take %s back to the queue: %s", take.pk, reason)
        take.status = TakeStatus.QUEUED
        take.previous_node_id = node_id
        take.node = None
        take.provider = None
        take.progress = 0
        take.lease_expires_at = None
        take.save(
            update_fields=[
                "status",
                "previous_node",
                "node",
                "provider",
                "progress",
                "lease_expires_at",
            ]
        )


def send_to_node(take: Take) -> None:
    """PUT a claimed take to its node; the outcome arrives by webhook."""
    node = take.node
    try:
        state = client_for(node).submit(
            str(take.pk), prediction_input(take), webhook_url(take), DISPATCH_EVENTS
        )
    except NodeAtCapacity as exc:
        requeue(take.pk, node.pk, str(exc))
    except TransientBackendError as exc:
        requeue(take.pk, node.pk, str(exc))
    except PermanentBackendError as exc:
        fail_take(take.pk, str(exc))
    else:
        from .callbacks import apply_prediction

        apply_prediction(take.pk, state, node_id=node.pk)


def send_take(take: Take) -> None:
    """Send a claimed take where it was placed: its node, or its upstream provider."""
    if take.provider_id is not None:
        from .providers import send_to_provider

        send_to_provider(take)
    else:
        send_to_node(take)


def dispatch_pending(limit: int = 1000) -> int:
    """Claim and send takes until nothing fits; returns how many were sent."""
    sent = 0
    while sent < limit:
        take = claim_next()
        if take is None:
            break
        send_take(take)
        sent += 1
    return sent


def queue_position(take: Take) -> int | None:
    """1-based place of a queued take among queued takes (classes first, then age)."""
    if take.status != TakeStatus.QUEUED:
        return None
    ahead = (
        Take.objects.dangerously_unscoped()
        .filter(status=TakeStatus.QUEUED)
        .filter(
            Q(priority__gt=take.priority)
            | Q(priority=take.priority, created_at__lt=take.created_at)
        )
        .count()
    )
    return ahead + 1
