"""Takes on upstream providers, without a worker: dispatch onto provider routes, webhooks
and polling, output collection and settlement on the platform's own measurement, failover
between routes, permanent errors and moderation at no charge, cost per take, cancel."""

from __future__ import annotations

import base64
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from billing.models import Hold, HoldStatus
from conftest import client_for
from generation.lifecycle import cancel_take
from generation.models import Take, TakeStatus
from generation.submission import TakeSpec, submit_takes
from generation.tests.helpers import fund, png_bytes, setup_catalog, subscribe, wallet
from workers import dispatch, providers, sweeper
from workers.models import JobStatus, ProviderJob
from workers.settlement import settle_take

from .provider_support import make_provider, only_upstream, route

pytestmark = pytest.mark.django_db
MODEL = "wan2.1-t2v-1.3b"


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch, settings):
    """Record what would be enqueued; tests run each step themselves."""
    settings.PUBLIC_BASE_URL = "http://testserver"
    enqueued: list[tuple[str, tuple]] = []
    for name in ("dispatch_takes", "process_take_output", "cancel_attempt",
                 "collect_provider_output"):  # fmt: skip
        monkeypatch.setattr(
            f"workers.tasks.{name}.delay", lambda *a, _n=name, **k: enqueued.append((_n, a))
        )
    return enqueued


@pytest.fixture
def catalog(db):
    setup_catalog(base_url="http://127.0.0.1:9")
    only_upstream(MODEL)
    only_upstream("wan2.1-i2v-14b")


_keys = iter(range(10**6))


def submit(user, workspace, duration: int = 2, count: int = 1, image=None, **kwargs) -> list[Take]:
    spec = TakeSpec(
        model=kwargs.pop("model", MODEL),
        prompt="a heron lifts off a misty lake",
        resolution="480p",
        duration=duration,
        count=count,
        **kwargs,
    )
    return submit_takes(workspace, user, spec, idempotency_key=f"p{next(_keys)}", image=image)


def job_of(take: Take) -> ProviderJob:
    take.refresh_from_db()
    return ProviderJob.objects.get(take=take, attempt=take.attempts)


def deliver_and_settle(fake, take: Take, client: Client) -> Take:
    """The provider finishes: its webhook, then collection and settlement."""
    job = job_of(take)
    fake.finish(job.external_id)
    assert fake.deliver(job.external_id, client=client).status_code == 200
    assert providers.collect_output(take.pk) is True
    settle_take(take.pk)
    take.refresh_from_db()
    return take


def test_replicate_take_runs_by_webhook_and_is_charged_on_measured_seconds(
    catalog, fakes, alice, acme, charlie
):
    fund(acme, 100)
    fake = fakes["replicate"]
    fake.deliver_seconds = 1.0  # asked for 2 s, delivers 1 s: billing follows the file
    replicate = make_provider(fake)
    route(MODEL, replicate, 10)
    [take] = submit(alice, acme, duration=2)
    assert dispatch.dispatch_pending() == 1
    take.refresh_from_db()
    job = job_of(take)
    assert (take.status, take.provider_id, take.node_id) == (
        TakeStatus.DISPATCHING,
        replicate.pk,
        None,
    )
    assert job.external_id in fake.jobs and job.status == JobStatus.SUBMITTED
    [call] = fake.submissions()
    assert call.json()["webhook"] == (
        f"http://testserver/webhooks/takes/{take.pk}/{take.webhook_secret}/"
    )
    assert call.json()["input"]["seed"] == take.seed

    webhooks = Client()
    fake.jobs[job.external_id].status = "running"
    assert fake.deliver(job.external_id, client=webhooks).status_code == 200
    take.refresh_from_db()
    assert take.status == TakeStatus.RUNNING and job_of(take).status == JobStatus.RUNNING

    take = deliver_and_settle(fake, take, webhooks)
    assert take.status == TakeStatus.SUCCEEDED, take.error
    assert abs(take.measured_duration - 1.0) < 0.1
    assert take.charged == 2  # 1 measured second × 2 credits/s at 480p
    assert Hold.objects.get(pk=take.hold_id).status == HoldStatus.SETTLED
    assert (wallet(acme).balance, wallet(acme).held) == (98, 0)
    assert default_storage.exists(take.output_original)
    assert default_storage.exists(take.output_poster)
    # The provider's cost: 1.5 per clip + 0.25 per second asked for.
    assert take.provider_cost == Decimal("2.0")
    assert job_of(take).cost == Decimal("2.0") and job_of(take).status == JobStatus.SUCCEEDED

    # A replayed completion webhook changes nothing (no second cost, no second charge).
    assert fake.deliver(job.external_id, client=webhooks).status_code == 200
    take.refresh_from_db()
    assert (take.status, take.charged, take.provider_cost) == (
        TakeStatus.SUCCEEDED,
        2,
        Decimal("2.0"),
    )
    assert client_for(alice, acme).get(f"/api/v1/takes/{take.pk}/").json()["charged"] == 2
    assert client_for(charlie).get(f"/api/v1/takes/{take.pk}/").status_code == 404


def test_webhook_with_bad_signature_or_wrong_secret_changes_nothing(catalog, fakes, alice, acme):
    fund(acme, 100)
    fake = fakes["replicate"]
    route(MODEL, make_provider(fake), 10)
    [take] = submit(alice, acme)
    dispatch.dispatch_pending()
    job = job_of(take)
    fake.finish(job.external_id)
    url, body, headers = fake.webhook(job.external_id)
    path = url.removeprefix("http://testserver")
    client = Client()
    forged = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    forged.pop("HTTP_CONTENT_TYPE")
    forged["HTTP_WEBHOOK_SIGNATURE"] = "v1,bm90IHRoZSBzaWduYXR1cmUgYXQgYWxsIDEyMzQ1Njc4OTA="
    bad = client.post(path, body, content_type="application/json", **forged)
    assert bad.status_code == 400
    wrong_secret = path.replace(take.webhook_secret, "not-the-secret")
    assert client.post(wrong_secret, body, content_type="application/json").status_code == 404
    take.refresh_from_db()
    assert take.status == TakeStatus.DISPATCHING and job_of(take).status == JobStatus.SUBMITTED
    assert take.provider_cost == 0


@pytest.mark.parametrize("fault", ["429", "500", "timeout", "malformed"])
def test_transient_provider_error_moves_the_take_to_the_next_route(
    catalog, fakes, alice, acme, settings, fault
):
    settings.PROVIDER_TIMEOUT_SECONDS = 0.3
    fund(acme, 100)
    first, second = fakes["replicate"], fakes["fal"]
    first.faults.append(fault)
    first.hang_seconds = 1.0
    replicate = make_provider(first)
    fal = make_provider(second)
    route(MODEL, replicate, 10)
    route(MODEL, fal, 20)
    [take] = submit(alice, acme)
    assert dispatch.dispatch_pending() == 2  # the first route, then the second
    settings.PROVIDER_TIMEOUT_SECONDS = 10
    take.refresh_from_db()
    assert take.provider_id == fal.pk and take.attempts == 2
    jobs = list(ProviderJob.objects.filter(take=take).order_by("attempt"))
    assert [(j.provider_id, j.status) for j in jobs] == [
        (replicate.pk, JobStatus.FAILED_OVER),
        (fal.pk, JobStatus.SUBMITTED),
    ]
    take = deliver_and_settle(second, take, Client())
    assert take.status == TakeStatus.SUCCEEDED and take.charged == 4
    assert take.provider_cost == fal.cost_of(2)


def test_provider_at_its_concurrency_limit_is_passed_over_without_a_call(
    catalog, fakes, alice, acme
):
    fund(acme, 100)
    subscribe(acme, "pro")
    replicate = make_provider(fakes["replicate"], max_concurrency=1)
    fal = make_provider(fakes["fal"])
    route(MODEL, replicate, 10)
    route(MODEL, fal, 20)
    first, second = submit(alice, acme, count=2)
    assert dispatch.dispatch_pending() == 2
    placed = {t.pk: t.provider_id for t in Take.objects.filter(pk__in=[first.pk, second.pk])}
    assert sorted(placed.values()) == sorted([replicate.pk, fal.pk])
    assert len(fakes["replicate"].submissions()) == 1
    assert len(fakes["fal"].submissions()) == 1


def test_a_late_webhook_from_the_route_we_left_changes_nothing(catalog, fakes, alice, acme):
    fund(acme, 100)
    first, second = fakes["kling"], fakes["fal"]
    kling = make_provider(first)
    route(MODEL, kling, 10)
    route(MODEL, make_provider(second), 20)
    [take] = submit(alice, acme)
    dispatch.dispatch_pending()
    old_job = job_of(take)
    old_url, body, _ = first.webhook(old_job.external_id)
    # Kling stalls; past the maximum runtime the take is moved to the next route.
    ProviderJob.objects.filter(pk=old_job.pk).update(
        submitted_at=timezone.now() - timedelta(hours=2)
    )
    Take.objects.filter(pk=take.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    first.status_faults.append("500")
    assert sweeper.redrive_overdue_takes() == 1
    old_job.refresh_from_db()
    assert old_job.status == JobStatus.FAILED_OVER
    assert dispatch.dispatch_pending() == 1
    take.refresh_from_db()
    assert take.provider.kind == "fal"
    first.finish(old_job.external_id)
    _, body, _ = first.webhook(old_job.external_id)
    late = Client().post(
        old_url.removeprefix("http://testserver"), body, content_type="application/json"
    )
    assert late.status_code == 404
    take.refresh_from_db()
    assert take.status == TakeStatus.DISPATCHING and take.provider_cost == 0


def test_take_fails_after_every_route_turned_it_away_and_costs_nothing(catalog, fakes, alice, acme):
    fund(acme, 100)
    fakes["replicate"].faults.extend(["500", "500"])
    fakes["fal"].faults.extend(["429"])
    route(MODEL, make_provider(fakes["replicate"]), 10)
    route(MODEL, make_provider(fakes["fal"]), 20)
    [take] = submit(alice, acme)
    dispatch.dispatch_pending()
    take.refresh_from_db()
    assert take.status == TakeStatus.FAILED and "Gave up after 3 attempts" in take.error
    assert Hold.objects.get(pk=take.hold_id).status == HoldStatus.RELEASED
    assert (wallet(acme).balance, wallet(acme).held) == (100, 0)


def test_permanent_provider_error_fails_the_take_and_releases_its_hold(catalog, fakes, alice, acme):
    fund(acme, 100)
    fakes["runway"].faults.append("invalid")
    route(MODEL, make_provider(fakes["runway"]), 10)
    route(MODEL, make_provider(fakes["fal"]), 20)
    [take] = submit(alice, acme)
    assert wallet(acme).held == 4
    dispatch.dispatch_pending()
    take.refresh_from_db()
    assert take.status == TakeStatus.FAILED and "duration: must be 5 or 10" in take.error
    assert fakes["fal"].submissions() == []
    assert job_of(take).status == JobStatus.FAILED
    assert (wallet(acme).balance, wallet(acme).held) == (100, 0)


def test_moderation_block_at_submission_fails_with_the_providers_reason(
    catalog, fakes, alice, acme
):
    fund(acme, 100)
    fakes["kling"].faults.append("moderation")
    route(MODEL, make_provider(fakes["kling"]), 10)
    [take] = submit(alice, acme)
    dispatch.dispatch_pending()
    take.refresh_from_db()
    assert take.status == TakeStatus.FAILED
    assert take.error == "Blocked by Kling's moderation: Failure to pass the risk control system"
    assert job_of(take).status == JobStatus.BLOCKED
    assert (wallet(acme).balance, wallet(acme).held, take.charged) == (100, 0, 0)


@pytest.mark.parametrize(("kind", "outcome"), [("fal", "blocked"), ("kling", "fail")])
def test_failure_reported_by_webhook_fails_the_take_at_no_charge(
    catalog, fakes, alice, acme, kind, outcome
):
    fund(acme, 100)
    fake = fakes[kind]
    fake.outcome = outcome
    route(MODEL, make_provider(fake), 10)
    [take] = submit(alice, acme)
    dispatch.dispatch_pending()
    job = job_of(take)
    fake.finish(job.external_id)
    assert fake.deliver(job.external_id, client=Client()).status_code == 200
    take.refresh_from_db()
    assert take.status == TakeStatus.FAILED
    if outcome == "blocked":
        assert take.error.startswith("Blocked by Fal's moderation: content_policy_violation")
        assert job_of(take).status == JobStatus.BLOCKED
    else:
        assert take.error == "Kling: generation failed"
        assert job_of(take).status == JobStatus.FAILED
    assert (wallet(acme).balance, wallet(acme).held, take.provider_cost) == (100, 0, 0)


def test_runway_take_is_polled_by_the_sweeper_until_it_delivers(
    catalog, fakes, alice, acme, charlie, _no_broker, django_capture_on_commit_callbacks
):
    fund(acme, 100)
    fake = fakes["runway"]
    runway = make_provider(fake)
    route("wan2.1-i2v-14b", runway, 10)
    image = SimpleUploadedFile("ref.png", png_bytes(64, 36), "image/png")
    [take] = submit(alice, acme, model="wan2.1-i2v-14b", image=image)
    dispatch.dispatch_pending()
    [call] = fake.submissions()
    assert call.path == "/v1/image_to_video"
    assert call.json()["promptImage"].startswith("data:image/png;base64,")
    seen = []
    for _ in range(3):
        Take.objects.filter(pk=take.pk).update(lease_expires_at=timezone.now())
        with django_capture_on_commit_callbacks(execute=True):
            assert sweeper.redrive_overdue_takes(timezone.now() + timedelta(seconds=1)) == 1
        take.refresh_from_db()
        seen.append((take.status, job_of(take).status))
    assert seen == [
        (TakeStatus.RUNNING, JobStatus.RUNNING),
        (TakeStatus.RUNNING, JobStatus.SUCCEEDED),
        (TakeStatus.RUNNING, JobStatus.SUCCEEDED),  # collection was lost: enqueued again
    ]
    assert [a for n, a in _no_broker if n == "collect_provider_output"] == [
        (str(take.pk),),
        (str(take.pk),),
    ]
    assert providers.collect_output(take.pk) is True
    assert providers.collect_output(take.pk) is False  # a second delivery does nothing
    settle_take(take.pk)
    take.refresh_from_db()
    assert take.status == TakeStatus.SUCCEEDED, take.error
    assert take.charged == 12  # 2 s × 6 credits/s (the 14B model at 480p)
    assert client_for(charlie).get(f"/api/v1/takes/{take.pk}/").status_code == 404


def test_poll_that_cannot_reach_the_provider_waits_instead_of_resubmitting(
    catalog, fakes, alice, acme
):
    fund(acme, 100)
    fake = fakes["runway"]
    route(MODEL, make_provider(fake), 10)
    [take] = submit(alice, acme)
    dispatch.dispatch_pending()
    fake.status_faults.append("500")
    Take.objects.filter(pk=take.pk).update(lease_expires_at=timezone.now())
    sweeper.redrive_overdue_takes(timezone.now() + timedelta(seconds=1))
    take.refresh_from_db()
    assert take.status == TakeStatus.DISPATCHING and take.lease_expires_at > timezone.now()
    assert len(fake.submissions()) == 1 and job_of(take).status == JobStatus.SUBMITTED


def test_expired_output_url_fails_the_take_without_charge(catalog, fakes, alice, acme):
    fund(acme, 100)
    fake = fakes["replicate"]
    route(MODEL, make_provider(fake), 10)
    [take] = submit(alice, acme)
    dispatch.dispatch_pending()
    job = job_of(take)
    fake.finish(job.external_id)
    fake.deliver(job.external_id, client=Client())
    fake.jobs[job.external_id].status = "canceled"  # its file is gone now
    assert providers.collect_output(take.pk) is False
    take.refresh_from_db()
    assert take.status == TakeStatus.FAILED and "answered 404" in take.error
    assert (wallet(acme).balance, wallet(acme).held) == (100, 0)


def test_cancelling_a_provider_take_cancels_the_job_there(
    catalog, fakes, alice, acme, _no_broker, django_capture_on_commit_callbacks
):
    fund(acme, 100)
    fake = fakes["replicate"]
    replicate = make_provider(fake)
    route(MODEL, replicate, 10)
    [take] = submit(alice, acme)
    dispatch.dispatch_pending()
    take.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        cancel_take(take)
    assert ("cancel_attempt", (str(take.pk),)) in _no_broker
    assert dispatch.cancel_attempt(str(take.pk)) is True
    job = job_of(take)
    assert fake.jobs[job.external_id].status == "canceled"
    assert job.status == JobStatus.CANCELED
    assert (wallet(acme).balance, wallet(acme).held) == (100, 0)


def test_credentials_from_an_environment_variable_and_missing_ones_fail_over(
    catalog, fakes, alice, acme, monkeypatch
):
    fund(acme, 100)
    monkeypatch.setenv("RETAKE_TEST_RUNWAY_KEY", "test-api-key")
    runway = make_provider(
        fakes["runway"], api_key_env="RETAKE_TEST_RUNWAY_KEY", api_key_encrypted=""
    )
    broken = make_provider(
        fakes["fal"], slug="fal-broken", api_key_env="RETAKE_TEST_UNSET", api_key_encrypted=""
    )
    route(MODEL, broken, 10)
    route(MODEL, runway, 20)
    [take] = submit(alice, acme)
    dispatch.dispatch_pending()
    take.refresh_from_db()
    assert take.provider_id == runway.pk
    assert fakes["fal"].calls == []
    failed = ProviderJob.objects.get(take=take, provider=broken)
    assert failed.status == JobStatus.FAILED_OVER and "RETAKE_TEST_UNSET" in failed.error


def test_routes_of_both_kinds_are_tried_by_priority(catalog, fakes, alice, acme):
    """A provider route ahead of the node pool gets the take; at its limit, the pool does."""
    fund(acme, 100)
    subscribe(acme, "pro")
    from generation.models import Route, RouteKind

    Route.objects.filter(video_model__slug=MODEL, kind=RouteKind.NODE_POOL).update(
        is_active=True, priority=100
    )
    fal = make_provider(fakes["fal"], max_concurrency=1)
    route(MODEL, fal, 10)
    first = submit(alice, acme)[0]
    claimed = dispatch.claim_next()
    assert (claimed.pk, claimed.provider_id, claimed.node_id) == (first.pk, fal.pk, None)
    Take.objects.filter(pk=first.pk).update(status=TakeStatus.RUNNING)
    second = submit(alice, acme)[0]
    claimed = dispatch.claim_next()
    assert claimed.pk == second.pk and claimed.provider_id is None
    assert claimed.node.name == "reference-1"


LAST_FRAME_FIELDS = {
    # Where each provider takes the frame a video ends on, and how it is encoded there.
    "replicate": lambda call: call.json()["input"]["last_image"],
    "fal": lambda call: call.json()["end_image_url"],
    "kling": lambda call: "data:image/png;base64," + call.json()["image_tail"],
    "runway": lambda call: call.json()["promptImage"][1]["uri"],
}


@pytest.mark.parametrize("kind", sorted(LAST_FRAME_FIELDS))
def test_first_and_last_frame_reach_every_provider_through_dispatch(
    catalog, fakes, alice, acme, charlie, kind
):
    """The request is built from the take once, for nodes and providers alike: a
    first+last-frame take sent upstream carries both frames (it once lost the last)."""
    fund(acme, 100)
    fake = fakes[kind]
    route("wan2.1-i2v-14b", make_provider(fake), 10)
    first_png = png_bytes(64, 36, (250, 0, 0))
    last_png = png_bytes(64, 36, (0, 0, 250))
    [take] = submit_takes(
        acme,
        alice,
        TakeSpec(model="wan2.1-i2v-14b", prompt="a door opens", resolution="480p", duration=2),
        idempotency_key=f"flf-{kind}",
        image=SimpleUploadedFile("first.png", first_png, "image/png"),
        last_frame=SimpleUploadedFile("last.png", last_png, "image/png"),
    )
    assert dispatch.dispatch_pending() == 1
    [call] = fake.submissions()
    last = LAST_FRAME_FIELDS[kind](call)
    assert base64.b64decode(last.partition(",")[2]) == last_png
    take.refresh_from_db()
    assert take.status == TakeStatus.DISPATCHING and job_of(take).external_id in fake.jobs
    assert client_for(charlie).get(f"/api/v1/takes/{take.pk}/").status_code == 404
