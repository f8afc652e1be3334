"""Abuse controls (issue 13, finding 6): shared counters, throttles with 429 and
Retry-After, lockout per account and IP, daily free credits per user, team limits, seats."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import redis
import time_machine
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone

from accounts import actions
from accounts.models import Invitation, Membership, Workspace
from billing import tasks as billing_tasks
from billing.demo import seed_plans
from billing.models import CreditLot, CreditSource
from conftest import client_for, make_user
from generation.models import Take
from generation.tests.helpers import fund, setup_catalog, subscribe

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr("workers.tasks.dispatch_takes.delay", lambda *a, **k: None)


@pytest.fixture
def funded(acme):
    setup_catalog()
    fund(acme, 10_000)
    return acme


def _submit(client, key: str):
    body = {
        "model": "wan2.1-t2v-1.3b",
        "prompt": "a kite",
        "resolution": "480p",
        "duration": 1,
        "idempotency_key": key,
    }
    return client.post("/api/v1/takes/", json.dumps(body), content_type="application/json")


# --- the shared cache -------------------------------------------------------------------


def test_counters_live_in_redis_where_every_process_sees_them(alice, funded, settings):
    settings.RATE_LIMIT_SUBMIT_BURST = "5/m"
    assert django_settings.CACHES["default"]["BACKEND"] == "django_redis.cache.RedisCache"
    _submit(client_for(alice, funded), "shared-1")

    keys = redis.Redis.from_url(django_settings.REDIS_URL).keys("retake-cache:*throttle*")
    assert any(f"submit-user:{alice.pk}:".encode() in key for key in keys)


# --- submissions ------------------------------------------------------------------------


def test_submissions_over_the_burst_get_429_with_retry_after_and_write_nothing(
    alice, funded, settings
):
    settings.RATE_LIMIT_SUBMIT_BURST = "3/m"
    client = client_for(alice, funded)
    assert [_submit(client, f"b{i}").status_code for i in range(3)] == [201, 201, 201]

    refused = _submit(client, "b3")

    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 61
    assert refused.json()["detail"]
    assert Take.objects.count() == 3


def test_the_sustained_rate_holds_after_the_burst_window(alice, funded, settings):
    settings.RATE_LIMIT_SUBMIT_BURST = "100/m"
    settings.RATE_LIMIT_SUBMIT_SUSTAINED = "4/h"
    client = client_for(alice, funded)
    start = (timezone.now() + timedelta(hours=1)).replace(minute=1)  # after the funding
    with time_machine.travel(start, tick=False) as clock:
        assert [_submit(client, f"s{i}").status_code for i in range(4)] == [201] * 4
        clock.shift(timedelta(minutes=5))
        refused = _submit(client, "s4")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 60
    assert Take.objects.count() == 4


def test_members_of_one_workspace_share_its_rate(alice, bob, funded, settings):
    settings.RATE_LIMIT_SUBMIT_BURST = "3/m"
    assert _submit(client_for(alice, funded), "w1").status_code == 201
    assert _submit(client_for(alice, funded), "w2").status_code == 201
    assert _submit(client_for(bob, funded), "w3").status_code == 201
    assert _submit(client_for(bob, funded), "w4").status_code == 429


def test_the_studio_form_is_throttled_too(alice, funded, settings):
    settings.RATE_LIMIT_SUBMIT_BURST = "1/m"
    client = client_for(alice, funded)
    form = {
        "model": "wan2.1-t2v-1.3b",
        "prompt": "a kite",
        "resolution": "480p",
        "duration": "1",
    }
    assert client.post("/studio/", {**form, "idempotency_key": "f1"}).status_code == 302
    refused = client.post("/studio/", {**form, "idempotency_key": "f2"})
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert Take.objects.count() == 1


# --- sign-in lockout --------------------------------------------------------------------


def _login(ip: str, password: str):
    client = Client(REMOTE_ADDR=ip)
    return client, client.post(
        "/accounts/login/", {"login": "alice@example.com", "password": password}
    )


def test_failed_sign_ins_lock_out_the_failing_client_not_the_account(alice):
    for _ in range(5):
        _login("203.0.113.7", "wrong-password")
    attacker, locked = _login("203.0.113.7", "a-long-test-password")
    assert "_auth_user_id" not in attacker.session, "the failing client is locked out"

    owner, response = _login("198.51.100.2", "a-long-test-password")
    assert response.status_code == 302
    assert owner.session["_auth_user_id"] == str(alice.pk)


def test_a_rate_limited_answer_says_when_to_retry(settings, db):
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "login": "2/m/ip"}
    client = Client(REMOTE_ADDR="192.0.2.9")
    statuses = [
        client.post("/accounts/login/", {"login": "x@example.com", "password": "p"})
        for _ in range(3)
    ]
    assert statuses[-1].status_code == 429
    assert int(statuses[-1]["Retry-After"]) > 0


# --- daily free credits, teams, seats, invitations --------------------------------------


def test_daily_free_credits_go_once_per_user_not_per_team(charlie):
    seed_plans()
    for n in range(3):
        actions.create_workspace(charlie, f"Team {n}")

    granted = billing_tasks.grant_daily_free_credits()

    lots = CreditLot.objects.filter(source=CreditSource.DAILY_FREE)
    owners = {lot.workspace_id for lot in lots}
    assert charlie.workspaces.get(is_personal=True).pk in owners
    assert not Workspace.objects.filter(pk__in=owners, is_personal=False).exists()
    assert granted == Workspace.objects.filter(is_personal=True).count()


def test_team_creation_is_limited_per_user_per_day(charlie, settings):
    settings.TEAMS_PER_USER_PER_DAY = 2
    client = client_for(charlie)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for n in range(2):
            assert client.post("/workspaces/", {"name": f"T{n}"}).status_code == 302
        refused = client.post("/workspaces/", {"name": "T2"})
        assert refused.status_code == 200 and "at most 2 teams a day" in refused.content.decode()
        assert Workspace.objects.filter(is_personal=False).count() == 2
        clock.shift(timedelta(hours=24, minutes=1))
        assert client.post("/workspaces/", {"name": "T3"}).status_code == 302


def test_team_seats_are_enforced_on_invite(alice, acme, bob):
    # Free: one seat, and alice and bob already fill two.
    with pytest.raises(actions.WorkspaceActionError, match="seat"):
        actions.invite_member(acme, "dana@example.com", "member", acting_user=alice)
    assert not Invitation.objects.exists()
    subscribe(acme, "pro")  # three seats: alice, bob and one invitation
    actions.invite_member(acme, "dana@example.com", "member", acting_user=alice)
    with pytest.raises(actions.WorkspaceActionError, match="seat"):
        actions.invite_member(acme, "eve@example.com", "member", acting_user=alice)
    # Re-inviting the same address replaces its invitation: no extra seat.
    actions.invite_member(acme, "dana@example.com", "admin", acting_user=alice)


def test_team_seats_are_enforced_on_accept(alice, acme, bob):
    subscribe(acme, "pro")
    invitation = actions.invite_member(acme, "dana@example.com", "member", acting_user=alice)
    # Meanwhile the last seat went to someone else.
    Membership.objects.create(workspace=acme, user=make_user("carl@example.com"))
    dana = make_user("dana@example.com")

    with pytest.raises(actions.WorkspaceActionError, match="seat"):
        actions.accept_invitation(invitation.token, dana)
    assert not Membership.objects.filter(workspace=acme, user=dana).exists()


def test_invitations_are_throttled_per_user(alice, acme, settings):
    settings.RATE_LIMIT_INVITE = "2/h"
    subscribe(acme, "studio")
    client = client_for(alice, acme)
    for n in range(2):
        assert (
            client.post("/team/", {"email": f"p{n}@example.com", "role": "member"}).status_code
            == 302
        )
    refused = client.post("/team/", {"email": "p2@example.com", "role": "member"})
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert Invitation.objects.count() == 2
