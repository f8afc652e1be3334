"""The batch digest e-mail: off by default, one summary per ended batch (several takes from
one Generate, or off-peak takes), sent once whatever retries or races, in the language
the user chose it in, with the site's name from SITE_NAME."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.core import mail
from django.test import override_settings

from accounts.models import UserSettings
from billing.demo import seed_schedule
from billing.ledger import available_credits
from conftest import client_for
from generation import lifecycle
from generation.digest import send_batch_digest
from generation.models import Submission, Take, TakeStatus
from generation.submission import TakeSpec, submit_takes
from generation.tests.helpers import fund, setup_catalog, subscribe
from workers.media import MediaInfo

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_broker():
    with (
        mock.patch("workers.tasks.dispatch_takes.delay"),
        mock.patch("workers.tasks.send_batch_digest.delay") as digest,
    ):
        yield digest


@pytest.fixture(autouse=True)
def _catalog(acme):
    setup_catalog()
    seed_schedule()
    subscribe(acme, "standard")
    fund(acme, 500)


def _opt_in(user, workspace, language: str = "en") -> None:
    client = client_for(user, workspace)
    response = client.post(
        "/account/notifications/",
        {"batch_digest_email": "1"},
        HTTP_ACCEPT_LANGUAGE=language,
    )
    assert response.status_code == 302


def _batch(workspace, user, *, count=3, mode="standard", key="batch") -> list[Take]:
    spec = TakeSpec(
        model="wan2.1-t2v-1.3b",
        prompt="a paper boat in the rain",
        resolution="480p",
        duration=2,
        count=count,
        mode=mode,
    )
    return submit_takes(workspace, user, spec, idempotency_key=key)


def _deliver(take: Take, seconds: float = 2.0) -> Take:
    """Through the lifecycle: finalizing, then succeed (settles the hold for real)."""
    Take.objects.filter(pk=take.pk).update(status=TakeStatus.FINALIZING)
    info = MediaInfo(
        duration_seconds=seconds,
        fps=16,
        width=832,
        height=480,
        codec="h264",
        frames=int(seconds * 16),
        size_bytes=1000,
    )
    return lifecycle.succeed(take.pk, info, poster="p.jpg", preview="v.mp4", video="o.mp4")


@override_settings(SITE_NAME="Paper Mill", PUBLIC_BASE_URL="https://mill.example")
def test_an_ended_batch_emails_one_summary_with_counts_charges_and_the_shot(
    alice, acme, _no_broker, django_capture_on_commit_callbacks
):
    _opt_in(alice, acme)
    assert UserSettings.objects.get(user=alice).email_language == "en"
    before = available_credits(acme)
    takes = _batch(acme, alice)
    with django_capture_on_commit_callbacks(execute=True):
        _deliver(takes[0])
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.fail_take(takes[1].pk, "node exploded")
    submission_id = takes[0].submission_id
    # Enqueued on each take's end, but not sent while takes are still live.
    assert _no_broker.call_args_list == [mock.call(str(submission_id))] * 2
    assert send_batch_digest(submission_id) is False
    assert mail.outbox == []

    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.cancel_take(takes[2])
    assert send_batch_digest(submission_id) is True
    # A retried task, or the other takes' tasks arriving late, send nothing more.
    assert send_batch_digest(submission_id) is False
    assert send_batch_digest(submission_id) is False
    assert len(mail.outbox) == 1

    message = mail.outbox[0]
    assert message.to == ["alice@example.com"]
    assert message.subject == "Paper Mill: your batch of 3 takes is done"
    charged = before - available_credits(acme)
    assert charged == Take.objects.get(pk=takes[0].pk).charged > 0
    assert "Your batch of 3 takes has ended." in message.body
    for line in ("Succeeded: 1", "Failed: 1", "Canceled: 1", f"Credits charged: {charged}"):
        assert line in message.body
    assert f"https://mill.example/studio/?shot={takes[0].shot_id}" in message.body
    assert "https://mill.example/account/notifications/" in message.body
    assert message.body.rstrip().endswith("Paper Mill")
    assert Submission.objects.get(pk=submission_id).digest_sent_at is not None


def test_a_failed_send_leaves_the_batch_unsent_so_a_retry_sends_it(alice, acme):
    _opt_in(alice, acme)
    takes = _batch(acme, alice, count=2)
    for take in takes:
        lifecycle.fail_take(take.pk, "no")
    with (
        mock.patch("generation.digest.send_mail", side_effect=OSError("smtp down")),
        pytest.raises(OSError),
    ):
        send_batch_digest(takes[0].submission_id)
    assert Submission.objects.get(pk=takes[0].submission_id).digest_sent_at is None
    assert send_batch_digest(takes[0].submission_id) is True
    assert len(mail.outbox) == 1
    assert "Failed: 2" in mail.outbox[0].body
    assert "Credits charged: 0" in mail.outbox[0].body


def test_the_digest_is_off_by_default_and_a_single_standard_take_is_no_batch(
    alice, acme, bob, _no_broker, django_capture_on_commit_callbacks
):
    # bob never opted in: nothing is even enqueued for his batch.
    takes = _batch(acme, bob, count=2, key="bob")
    with django_capture_on_commit_callbacks(execute=True):
        for take in takes:
            lifecycle.fail_take(take.pk, "no")
    _no_broker.assert_not_called()
    assert send_batch_digest(takes[0].submission_id) is False

    # alice opted in, then drew one standard take: not a batch.
    _opt_in(alice, acme)
    [single] = _batch(acme, alice, count=1, key="single")
    lifecycle.fail_take(single.pk, "no")
    assert send_batch_digest(single.submission_id) is False

    # She turned it off again before her batch ended: nothing.
    client_for(alice, acme).post("/account/notifications/", {})
    assert UserSettings.objects.get(user=alice).batch_digest_email is False
    takes = _batch(acme, alice, count=2, key="off-again")
    for take in takes:
        lifecycle.fail_take(take.pk, "no")
    assert send_batch_digest(takes[0].submission_id) is False
    assert mail.outbox == []


def test_an_off_peak_take_that_expires_is_summarised_in_chinese(alice, acme):
    _opt_in(alice, acme, language="zh-hans")
    assert UserSettings.objects.get(user=alice).email_language == "zh-hans"
    [take] = _batch(acme, alice, count=1, mode="off_peak", key="night")
    assert lifecycle.expire_overdue_takes(now=take.deadline + timedelta(seconds=1)) == 1
    assert send_batch_digest(take.submission_id) is True
    [message] = mail.outbox
    assert message.subject == "Retake：你的 1 个镜头已全部完成"
    assert "你的闲时批次（1 个镜头）已全部结束。" in message.body
    assert "已过期: 1" in message.body and "扣费积分：0" in message.body
    assert "收件箱" in message.body


def test_the_notifications_page_is_the_users_own(alice, acme, charlie, client):
    assert client.get("/account/notifications/").status_code == 302  # sign in first
    _opt_in(alice, acme)
    page = client_for(charlie).get("/account/notifications/").content.decode()
    assert "charlie@example.com" in page and "alice@example.com" not in page
    assert 'data-testid="batch-digest" checked' not in page
    client_for(charlie).post("/account/notifications/", {})
    assert UserSettings.objects.get(user=alice).batch_digest_email is True
    page = client_for(alice, acme).get("/account/notifications/").content.decode()
    assert 'data-testid="batch-digest" checked' in page


def test_the_quote_says_whether_a_batch_will_be_emailed(alice, acme):
    client = client_for(alice, acme)
    query = {
        "model": "wan2.1-t2v-1.3b",
        "prompt": "a kite",
        "resolution": "480p",
        "duration": "2",
        "aspect_ratio": "16:9",
        "fps": "16",
        "mode": "standard",
    }
    single = client.get("/studio/quote/", {**query, "count": "1"}).content.decode()
    assert "quote-digest" not in single
    batch = client.get("/studio/quote/", {**query, "count": "3"}).content.decode()
    assert "No e-mail when this batch ends." in batch
    _opt_in(alice, acme)
    night = client.get("/studio/quote/", {**query, "count": "1", "mode": "off_peak"})
    assert (
        "When this batch has ended, a summary goes to alice@example.com." in night.content.decode()
    )
