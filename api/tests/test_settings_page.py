"""The API settings page: owners create a key and see it once, the list shows only its
prefix, revoke works; members only look; Free plans are told why they cannot."""

from __future__ import annotations

import re

import pytest

from accounts.models import ApiKey
from api.tests.conftest import bearer
from conftest import client_for

pytestmark = pytest.mark.django_db


def test_an_owner_creates_a_key_sees_it_once_and_revokes_it(pro_acme, alice):
    owner = client_for(alice, pro_acme)
    page = owner.post("/team/api/", {"name": "render farm", "expires_in_days": "30",
                                     "monthly_spend_cap": "500"})  # fmt: skip
    assert page.status_code == 200
    [raw] = re.findall(r"rtk_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}", page.content.decode())
    key = ApiKey.objects.get()
    assert key.monthly_spend_cap == 500 and key.expires_at is not None
    assert bearer(raw).get("/api/v1/wallet/").status_code == 200
    again = owner.get("/team/api/").content.decode()
    assert raw not in again and f"rtk_{key.prefix}_" in again
    assert owner.post(f"/team/api/keys/{key.pk}/revoke/").status_code == 302
    assert bearer(raw).get("/api/v1/wallet/").status_code == 401


def test_members_only_look_and_free_plans_are_told_why(pro_acme, bob, charlie, charlie_ws):
    member = client_for(bob, pro_acme)
    assert member.get("/team/api/").status_code == 200
    assert member.post("/team/api/", {"name": "x"}).status_code == 403
    assert ApiKey.objects.count() == 0
    free = client_for(charlie, charlie_ws).get("/team/api/").content.decode()
    assert "does not include API access" in free and 'data-testid="create-key"' not in free
