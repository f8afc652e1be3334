"""The wallet page (balance, lots with expiry, holds, history with filters and CSV, usage),
the public pricing page's peak/off-peak status, and the team page's spend per member."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from billing import ledger
from billing.demo import seed_plans, seed_schedule
from billing.views import countdown
from conftest import client_for

pytestmark = pytest.mark.django_db


def _spend(workspace, member, amount: int, charge: int, key: str):
    hold = ledger.place_hold(workspace, amount, idempotency_key=f"{key}:hold", member=member)
    ledger.settle_hold(hold, charge, idempotency_key=f"{key}:settle")
    return hold


def test_wallet_shows_balance_lots_with_expiry_holds_and_charges(alice, acme, bob, charlie):
    ledger.grant_credits(
        acme,
        120,
        source="plan_period",
        idempotency_key="plan",
        expires_at=timezone.now() + timedelta(days=5, hours=1),
    )
    ledger.grant_credits(acme, 50, source="purchase", idempotency_key="buy")
    _spend(acme, alice, 10, 6, "t1")
    ledger.place_hold(acme, 4, idempotency_key="t2:hold", member=bob, reason="take t2")
    body = client_for(alice, acme).get("/wallet/").content.decode()
    assert 'data-testid="available">160<' in body  # 170 - 6 charged - 4 held
    assert 'data-testid="held">4<' in body
    assert "110 plan period credits expire in 5\xa0days" in body
    assert "50 purchase credits, no expiry" in body
    assert "4 credits held for take t2" in body
    assert 'data-testid="entry-charged">6<' in body
    # charlie's own wallet knows nothing of acme's.
    other = client_for(charlie).get("/wallet/").content.decode()
    assert "take t2" not in other and 'data-testid="available">0<' in other


@pytest.mark.frozen_at("2026-03-01T12:00:00+00:00")
def test_ledger_filters_by_kind_and_date_and_exports_csv(alice, acme, charlie):
    ledger.grant_credits(acme, 100, source="purchase", idempotency_key="old")
    # The spend and every page below happen on March 10th.
    with time_machine.travel(datetime(2026, 3, 10, 12, tzinfo=UTC), tick=False):
        _spend(acme, alice, 10, 7, "new")
        client = client_for(alice, acme)
        settles = client.get("/wallet/", {"kind": "settle"}).content.decode()
        assert settles.count('data-kind="settle"') == 1 and 'data-kind="grant"' not in settles
        march_first = client.get("/wallet/", {"until": "2026-03-05"}).content.decode()
        assert 'data-kind="grant"' in march_first and 'data-kind="settle"' not in march_first
        response = client.get("/wallet/ledger.csv", {"kind": "settle"})
        assert response["Content-Disposition"].startswith("attachment")
        rows = list(csv.DictReader(io.StringIO(response.content.decode())))
        assert [(r["kind"], r["charged"]) for r in rows] == [("settle", "7")]
        full = client.get("/wallet/ledger.csv").content.decode()
        everything = list(csv.DictReader(io.StringIO(full)))
        assert {r["kind"] for r in everything} == {"grant", "hold", "settle"}
        outsider = client_for(charlie).get("/wallet/ledger.csv").content.decode()
        assert outsider.strip().splitlines() == [
            ",".join(
                ["time", "kind", "amount", "held_change", "charged", "balance_after", "reason"]
            )
        ]


def test_csv_neutralises_formula_like_reasons(alice, acme):
    ledger.grant_credits(acme, 5, source="purchase", idempotency_key="f", reason="=HYPERLINK(1)")
    body = client_for(alice, acme).get("/wallet/ledger.csv").content.decode()
    assert "'=HYPERLINK(1)" in body


def test_wallet_shows_plan_and_usage_this_period(alice, acme):
    from billing.plans import start_subscription

    plans = seed_plans()
    start_subscription(acme, plans["standard"])
    _spend(acme, alice, 20, 12, "u1")
    body = client_for(alice, acme).get("/wallet/").content.decode()
    assert "Standard" in body and 'data-testid="used">12<' in body


@pytest.mark.frozen_at("2026-03-02T11:48:00+00:00")  # a Monday with no holiday
def test_pricing_page_says_when_off_peak_opens(db):
    seed_plans()
    seed_schedule()  # off-peak 23:00–09:00 Asia/Shanghai (15:00–01:00 UTC)
    client = Client()
    peak = client.get("/pricing/").content.decode()
    assert "Off-peak (free on Pro and Studio) opens in 3 h 12 min." in peak
    assert "Pro" in peak and "3000 credits a month" in peak
    with time_machine.travel(datetime(2026, 3, 2, 16, 0, tzinfo=UTC), tick=False):
        off_peak = client.get("/pricing/").content.decode()
    assert "It is off-peak now" in off_peak


def test_off_peak_countdown_reads_in_hours_and_minutes():
    assert countdown(timedelta(hours=3, minutes=12, seconds=30)) == "3 h 12 min"
    assert countdown(timedelta(minutes=7)) == "7 min"
    assert countdown(timedelta(days=1, minutes=5)) == "1 d 0 h 5 min"


def test_team_page_shows_each_members_spend_this_month(alice, acme, bob, charlie):
    _ = ledger.grant_credits(acme, 100, source="purchase", idempotency_key="g")
    _spend(acme, alice, 10, 9, "a1")
    _spend(acme, bob, 10, 4, "b1")
    ledger.place_hold(acme, 3, idempotency_key="b2:hold", member=bob)
    assert ledger.spend_by_member(acme) == {
        alice.pk: {"charged": 9, "held": 0},
        bob.pk: {"charged": 4, "held": 3},
    }
    body = client_for(alice, acme).get("/team/").content.decode()
    assert "9 credits" in body and "4 credits" in body and "+3 held" in body
    # Members do not see what others spent; outsiders see only their own workspace.
    assert "Spent this month" not in client_for(bob, acme).get("/team/").content.decode()
    assert "bob@example.com" not in client_for(charlie).get("/team/").content.decode()
