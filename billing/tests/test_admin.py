from __future__ import annotations

import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from billing.ledger import get_wallet, grant_credits
from billing.models import CreditSource, LedgerEntry, PricingWindow, Wallet
from conftest import client_for


@pytest.fixture
def admin_client_(staff):
    return client_for(staff)


def test_ledger_is_read_only_in_admin(admin_client_, acme):
    grant_credits(acme, 10, source=CreditSource.PURCHASE, idempotency_key="g")
    entry = LedgerEntry.objects.get()
    assert admin_client_.get(reverse("admin:billing_ledgerentry_add")).status_code == 403
    change = admin_client_.get(reverse("admin:billing_ledgerentry_change", args=[entry.pk]))
    assert change.status_code == 200
    assert b'name="amount"' not in change.content
    response = admin_client_.post(
        reverse("admin:billing_ledgerentry_change", args=[entry.pk]), {"amount": 999}
    )
    assert response.status_code == 403
    assert LedgerEntry.objects.get().amount == 10
    assert admin_client_.get(reverse("admin:billing_creditlot_add")).status_code == 403
    assert admin_client_.get(reverse("admin:billing_hold_add")).status_code == 403


def test_adjust_credits_action_asks_for_a_reason_then_records_it(admin_client_, staff, acme):
    wallet = get_wallet(acme)
    url = reverse("admin:billing_wallet_changelist")
    page = admin_client_.post(url, {"action": "adjust_credits", ACTION_CHECKBOX_NAME: [wallet.pk]})
    assert page.status_code == 200
    assert b"Reason" in page.content
    token = re.search(rb'name="token" value="(\w+)"', page.content).group(1).decode()
    form = {
        "action": "adjust_credits",
        ACTION_CHECKBOX_NAME: [wallet.pk],
        "apply": "1",
        "token": token,
        "delta": "25",
        "reason": "",
    }
    refused = admin_client_.post(url, form)
    assert refused.status_code == 200 and b"This field is required" in refused.content
    assert Wallet.objects.get().balance == 0
    form["reason"] = "compensation for outage"
    assert admin_client_.post(url, form).status_code == 302
    assert admin_client_.post(url, form).status_code == 302  # double submit
    entry = LedgerEntry.objects.get(kind="adjustment")
    assert (entry.amount, entry.actor, entry.reason) == (25, staff, "compensation for outage")
    assert Wallet.objects.get().balance == 25


def test_week_grid_renders_from_the_database_and_follows_edits(admin_client_, schedule):
    url = reverse("admin:billing_pricingschedule_week", args=[schedule.pk])
    change = admin_client_.get(reverse("admin:billing_pricingschedule_change", args=[schedule.pk]))
    assert url.encode() in change.content
    page = admin_client_.get(url).content.decode()
    assert page.count('class="cell ') == 7 * 24
    assert page.count('data-multiplier="0.50"') == 7 * 10  # 23:00–09:00
    PricingWindow.objects.filter(kind="off_peak").update(multiplier="0.30")
    page = admin_client_.get(url).content.decode()
    assert page.count('data-multiplier="0.30"') == 7 * 10


def test_week_grid_is_staff_only(schedule, alice, charlie):
    url = reverse("admin:billing_pricingschedule_week", args=[schedule.pk])
    for user in (alice, charlie):
        response = client_for(user).get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def _schedule_form(schedule, windows):
    data = {
        "name": schedule.name,
        "time_zone": schedule.time_zone,
        "is_active": "on",
        "windows-TOTAL_FORMS": str(len(windows)),
        "windows-INITIAL_FORMS": "0",
        "holidays-TOTAL_FORMS": "0",
        "holidays-INITIAL_FORMS": "0",
    }
    for i, (start, end, kind, mult) in enumerate(windows):
        data.update(
            {
                f"windows-{i}-days": ["0", "1", "2", "3", "4", "5", "6"],
                f"windows-{i}-start": start,
                f"windows-{i}-end": end,
                f"windows-{i}-kind": kind,
                f"windows-{i}-multiplier": mult,
            }
        )
    return data


def test_admin_refuses_overlapping_windows_and_changes_nothing(admin_client_, schedule):
    PricingWindow.objects.filter(schedule=schedule).delete()
    url = reverse("admin:billing_pricingschedule_change", args=[schedule.pk])
    data = _schedule_form(
        schedule, [("09:00", "23:00", "peak", "1"), ("22:00", "09:00", "off_peak", "0.5")]
    )
    response = admin_client_.post(url, data)
    assert response.status_code == 200
    assert "Pricing windows overlap on Monday 22:00–23:00" in response.content.decode()
    assert not PricingWindow.objects.exists()
    data = _schedule_form(
        schedule, [("09:00", "23:00", "peak", "1"), ("23:00", "09:00", "off_peak", "0.5")]
    )
    assert admin_client_.post(url, data).status_code == 302
    assert PricingWindow.objects.count() == 2
