"""Scheduler simulation: the real dispatcher (`workers.dispatch.claim_next`) on a real
scratch database, with GPU nodes simulated in process on a virtual clock.

Two runs of 1,000 takes each on 10 nodes of mixed speed:
- classes: 30 workspaces in three plan classes (priority 0, 10, 20), all takes queued at
  once — node utilization while the queue is non-empty, and p95 queue wait per class
  (must follow class order);
- fairness: 50 equal workspaces, each queueing 20 takes one workspace after another —
  Jain's index of the workspaces' mean queue wait (FIFO by age, the baseline printed
  beside it, would serve them one after another).
"""

from __future__ import annotations

import heapq
import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from bench.scratch import scratch_database

QUICK = os.environ.get("BENCH_QUICK") == "1"
NODES = 10
TAKES = 50 if QUICK else 1000
T0 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def jain(values: list[float]) -> float:
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


def _reset() -> None:
    from accounts.models import Workspace
    from billing.models import Plan, Subscription
    from generation.models import Node, NodePool, Project, Route, Submission, Take, VideoModel

    for model in (Take, Submission, Project, Subscription):
        model.objects.dangerously_unscoped().all().delete()
    for model in (Route, Node, NodePool, Plan, Workspace):
        model.objects.all().delete()
    VideoModel.objects.all().delete()


def _world(classes: list[int], rng: random.Random):
    """Nodes, a model, and one workspace per entry of `classes` on a plan of that priority."""
    from accounts.models import Workspace
    from billing.models import Plan, Subscription
    from generation.models import Node, NodePool, Project, Route, VideoModel

    model = VideoModel.objects.create(
        slug="sim", name="Sim", family="Sim", resolutions=["480p"], durations=[1, 2, 3, 4, 5]
    )
    pool = NodePool.objects.create(slug="sim", name="Sim")
    Route.objects.create(video_model=model, pool=pool)
    speeds = {}
    for index in range(NODES):
        node = Node.objects.create(
            name=f"sim-{index}", pool=pool, base_url="http://sim.invalid", auth_token="x"
        )
        node.served_models.add(model)
        speeds[node.pk] = 0.5 + 2.5 * index / (NODES - 1)  # wall seconds per video second
    plans = {
        priority: Plan.objects.create(
            slug=f"sim-{priority}",
            name=f"Sim {priority}",
            queue_priority=priority,
            max_concurrent_takes=1000,
        )
        for priority in sorted(set(classes))
    }
    workspaces = []
    for index, priority in enumerate(classes):
        workspace = Workspace.objects.create(name=f"ws{index}", slug=f"sim-ws-{index}")
        Subscription.objects.dangerously_unscoped().create(
            workspace=workspace,
            plan=plans[priority],
            current_period_start=T0 - timedelta(days=1),
            current_period_end=T0 + timedelta(days=30),
        )
        project = Project.objects.dangerously_unscoped().create(workspace=workspace, name="p")
        shot = project.shots.create(prompt="sim")
        workspaces.append((workspace, shot, priority))
    return model, speeds, workspaces


def _queue(model, order: list[tuple], rng: random.Random) -> None:
    from generation.models import Submission, Take

    takes = []
    for index, (workspace, shot, priority) in enumerate(order):
        submission = Submission.objects.dangerously_unscoped().create(
            workspace=workspace, idempotency_key=f"s{index}", fingerprint="x"
        )
        takes.append(
            Take(
                workspace=workspace,
                shot=shot,
                submission=submission,
                video_model=model,
                mode="standard",
                resolution="480p",
                aspect_ratio="16:9",
                width=854,
                height=480,
                duration_seconds=rng.randint(1, 5),
                fps=16,
                seed=index,
                quote={},
                priority=priority,
            )
        )
    Take.objects.bulk_create(takes)
    # Submission order is creation order: one take a millisecond.
    for index, take in enumerate(takes):
        Take.objects.dangerously_unscoped().filter(pk=take.pk).update(
            created_at=T0 + timedelta(milliseconds=index)
        )


def _simulate(speeds: dict[int, float]) -> dict:
    """Run the queue dry; returns waits by take, busy node-seconds and the makespan."""
    from generation.models import Take, TakeStatus
    from workers.dispatch import claim_next

    now = T0 + timedelta(seconds=1)
    running: list[tuple[datetime, str, int]] = []
    busy = 0.0
    waits: dict[str, float] = {}
    claims = 0
    claim_time = 0.0
    queue_empty_at = None
    while True:
        while True:
            started = time.perf_counter()
            take = claim_next(now)
            claim_time += time.perf_counter() - started
            if take is None:
                break
            claims += 1
            render = take.duration_seconds * speeds[take.node_id]
            busy += render
            waits[str(take.pk)] = (now - take.created_at).total_seconds()
            Take.objects.dangerously_unscoped().filter(pk=take.pk).update(status=TakeStatus.RUNNING)
            heapq.heappush(running, (now + timedelta(seconds=render), str(take.pk), take.node_id))
        if queue_empty_at is None and not Take.objects.filter(status=TakeStatus.QUEUED).exists():
            queue_empty_at = now
        if not running:
            break
        now, take_id, _node = heapq.heappop(running)
        Take.objects.dangerously_unscoped().filter(pk=take_id).update(status=TakeStatus.SUCCEEDED)
    return {
        "waits": waits,
        "busy": busy,
        "queue_empty_at": queue_empty_at,
        "claims": claims,
        "claim_ms": 1000 * claim_time / max(1, claims),
    }


def _utilization(result: dict, speeds: dict[int, float]) -> float:
    """Share of node capacity used while takes were waiting (start → queue drained)."""
    from generation.models import Take

    span = (result["queue_empty_at"] - (T0 + timedelta(seconds=1))).total_seconds()
    # Busy time inside the span: every claim up to the drain started inside it; count each
    # render's part before the drain.
    busy = 0.0
    drained = result["queue_empty_at"]
    for take in Take.objects.dangerously_unscoped().all():
        start = take.dispatched_at
        end = start + timedelta(seconds=take.duration_seconds * speeds[take.node_id])
        busy += max(0.0, (min(end, drained) - start).total_seconds())
    return busy / (span * len(speeds))


def run_classes(rng: random.Random) -> None:
    from generation.models import Take

    _reset()
    classes = [0] * 10 + [10] * 10 + [20] * 10
    model, speeds, workspaces = _world(classes, rng)
    order = [workspaces[rng.randrange(len(workspaces))] for _ in range(TAKES)]
    _queue(model, order, rng)
    result = _simulate(speeds)
    by_class: dict[int, list[float]] = {0: [], 10: [], 20: []}
    for take in Take.objects.dangerously_unscoped().all():
        by_class[take.priority].append(result["waits"][str(take.pk)])
    utilization = _utilization(result, speeds)
    p95 = {cls: _p95(waits) for cls, waits in by_class.items()}
    print(f"classes: {result['claims']} takes on {NODES} nodes, {result['claim_ms']:.1f} ms/claim")
    print(f"  node utilization while queue non-empty: {utilization:.1%} (target >= 95%)")
    for cls in (20, 10, 0):
        print(f"  p95 queue wait, priority {cls:>2}: {p95[cls]:8.1f} s (sim)")
    ordered = p95[20] <= p95[10] <= p95[0]
    print(f"  p95 waits follow class order: {ordered}")


def run_fairness(rng: random.Random) -> None:
    from generation.models import Take

    _reset()
    model, speeds, workspaces = _world([0] * 50, rng)
    # Each workspace queues its 20 takes in one burst, one workspace after another.
    order = [ws for ws in workspaces for _ in range(TAKES // len(workspaces))]
    _queue(model, order, rng)
    result = _simulate(speeds)
    per_ws: dict[int, list[float]] = {}
    fifo: dict[int, list[float]] = {}
    takes = list(Take.objects.dangerously_unscoped().order_by("created_at"))
    # Baseline: strict age order on the same nodes, mean wait ~ position in the queue.
    throughput = len(takes) / (result["queue_empty_at"] - T0).total_seconds()
    for position, take in enumerate(takes):
        per_ws.setdefault(take.workspace_id, []).append(result["waits"][str(take.pk)])
        fifo.setdefault(take.workspace_id, []).append(position / throughput)
    index = jain([statistics.mean(w) for w in per_ws.values()])
    baseline = jain([statistics.mean(w) for w in fifo.values()])
    print(f"fairness: 50 equal workspaces, {result['claims']} takes")
    print(f"  Jain's index of mean queue wait: {index:.3f} (target >= 0.9)")
    print(f"  FIFO baseline on the same queue: {baseline:.3f} (ratio {index / baseline:.2f}x)")


def main() -> None:
    with scratch_database("scheduler"):  # a database of its own (never the test suite's)
        rng = random.Random(7)
        run_classes(rng)
        run_fairness(rng)
