"""The dispatcher: the database is the queue.

`claim_next()` picks the next queued take and a node for it in one short transaction:
plan priority class first, then the workspace with the least usage this period, then age;
never more takes on a node than its slots, never more running takes for a workspace than
its plan's `max_concurrent_takes`. It reads the queue in that order from one index (the
takes' sort keys, `generation.queue`), a window at a time and without locks, then locks
each candidate on its own: the workspace row (which serializes its concurrency count),
the take, and one node of the take's model found by one query (an idle node first)
whose slots are re-counted under its lock. On PostgreSQL every one of these locks is
`FOR UPDATE SKIP LOCKED`: what another dispatcher is placing right now is passed over,
never waited for, so several dispatchers work side by side; on SQLite, whose writers
are serialized (immediate transactions), the same code runs one at a time.

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
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from accounts.models import Workspace
from billing import periods, plans, pricing
from generation import lifecycle, queue
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

# How many queued takes one claim reads at a time (the best first) to find one that fits,
# and how many such windows at most (each leaves out the models and workspaces the last
# one found full).
CLAIM_WINDOW = 50
CLAIM_WINDOWS = 8


def _locked(queryset: QuerySet, **kwargs: Any) -> QuerySet:
    """FOR UPDATE [SKIP LOCKED] where the database has it; SQLite serializes writers anyway."""
    if not connection.features.has_select_for_update:
        return queryset
    if kwargs.get("skip_locked") and not connection.features.has_select_for_update_skip_locked:
        kwargs.pop("skip_locked")
    if kwargs.get("no_key") and not connection.features.has_select_for_no_key_update:
        kwargs.pop("no_key")
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


def _routes() -> dict[int, list[Route]]:
    """Model id → its active routes (node pools and providers), best first."""
    result: dict[int, list[Route]] = defaultdict(list)
    for route in Route.objects.filter(is_active=True).order_by("priority", "id"):
        result[route.video_model_id].append(route)
    return result


def _holding_sql(alias: str) -> str:
    """`lifecycle.holding_slot` as SQL on the take table aliased `alias` (one parameter:
    now)."""
    in_flight = ", ".join(f"'{status.value}'" for status in IN_FLIGHT)
    return (
        f"({alias}.status IN ({in_flight}) OR ({alias}.status = '{TakeStatus.CANCELED.value}' "
        f"AND {alias}.lease_expires_at > %s))"
    )


def _lock_node(
    pool_id: int, model_id: int, now, *, exclude=frozenset(), only: int | None = None
) -> Node | None:
    """An active node of the pool serving the model with a slot free, its row locked (SKIP
    LOCKED: a node another dispatcher is placing a take on right now is passed over): an
    idle one first (lowest id: found without counting every node's takes), else the one
    with the most free slots. The node's takes are counted again after the lock, so a slot
    taken by a claim that committed meanwhile is seen. No other node is locked.

    Plain SQL: this runs for every claim, and building the same statement with the ORM
    cost more than the database took to run it."""
    node_table = Node._meta.db_table
    served_table = Node.served_models.through._meta.db_table
    take_table = Take._meta.db_table
    lock = ""
    if connection.features.has_select_for_update_skip_locked:
        lock = "FOR UPDATE OF n SKIP LOCKED"
    busy = f"(SELECT COUNT(*) FROM {take_table} t WHERE t.node_id = n.id AND {_holding_sql('t')})"  # noqa: S608
    passed = set(exclude) - {None}
    for _ in range(8):  # a few nodes filled meanwhile at most; the next claim tries again
        where = ["n.pool_id = %s", "n.state = %s", "s.videomodel_id = %s"]
        params: list[Any] = [pool_id, NodeState.ACTIVE, model_id]
        if only is not None:
            where.append("n.id = %s")
            params.append(only)
        if passed:
            where.append(f"n.id NOT IN ({', '.join(['%s'] * len(passed))})")
            params.extend(passed)
        base = (
            f"SELECT n.* FROM {node_table} n JOIN {served_table} s ON s.node_id = n.id "  # noqa: S608
            f"WHERE {' AND '.join(where)}"
        )
        idle = (
            f"{base} AND NOT EXISTS (SELECT 1 FROM {take_table} t "  # noqa: S608
            f"WHERE t.node_id = n.id AND {_holding_sql('t')}) ORDER BY n.id LIMIT 1 {lock}"
        )
        found = list(Node.objects.raw(idle, [*params, now]))
        if not found:
            some = (
                f"{base} AND n.slots > {busy} ORDER BY n.slots - {busy} DESC, n.id LIMIT 1 {lock}"
            )
            found = list(Node.objects.raw(some, [*params, now, now]))
        if not found:
            return None
        node = found[0]
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {busy.replace('n.id', '%s')}", [node.pk, now])
            (taken,) = cursor.fetchone()
        if taken < node.slots:
            return node
        passed.add(node.pk)
    return None


def _lock_target(
    take: Take,
    routes: list[Route],
    providers: dict[int, Provider],
    turned_away: set[int],
    skip_nodes: frozenset[int],
    now,
) -> Node | Provider | None:
    """A free slot for the take, its node locked: the model's routes in priority order, the
    node of its last failed attempt and providers that turned it away tried last."""
    later: list[Provider | int] = []
    avoid = take.previous_node_id
    for route in routes:
        if route.kind == RouteKind.PROVIDER:
            provider = providers.get(route.provider_id)
            if provider is not None and provider.pk in turned_away:
                later.append(provider)
            elif provider is not None:
                return provider  # providers are few: `_free_providers` locked them all
            continue
        node = _lock_node(
            route.pool_id, take.video_model_id, now, exclude=skip_nodes | {avoid} - {None}
        )
        if node is not None:
            return node
        if avoid is not None and avoid not in skip_nodes:
            later.append(route.pool_id)
    for item in later:
        if isinstance(item, Provider):
            return item
        node = _lock_node(item, take.video_model_id, now, only=avoid)
        if node is not None:
            return node
    return None


def _lock_workspace(workspace_id: int) -> bool:
    """Lock the workspace's row, which serializes its concurrency check across dispatchers;
    False if another claim holds it (SKIP LOCKED: this claim passes the workspace over for
    now instead of waiting for that one to commit).

    FOR NO KEY UPDATE, not FOR UPDATE: every row inserted or updated with a foreign key to
    the workspace (a ledger entry, a webhook delivery, a take) takes FOR KEY SHARE on it,
    at commit since Django's foreign keys are deferred. A FOR UPDATE here deadlocked with a
    cancel: the cancel held a take this claim's `record_usage` must update, and its commit
    waited for this lock. NO KEY UPDATE still serializes claims for the workspace."""
    locked = _locked(
        Workspace.objects.filter(pk=workspace_id).values_list("pk"), skip_locked=True, no_key=True
    )
    return bool(list(locked))


def _lock_queued(take_id) -> Take | None:
    """The take, row-locked, if it is still queued and no other dispatcher holds it; with
    `running`, its workspace's takes in flight. Counted in the same statement: the caller
    locked the workspace in an earlier one, so this statement sees every other claim for
    the workspace that committed before that lock."""
    in_flight = (
        Take.objects.dangerously_unscoped()
        .filter(workspace=OuterRef("workspace"), status__in=IN_FLIGHT)
        .order_by()
        .values("workspace")
        .annotate(n=Count("pk"))
        .values("n")
    )
    locked = _locked(
        Take.objects.dangerously_unscoped()
        .filter(pk=take_id, status=TakeStatus.QUEUED)
        .annotate(running=Coalesce(Subquery(in_flight), 0)),
        skip_locked=True,
        of=("self",),
    )
    return locked.first()


def claim_next(now=None, *, skip_nodes: frozenset[int] = frozenset()) -> Take | None:
    """Claim one queued take and a node slot for it; None when nothing fits right now.
    `skip_nodes`: nodes that just answered "at capacity" (their slots are busy with work
    we do not know of, e.g. a cancel still on its way).

    The queue is read in order from its index, a window at a time, without locks; each
    candidate is then locked on its own (its workspace, the take, one node), so a claim
    holds only what it places and other dispatchers take the next candidates. A model
    with no free slot or a workspace at its limit (or being placed by another claim) is
    left out of the next window, so its takes at the head of the queue do not hide
    takes further down that fit."""
    now = now or timezone.now()
    # The active pricing schedule, read once: off-peak windows and the billing month.
    schedule = pricing.active_schedule()
    zone = periods.billing_time_zone(schedule.time_zone if schedule else "")
    period = queue.refresh_keys(now, periods.month_start(now, zone))
    with queue.claiming(now, period), transaction.atomic():
        routes = _routes()
        has_providers = any(r.kind == RouteKind.PROVIDER for rs in routes.values() for r in rs)
        providers = {p.pk: p for p in _free_providers()} if has_providers else {}
        full_models: set[int] = set()
        passed_workspaces: set[int] = set()
        for _ in range(CLAIM_WINDOWS):
            models = [model for model in routes if model not in full_models]
            if not models:
                return None
            queued = eligible_queued(now, schedule).filter(video_model_id__in=models)
            if passed_workspaces:
                queued = queued.exclude(workspace_id__in=passed_workspaces)
            # (id, workspace, model) rows, not takes: only the one placed is loaded whole.
            window = list(
                queue_order(queued, period).values_list("pk", "workspace_id", "video_model_id")[
                    :CLAIM_WINDOW
                ]
            )
            if not window:
                return None
            learned = len(full_models) + len(passed_workspaces)
            # Only providers are skipped for having turned a take away; nodes use previous_node.
            turned_away = _failed_over([row[0] for row in window]) if providers else {}
            plan_of: dict[int, Any] = {}  # read for the candidates this claim gets to
            for take_id, workspace_id, model_id in window:
                if workspace_id in passed_workspaces or model_id in full_models:
                    continue
                if not _lock_workspace(workspace_id):
                    passed_workspaces.add(workspace_id)
                    continue
                take = _lock_queued(take_id)
                if take is None:
                    continue  # another dispatcher placed it, or it left the queue meanwhile
                if take.workspace_id not in plan_of:
                    plan_of.update(plans.plans_for({take.workspace_id}))
                if take.running >= plan_of[take.workspace_id].max_concurrent_takes:
                    passed_workspaces.add(take.workspace_id)
                    continue
                target = _lock_target(
                    take,
                    routes[take.video_model_id],
                    providers,
                    turned_away.get(take.pk, set()),
                    skip_nodes,
                    now,
                )
                if target is None:
                    full_models.add(take.video_model_id)  # every slot for it is taken
                    continue
                lifecycle.start_attempt(take, target, now)
                return take
            if len(window) < CLAIM_WINDOW or len(full_models) + len(passed_workspaces) == learned:
                return None  # the whole queue was seen, or the next window would be this one
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
