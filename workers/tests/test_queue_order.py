"""The queue position creators see is the dispatcher's real order: plan class, then the
lighter workspace of the period, then age, with off-peak takes only inside their window.

Before each claim the positions of every queued take are read; the dispatcher must then
take the one numbered 1, and the numbers must run 1..n without gaps. All state (plans,
grants, schedule) is set up inside one frozen clock, relative to today."""

from __future__ import annotations

from datetime import time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.utils import timezone

from billing.models import PricingSchedule
from billing.periods import month_start
from billing.pricing import WindowSpec, set_schedule
from conftest import make_user
from generation.models import Take, TakeStatus
from generation.queue import queue_position, queue_positions, record_usage
from generation.submission import TakeSpec, submit_takes
from generation.tests.helpers import fund, setup_catalog, subscribe
from workers import dispatch

pytestmark = pytest.mark.django_db
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr("workers.tasks.dispatch_takes.delay", lambda *a, **k: None)


def _at(hour: int):
    """Tomorrow at `hour` (Shanghai): a time relative to today, never a fixed date."""
    tomorrow = timezone.now().astimezone(SHANGHAI) + timedelta(days=1)
    return tomorrow.replace(hour=hour, minute=30, second=0, microsecond=0)


_keys = iter(range(10**6))


def _workspace(email: str, plan: str | None):
    user = make_user(email)
    workspace = user.workspaces.get()
    fund(workspace, 1000)
    if plan:
        subscribe(workspace, plan)
    return user, workspace


def _submit(user, workspace, **kwargs) -> Take:
    spec = TakeSpec(
        model="wan2.1-t2v-1.3b", prompt="a lighthouse", resolution="480p", duration=1, **kwargs
    )
    [take] = submit_takes(workspace, user, spec, idempotency_key=f"q{next(_keys)}")
    return take


def _scenario(traveller) -> dict[str, Take]:
    """Takes of four classes and usages, submitted a minute apart (oldest first)."""
    node = setup_catalog()
    node.slots = 20
    node.save()
    every_day = (0, 1, 2, 3, 4, 5, 6)
    set_schedule(
        PricingSchedule(name="Default", time_zone="Asia/Shanghai", is_active=True),
        [
            WindowSpec(every_day, time(9), time(23), "peak", Decimal("1")),
            WindowSpec(every_day, time(23), time(9), "off_peak", Decimal("0.5")),
        ],
    )
    free_user, free = _workspace("free@example.com", None)
    heavy_user, heavy = _workspace("heavy@example.com", "pro")
    light_user, light = _workspace("light@example.com", "pro")
    night_user, night = _workspace("night@example.com", "pro")
    studio_user, studio = _workspace("studio@example.com", "studio")
    takes = {}

    def later(name, user, workspace, **kwargs):
        traveller.shift(timedelta(minutes=1))
        takes[name] = _submit(user, workspace, **kwargs)

    later("free", free_user, free)
    # heavy rendered 5 s this period already; its takes wait behind lighter workspaces.
    later("heavy_done", heavy_user, heavy, count=1)
    done = takes.pop("heavy_done")
    Take.objects.filter(pk=done.pk).update(
        status=TakeStatus.SUCCEEDED, dispatched_at=timezone.now(), duration_seconds=5
    )
    done.duration_seconds = 5
    record_usage(done, timezone.now(), None)  # as the dispatcher counts it
    later("heavy_1", heavy_user, heavy)
    later("off_peak", night_user, night, mode="off_peak")
    later("light_1", light_user, light)
    later("heavy_2", heavy_user, heavy)
    later("light_2", light_user, light)
    later("studio", studio_user, studio)
    return takes


def _claim_all_in_position_order() -> list[str]:
    """Claim until nothing is left, checking before each claim that the dispatcher takes
    the take shown as #1 and that the shown positions run 1..n."""
    claimed = []
    while True:
        queued = list(Take.objects.filter(status=TakeStatus.QUEUED))
        positions = queue_positions(queued)
        take = dispatch.claim_next()
        if take is None:
            break
        assert sorted(positions.values()) == list(range(1, len(positions) + 1))
        assert positions[take.pk] == 1, (take.pk, positions)
        assert queue_position(take) is None  # no longer queued
        claimed.append(take.pk)
    return claimed


def test_queue_positions_are_the_dispatchers_order_off_peak(alice):
    with time_machine.travel(_at(23), tick=False) as traveller:
        takes = _scenario(traveller)
        names = {take.pk: name for name, take in takes.items()}
        first = queue_positions(takes.values())
        # Class first; within a class the workspace with less usage this period; then age.
        assert [names[pk] for pk in sorted(first, key=first.get)] == [
            "studio",
            "off_peak",
            "light_1",
            "light_2",
            "heavy_1",
            "heavy_2",
            "free",
        ]
        order = [names[pk] for pk in _claim_all_in_position_order()]
    # The order changed as takes were claimed (usage grows as each one is dispatched).
    assert order[0] == "studio" and order[-1] == "free"
    assert sorted(order) == sorted(takes)


def test_an_off_peak_take_has_no_position_at_peak_and_is_not_dispatched(alice):
    with time_machine.travel(_at(12), tick=False) as traveller:
        takes = _scenario(traveller)
        positions = queue_positions(takes.values())
        assert takes["off_peak"].pk not in positions
        assert len(positions) == len(takes) - 1
        claimed = _claim_all_in_position_order()
        assert takes["off_peak"].pk not in claimed
        takes["off_peak"].refresh_from_db()
        assert takes["off_peak"].status == TakeStatus.QUEUED


def _month_after(moment):
    """Noon on the 2nd of the month after `moment` (Shanghai): a new billing month."""
    local = moment.astimezone(SHANGHAI)
    return (local.replace(day=28) + timedelta(days=5)).replace(day=2, hour=12, minute=0)


def _heavy_and_light(traveller) -> tuple[Take, Take]:
    """A 20-slot node; a heavy workspace that used 5 s this month queues a take, then a
    light one (no usage) queues a younger take."""
    node = setup_catalog()
    node.slots = 20
    node.save()
    heavy_user, heavy = _workspace("heavy@example.com", "pro")
    light_user, light = _workspace("light@example.com", "pro")
    done = _submit(heavy_user, heavy)
    Take.objects.filter(pk=done.pk).update(status=TakeStatus.SUCCEEDED, duration_seconds=5)
    done.duration_seconds = 5
    record_usage(done, timezone.now(), None)
    traveller.shift(timedelta(minutes=1))
    heavy_take = _submit(heavy_user, heavy)
    traveller.shift(timedelta(minutes=1))
    return heavy_take, _submit(light_user, light)


def test_a_new_month_resets_the_sort_keys_and_positions_still_match_claims(alice):
    """Usage of last month no longer orders the queue: the claim refreshes the copied keys
    (and the positions read the counter meanwhile), so the heavy workspace's older take
    goes first again, and every claim takes the take shown as #1."""
    with time_machine.travel(_at(12), tick=False) as traveller:
        heavy_take, light_take = _heavy_and_light(traveller)
        assert Take.objects.get(pk=heavy_take.pk).queue_usage == 5
        # This month the lighter workspace goes first, though its take is younger.
        assert queue_positions([heavy_take, light_take]) == {light_take.pk: 1, heavy_take.pk: 2}
        traveller.move_to(_month_after(timezone.now()))
        # A new month: nobody has used anything yet, so age decides, before any claim too.
        assert queue_positions([heavy_take, light_take]) == {heavy_take.pk: 1, light_take.pk: 2}
        assert _claim_all_in_position_order() == [heavy_take.pk, light_take.pk]
        heavy_take.refresh_from_db()
        assert heavy_take.queue_period == month_start(timezone.now())  # this month's key


def test_takes_made_without_a_sort_key_are_ordered_by_their_workspaces_usage(alice):
    """A take inserted by other code (no `queue_period`) is placed by its workspace's
    counter, in the positions and in the claim alike."""
    with time_machine.travel(_at(12), tick=False) as traveller:
        heavy_take, light_take = _heavy_and_light(traveller)
        Take.objects.filter(pk__in=[heavy_take.pk, light_take.pk]).update(
            queue_usage=0, queue_period=None
        )
        assert queue_positions([heavy_take, light_take]) == {light_take.pk: 1, heavy_take.pk: 2}
        assert _claim_all_in_position_order() == [light_take.pk, heavy_take.pk]


def test_a_claim_runs_the_same_statements_at_any_queue_length(alice):
    """The queue is read from its index a window at a time: a claim's statements do not
    grow with the number of queued takes."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with time_machine.travel(_at(12), tick=False):
        node = setup_catalog()
        node.slots = 1000
        node.save()
        user, workspace = _workspace("many@example.com", "studio")
        fund(workspace, 100_000, key="more")
        counts = []
        for queued in (3, 60):
            while Take.objects.filter(status=TakeStatus.QUEUED).count() < queued:
                spec = TakeSpec(
                    model="wan2.1-t2v-1.3b", prompt="many", resolution="480p", duration=1, count=3
                )
                submit_takes(workspace, user, spec, idempotency_key=f"m{next(_keys)}")
            with CaptureQueriesContext(connection) as captured:
                assert dispatch.claim_next() is not None
            counts.append(len(captured.captured_queries))
            Take.objects.filter(status=TakeStatus.DISPATCHING).update(status=TakeStatus.SUCCEEDED)
        assert counts[0] == counts[1], counts
