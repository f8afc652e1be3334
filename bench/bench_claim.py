"""The dispatcher's claim at scale: how long one `claim_next()` takes as the queue grows,
and how claims per second grow with dispatcher processes.

Worlds (queued takes, workspaces, nodes), grown in one scratch database, nodes serving
a mix of three models, workspaces on three plan classes:
- 1,000 / 100 / 10 and 10,000 / 1,000 / 10 (every run): the median claim of each, and
  the ratio of the larger to the smaller (goal ≤ 1.5×: not linear in the queue);
- 100,000 / 10,000 / 1,000 with BENCH_SCALE=1 (slow to build): median claim ≤ 5 ms and
  ≤ 1.5× the 1,000 figure.
Each measured claim is followed (untimed) by finishing the take, so the slot frees and the
queue stays the same size. Then 1, 2 and 4 processes claim and finish together for a few
seconds on the largest world: claims per second against one process (goals ≥ 1.8× for
two, ≥ 3× for four), with what their database backends were seen doing (sampled from
pg_stat_activity: running, waiting for the dispatcher's next statement, waiting on a
lock or the WAL) and how busy the machine's CPUs were: lock waits near zero with the
CPUs saturated say the claims are CPU-bound, not serialized. The scheduling quality
(utilization, class order, Jain's index) is bench_scheduler's.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import statistics
import threading
import time
from collections import Counter
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from bench.scratch import scratch_database

QUICK = os.environ.get("BENCH_QUICK") == "1"
SCALE = os.environ.get("BENCH_SCALE") == "1"
WORLDS = [(1_000, 100, 10), (10_000, 1_000, 10)]
if SCALE:
    WORLDS.append((100_000, 10_000, 1_000))
if QUICK:
    WORLDS = [(300, 30, 10), (1_500, 150, 10)]
CLAIMS = 20 if QUICK else 150
PROCESS_SECONDS = 1.5 if QUICK else 5.0
PROCESSES = [1, 2] if QUICK else [1, 2, 4]
MODELS = 3
PRIORITIES = [0, 10, 20]


def _catalog() -> dict:
    from billing.models import Plan
    from generation.models import NodePool, Route, VideoModel

    models, pools = [], []
    for index in range(MODELS):
        model = VideoModel.objects.create(
            slug=f"claim-{index}", name=f"Claim {index}", family="Claim", resolutions=["480p"],
            durations=[1, 2, 3, 4, 5],
        )  # fmt: skip
        pool = NodePool.objects.create(slug=f"claim-{index}", name=f"Claim {index}")
        Route.objects.create(video_model=model, pool=pool)
        models.append(model)
        pools.append(pool)
    plans = [
        Plan.objects.create(
            slug=f"claim-{p}", name=f"Claim {p}", queue_priority=p, max_concurrent_takes=4
        )
        for p in PRIORITIES
    ]
    return {
        "models": models,
        "pools": pools,
        "plans": plans,
        "workspaces": [],
        "nodes": 0,
        "takes": 0,
    }


def _grow(world: dict, queued: int, workspaces: int, nodes: int, rng: random.Random) -> None:
    """Add workspaces, nodes and queued takes until the world has this many."""
    from accounts.models import Workspace
    from billing import periods
    from billing.models import Subscription
    from generation import queue
    from generation.models import (
        Node,
        Project,
        Shot,
        Submission,
        Take,
        TakeStatus,
        WorkspaceUsage,
    )

    now = timezone.now()
    new = [
        Workspace(name=f"w{i}", slug=f"claim-w{i}")
        for i in range(len(world["workspaces"]), workspaces)
    ]
    Workspace.objects.bulk_create(new, batch_size=2_000)
    subs, projects = [], []
    for workspace in new:
        plan = world["plans"][workspace.pk % len(world["plans"])]
        subs.append(
            Subscription(
                workspace=workspace,
                plan=plan,
                current_period_start=now - timedelta(days=1),
                current_period_end=now + timedelta(days=30),
            )
        )
        projects.append(Project(workspace=workspace, name="p"))
    Subscription.objects.dangerously_unscoped().bulk_create(subs, batch_size=2_000)
    Project.objects.dangerously_unscoped().bulk_create(projects, batch_size=2_000)
    shots = Shot.objects.bulk_create([Shot(project=p, prompt="p") for p in projects], 2_000)
    submissions = Submission.objects.dangerously_unscoped().bulk_create(
        [Submission(workspace=w, idempotency_key="k", fingerprint="x") for w in new], 2_000
    )
    first_new = len(world["workspaces"])
    rows = []
    for workspace, shot, submission in zip(new, shots, submissions, strict=True):
        plan = world["plans"][workspace.pk % len(world["plans"])]
        rows.append((len(world["workspaces"]), workspace.pk, shot.pk, submission.pk))
        world["workspaces"].append((workspace.pk, shot.pk, submission.pk, plan.queue_priority))
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS bench_workspace (idx int PRIMARY KEY, ws bigint, "
            "shot bigint, submission bigint, priority int, usage int)"
        )
        # Usage this period: workspaces have rendered different amounts, so the fairness
        # order is not simply age.
        cursor.executemany(
            "INSERT INTO bench_workspace VALUES (%s, %s, %s, %s, %s, %s)",
            [(*row, world["workspaces"][row[0]][3], rng.randrange(600)) for row in rows],
        )
        cursor.execute(
            f"INSERT INTO {WorkspaceUsage._meta.db_table} (workspace_id, period_start, seconds) "  # noqa: S608
            f"SELECT ws, %s, usage FROM bench_workspace WHERE idx >= %s",
            [periods.month_start(now), first_new],
        )

    added = []
    for index in range(world["nodes"], nodes):
        model = index % MODELS
        added.append(
            Node(
                name=f"claim-{index}",
                pool=world["pools"][model],
                base_url="http://claim.invalid",
                auth_token="x",
            )
        )
    Node.objects.bulk_create(added, batch_size=2_000)
    Node.served_models.through.objects.bulk_create(
        [
            Node.served_models.through(node_id=n.pk, videomodel_id=world["models"][i % MODELS].pk)
            for i, n in enumerate(added, start=world["nodes"])
        ],
        batch_size=2_000,
    )
    world["nodes"] = nodes

    missing = queued - Take.objects.filter(status=TakeStatus.QUEUED).count()
    _insert_takes(world, missing, periods.month_start(now), rng)
    # The earlier takes' sort keys follow the usage the new workspaces brought (none).
    queue.refresh_keys(now)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def _insert_takes(world: dict, count: int, period, rng: random.Random) -> None:
    """`count` queued takes of random workspaces, oldest first, in one INSERT … SELECT over
    generate_series (100,000 take a few seconds; the ORM would take minutes), with their
    sort keys as a submission sets them."""
    from generation.models import Take

    if count <= 0:
        return
    columns = {
        "id": "gen_random_uuid()",
        "workspace_id": "w.ws",
        "shot_id": "w.shot",
        "submission_id": "w.submission",
        "video_model_id": "(%s::bigint[])[1 + g %% %s]",
        "mode": "'standard'",
        "resolution": "'480p'",
        "aspect_ratio": "'16:9'",
        "width": "854",
        "height": "480",
        "duration_seconds": "1 + floor(random() * 5)::int",
        "fps": "16",
        "seed": "g",
        "quote": "'{}'::jsonb",
        "charged": "0",
        "is_favourite": "false",
        "prompt": "'p'",
        "negative_prompt": "''",
        "prompt_version": "1",
        "reference_image": "''",
        "last_frame_image": "''",
        "status": "'queued'",
        "priority": "w.priority",
        "queue_usage": "w.usage",
        "queue_period": "%s",
        "progress": "0",
        "provider_cost": "0",
        "attempts": "0",
        "webhook_secret": "md5(g::text)",
        "created_at": "now() - interval '1 day' + g * interval '1 ms'",
        "error": "''",
        "output_original": "''",
        "output_poster": "''",
        "output_preview": "''",
        "live_preview": "''",
        "measured_codec": "''",
    }
    start = world["takes"]
    world["takes"] += count
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(%s)", [rng.random()])
        cursor.execute(
            f"INSERT INTO {Take._meta.db_table} ({', '.join(columns)}) "  # noqa: S608
            f"SELECT {', '.join(columns.values())} FROM ("
            f"  SELECT g, floor(random() * %s)::int AS pick"
            f"  FROM generate_series(%s, %s) g OFFSET 0"
            f") picked JOIN bench_workspace w ON w.idx = picked.pick",
            [
                [m.pk for m in world["models"]],
                MODELS,
                period,
                len(world["workspaces"]),
                start + 1,
                start + count,
            ],
        )


def _claim_and_finish() -> float | None:
    """One timed claim; the claimed take then finishes (untimed) so its slot frees."""
    from generation.models import Take, TakeStatus
    from workers.dispatch import claim_next

    started = time.perf_counter()
    take = claim_next()
    elapsed = time.perf_counter() - started
    if take is None:
        return None
    Take.objects.dangerously_unscoped().filter(pk=take.pk).update(status=TakeStatus.SUCCEEDED)
    return elapsed


def _median_claim() -> float:
    times = []
    for _ in range(CLAIMS):
        elapsed = _claim_and_finish()
        if elapsed is None:
            raise RuntimeError("nothing to claim: the world has no free slot or no queue")
        times.append(elapsed)
    return statistics.median(times) * 1e3


def _claimer(db_name: str, seconds: float, ready, results) -> None:
    """One dispatcher process: claim and finish until the time is up."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()  # (already done when the parent ran as `python -m bench`)
    connection.close()
    connection.settings_dict["NAME"] = db_name
    _claim_and_finish()  # warm the connection
    ready.wait()
    until = time.time() + seconds
    claims = 0
    while time.time() < until:
        if _claim_and_finish() is not None:
            claims += 1
    connection.close()
    results.put(claims)


def _cpu_ticks() -> tuple[int, int]:
    """(all, idle) CPU ticks of the machine since boot (Linux /proc/stat; zeros elsewhere)."""
    try:
        with open("/proc/stat") as handle:
            ticks = [int(v) for v in handle.readline().split()[1:]]
    except OSError:
        return 0, 0
    return sum(ticks), ticks[3] + ticks[4]


def _sample_waits(db_name: str, stop: threading.Event, seen: Counter) -> None:
    """Every 10 ms, what each backend of the dispatchers is doing (pg_stat_activity):
    running, waiting for its client, waiting on a lock, on the WAL…"""
    import psycopg

    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=db_name,
        autocommit=True,
    ) as conn:
        while not stop.wait(0.01):
            rows = conn.execute(
                "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = %s",
                [db_name, "client backend"],
            ).fetchall()
            for state, kind, event in rows:
                if state == "active" and kind in ("Lock", "LWLock", "IO"):
                    seen[f"{kind}:{event}"] += 1
                elif state == "active":
                    seen["running"] += 1
                elif state and state.startswith("idle in transaction"):
                    seen["waiting for its dispatcher (in a claim)"] += 1
                else:
                    seen["idle (between claims)"] += 1


def _claims_per_second(db_name: str, processes: int) -> tuple[float, Counter, float]:
    """Claims per second of `processes` dispatchers together; what their database backends
    were seen doing; how busy the machine's CPUs were meanwhile (everything on them)."""
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(processes)
    queue = context.Queue()
    workers = [
        context.Process(target=_claimer, args=(db_name, PROCESS_SECONDS, ready, queue))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    seen: Counter = Counter()
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_waits, args=(db_name, stop, seen))
    sampler.start()
    all_before, idle_before = _cpu_ticks()
    try:
        claims = sum(queue.get(timeout=600) for _ in workers)
    finally:
        all_after, idle_after = _cpu_ticks()
        stop.set()
        sampler.join()
    for worker in workers:
        worker.join(timeout=30)
    spent = all_after - all_before
    busy = 1 - (idle_after - idle_before) / spent if spent else 0.0
    return claims / PROCESS_SECONDS, seen, busy


def main() -> dict:
    rng = random.Random(16)
    result: dict = {}
    with scratch_database("claim") as db_name:
        world = _catalog()
        medians = {}
        for queued, workspaces, nodes in WORLDS:
            started = time.perf_counter()
            _grow(world, queued, workspaces, nodes, rng)
            built = time.perf_counter() - started
            medians[queued] = _median_claim()
            print(
                f"{queued:>7,} queued, {workspaces:>6,} workspaces, {nodes:>5,} nodes: "
                f"median claim {medians[queued]:8.2f} ms (of {CLAIMS}; built in {built:.0f} s)"
            )
        small = WORLDS[0][0]
        for queued, _w, _n in WORLDS[1:]:
            ratio = medians[queued] / medians[small]
            result[f"claim_ratio_{queued}"] = ratio
            print(f"  ratio {queued:,} / {small:,} queued: {ratio:.2f}x (goal <= 1.5x)")
        connection.close()
        runs = {n: _claims_per_second(db_name, n) for n in PROCESSES}
        rates = {n: run[0] for n, run in runs.items()}
        print(
            f"dispatcher processes claiming together for {PROCESS_SECONDS:.0f} s each "
            f"(machine: {os.cpu_count()} CPUs, shared):"
        )
        for n, (rate, seen, busy) in runs.items():
            print(
                f"  {n} process(es): {rate:7.1f} claims/s, ratio {rate / rates[1]:.2f}x; "
                f"machine CPU busy {busy:.0%}"
            )
            total = sum(seen.values()) or 1
            locks = sum(v for k, v in seen.items() if k.startswith("Lock:"))
            top = ", ".join(f"{k} {v / total:.0%}" for k, v in seen.most_common(4))
            print(f"      their backends: {top}; waiting on row/table locks {locks / total:.1%}")
        result.update({f"processes_{n}": rate / rates[1] for n, rate in rates.items()})
        result["median_claim_ms"] = medians
    return result
