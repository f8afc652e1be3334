"""The dispatcher: the database is the queue.

`claim_next()` picks the next queued take and a node for it in one short transaction:
plan priority class first, then the workspace with the least usage this period, then age;
never more takes on a node than its slots, never more running takes for a workspace than
its plan's `max_concurrent_takes`. On PostgreSQL take rows and the one node row a claim
takes a slot on are locked with `SELECT … FOR UPDATE SKIP LOCKED` (free slots are read
without locks, then re-counted under the chosen node's lock), so several dispatchers work
side by side instead of queueing behind a lock on every node; on SQLite,
whose writers are serialized (immediate transactions), the same code runs one at a time.

Upstream providers are claimed the same way: a provider row is a set of slots (its
concurrency limit), and a model's routes (node pools and providers) are tried in priority
order; providers that turned this take away (429, 5xx, timeout) go last.

`send_take()` then builds the take's `Request` once and submits it through the target's
backend (`workers.backends`): async, the backend answers at once and the outcome comes by
webhook or poll. `_send` is the one place that maps backend errors to requeue or fail;
what a backend reports goes to `generation.lifecycle`, which alone changes a take's status.
Nothing here waits for a GPU.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from accounts.models import Workspace
from billing import plans
from generation import lifecycle
from generation.models import IN_FLIGHT, Node, NodeState, Route, RouteKind, Take, TakeStatus
from generation.queue import eligible_queued, queue_order
from generation.reports import State

from . import media
from .backends import (
    Backend,
    ModerationBlocked,
    NodeAtCapacity,
    PermanentBackendError,
    Request,
    TransientBackendError,
    backend_for,
)
from .backends.cog import CogBackend
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
    """Takes holding a slot (sent, or canceled and not yet let go of) per node or provider."""
    return dict(
        Take.objects.dangerously_unscoped()
        .filter(lifecycle.holding_slot(), **{f"{field}__in": ids})
        .order_by()
        .values(field)
        .annotate(n=Count("pk"))
        .values_list(field, "n")
    )


def takes_on_nodes(node_ids) -> dict[int, int]:
    return _in_flight_by("node_id", node_ids)


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


def _free_nodes(skip_nodes: frozenset[int]) -> list[Node]:
    """Active nodes with a free slot, read without locking them: a claim locks only the
    node it takes (`_lock_slot`), so dispatchers working side by side do not wait on, or
    skip, each other's nodes."""
    active = Node.objects.filter(state=NodeState.ACTIVE).exclude(pk__in=skip_nodes)
    nodes = list(active.order_by("id"))
    busy = takes_on_nodes([n.pk for n in nodes])
    free = []
    for node in nodes:
        node.free = node.slots - busy.get(node.pk, 0)
        if node.free > 0:
            free.append(node)
    return free


def _lock_slot(targets: list[Node | Provider]) -> Node | Provider | None:
    """The first target with a slot still free, its row locked (SKIP LOCKED: a node another
    dispatcher is placing a take on right now is passed over). The node's takes are counted
    again after the lock, so a slot taken by a claim that committed meanwhile is seen."""
    for target in targets:
        if isinstance(target, Provider):
            return target  # providers are few: `_free_providers` locked them all
        locked = _locked(
            Node.objects.filter(pk=target.pk, state=NodeState.ACTIVE).values_list("pk"),
            skip_locked=True,
        )
        if list(locked) and takes_on_nodes([target.pk]).get(target.pk, 0) < target.slots:
            return target
    return None


def _lock_queued(take: Take) -> Take | None:
    """The take, row-locked, if it is still queued and no other dispatcher holds it."""
    locked = _locked(
        Take.objects.dangerously_unscoped().filter(pk=take.pk, status=TakeStatus.QUEUED),
        skip_locked=True,
    )
    return locked.first()


def claim_next(now=None, *, skip_nodes: frozenset[int] = frozenset()) -> Take | None:
    """Claim one queued take and a node slot for it; None when nothing fits right now.
    `skip_nodes`: nodes that just answered "at capacity" (their slots are busy with work
    we do not know of, e.g. a cancel still on its way)."""
    now = now or timezone.now()
    with transaction.atomic():
        free_nodes = _free_nodes(skip_nodes)
        free_providers = _free_providers()
        if not free_nodes and not free_providers:
            return None
        candidates_for = _routes_by_model(free_nodes, free_providers)
        if not candidates_for:
            return None
        queued = eligible_queued(now).filter(video_model_id__in=list(candidates_for))
        # Read without locks: each candidate is locked on its own below, so a claim holds
        # only the take it places and other dispatchers still see the rest of the window.
        window = list(queue_order(queued, now)[:CLAIM_WINDOW])
        if not window:
            return None
        full_workspaces: set[int] = set()
        # Only providers are skipped for having turned a take away; nodes use previous_node.
        turned_away = _failed_over([take.pk for take in window]) if free_providers else {}
        plan_of = plans.plans_for({take.workspace_id for take in window})
        for candidate in window:
            if candidate.workspace_id in full_workspaces:
                continue
            take = _lock_queued(candidate)
            if take is None:
                continue  # another dispatcher is placing it, or it left the queue meanwhile
            # The workspace row serializes concurrency checks across dispatchers: count
            # running takes only once it is locked.
            list(_locked(Workspace.objects.filter(pk=take.workspace_id).values_list("pk")))
            running = (
                Take.objects.dangerously_unscoped()
                .filter(workspace_id=take.workspace_id, status__in=IN_FLIGHT)
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
            target = _lock_slot(others + [t for t in options if t not in others])
            if target is None:
                continue  # every slot for this take's model was taken meanwhile
            lifecycle.start_attempt(take, target, now)
            return take
        return None


def webhook_url(take: Take) -> str:
    """The one webhook URL for the take's current attempt, whatever its backend."""
    path = reverse("take_webhook", args=[take.pk, take.webhook_secret])
    return f"{settings.PUBLIC_BASE_URL}{path}"


def _route(take: Take) -> Route | None:
    if take.provider_id is None:
        return None
    return Route.objects.get(video_model_id=take.video_model_id, provider_id=take.provider_id)


def target_of(take: Take) -> Node | Provider | None:
    return take.node if take.provider_id is None else take.provider


def request_for(take: Take) -> Request:
    """The take's current attempt as every backend sees it, built here and only here."""
    inputs = take.inputs()  # what the take was drawn from, not what its shot says now
    route = _route(take)
    if route is not None:
        model, extra = route.provider_model, route.extra_input
    else:
        model, extra = "", take.node.extra_input if take.node else {}
    return Request(
        take_id=str(take.pk),
        attempt=take.attempts,
        model=model,
        prompt=inputs["prompt"],
        negative_prompt=inputs["negative_prompt"],
        seed=take.seed,
        resolution=take.resolution,
        aspect_ratio=take.aspect_ratio,
        width=take.width,
        height=take.height,
        duration=take.duration_seconds,
        fps=take.fps,
        image=media.data_url(inputs["reference_image"]) if inputs["reference_image"] else None,
        last_frame=(
            media.data_url(inputs["last_frame_image"]) if inputs["last_frame_image"] else None
        ),
        webhook_url=webhook_url(take),
        secret=take.webhook_secret,
        extra=dict(extra or {}),
    )


def _jobs():
    return ProviderJob.objects.dangerously_unscoped()


def _send(take: Take, backend: Backend, request: Request) -> State | None:
    """Submit; map a backend error to requeue or fail (the one place that decides)."""
    secret = take.webhook_secret
    try:
        return backend.submit(request)
    except NodeAtCapacity as exc:
        lifecycle.requeue(take.pk, secret, str(exc), counts=False)
        raise
    except ModerationBlocked as exc:
        where = take.provider.name if take.provider_id else "the node"
        lifecycle.fail_take(
            take.pk,
            f"Blocked by {where}'s moderation: {exc}",
            secret=secret,
            attempt_status=JobStatus.BLOCKED,
        )
    except TransientBackendError as exc:
        lifecycle.requeue(take.pk, secret, str(exc))
    except PermanentBackendError as exc:
        lifecycle.fail_take(take.pk, str(exc), secret=secret)
    return None


def send_take(take: Take) -> None:
    """Send a claimed take where it was placed (a node or a provider): build its request
    once, submit it, and hand the answer to the lifecycle. Raises `NodeAtCapacity` after
    putting the take back (the caller skips that node for a while)."""
    request = request_for(take)
    target = target_of(take)
    # The attempt record, on a node or at a provider (time to result, outcome, cost).
    on_provider = take.provider_id is not None
    job = _jobs().create(
        take=take,
        provider=target if on_provider else None,
        node=None if on_provider else target,
        external_id="" if on_provider else str(take.pk),
        attempt=take.attempts,
        submitted_at=timezone.now(),
    )
    with backend_for(target) as backend:
        if not backend.calls_back:
            request = replace(request, webhook_url="")
        state = _send(take, backend, request)
        if state is None:
            return
        if on_provider:
            _jobs().filter(pk=job.pk).update(external_id=state.external_id)
        lifecycle.apply_state(
            take.pk, state, secret=take.webhook_secret, calls_back=backend.calls_back
        )
        if (
            Take.objects.dangerously_unscoped()
            .filter(pk=take.pk, status=TakeStatus.CANCELED, webhook_secret=take.webhook_secret)
            .exists()
        ):
            # Canceled while the submit was on its way: stop it now that it has an id.
            _cancel(take, backend, request, state.external_id)


def dispatch_pending(limit: int = 1000) -> int:
    """Claim and send takes until nothing fits; returns how many were sent."""
    sent = 0
    at_capacity: set[int] = set()
    while sent < limit:
        take = claim_next(skip_nodes=frozenset(at_capacity))
        if take is None:
            break
        try:
            send_take(take)
        except NodeAtCapacity:
            at_capacity.add(take.node_id)
            continue
        sent += 1
    return sent


def _cancel(take: Take, backend: Backend, request: Request, external_id: str) -> None:
    try:
        still_had_it = backend.cancel(request, external_id)
    except TransientBackendError as exc:
        log.warning("take %s: cancel did not reach its backend: %s", take.pk, exc)
        return  # its lease frees the slot
    except PermanentBackendError as exc:
        log.warning("take %s: cancel refused: %s", take.pk, exc)
        still_had_it = False
    # A node that still had it frees the slot when the prediction ends (its canceled
    # webhook confirms); a provider's slot is ours again once it answered.
    if not still_had_it or not isinstance(backend, CogBackend):
        lifecycle.confirm_cancel(take.pk)


def cancel_attempt(take_id: str) -> bool:
    """Stop a canceled take at its backend; False if it holds no slot any more."""
    take = (
        Take.objects.dangerously_unscoped()
        .select_related("node", "provider", "shot", "video_model")
        .filter(pk=take_id, status=TakeStatus.CANCELED, lease_expires_at__isnull=False)
        .first()
    )
    target = take and target_of(take)
    if target is None:
        return False
    external_id = str(take.pk)
    if take.provider_id is not None:
        job = _jobs().filter(take=take, attempt=take.attempts).first()
        if job is None or not job.external_id:
            lifecycle.confirm_cancel(take.pk)
            return False
        external_id = job.external_id
    with backend_for(target) as backend:
        _cancel(take, backend, request_for(take), external_id)
    return True
