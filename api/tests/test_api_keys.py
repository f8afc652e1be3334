"""API keys: shown once and stored hashed, revoked and expired keys refused, plans without
API access refused, the monthly cap per key enforced at hold time, and tenancy."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from accounts.api_keys import ApiKeyError, create_api_key, hash_key, revoke_api_key
from accounts.models import ApiKey
from api.tests.conftest import bearer, key_for
from billing.models import Hold

pytestmark = pytest.mark.django_db

TAKE = {"model": "wan2.1-t2v-1.3b", "prompt": "a kite", "resolution": "480p", "duration": 2}


def test_a_key_is_stored_only_as_its_hash_and_shown_with_its_prefix(pro_acme, alice):
    key, raw = create_api_key(pro_acme, name="ci", acting_user=alice)
    assert raw.startswith(f"rtk_{key.prefix}_") and len(raw) > 50
    row = ApiKey.objects.get(pk=key.pk)
    assert row.key_hash == hash_key(raw) and raw not in str(row.__dict__)
    assert bearer(raw).get("/api/v1/wallet/").status_code == 200
    assert ApiKey.objects.get(pk=key.pk).last_used_at is not None


def test_revoked_expired_and_made_up_keys_get_401(pro_acme, alice):
    key, raw = create_api_key(pro_acme, name="old", acting_user=alice)
    revoke_api_key(key, acting_user=alice)
    answer = bearer(raw).get("/api/v1/takes/")
    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthenticated" and "revoked" in answer.json()["detail"]
    assert answer["WWW-Authenticate"] == "Bearer"

    soon = timezone.now() + timedelta(hours=1)
    _key, expiring = create_api_key(pro_acme, name="short", acting_user=alice, expires_at=soon)
    assert bearer(expiring).get("/api/v1/takes/").status_code == 200
    with time_machine.travel(soon + timedelta(seconds=1)):
        answer = bearer(expiring).get("/api/v1/takes/")
    assert answer.status_code == 401 and "expired" in answer.json()["detail"]

    assert bearer(raw[:-2] + "xx").get("/api/v1/takes/").status_code == 401
    assert bearer("rtk_nothing").get("/api/v1/takes/").status_code == 401
    assert bearer("").get("/api/v1/takes/").status_code == 401


def test_a_plan_without_api_access_cannot_create_or_use_keys(pro_acme, alice, charlie, charlie_ws):
    with pytest.raises(ApiKeyError) as refused:
        create_api_key(charlie_ws, name="x", acting_user=charlie)
    assert refused.value.status == 403 and "API access" in str(refused.value)

    raw = key_for(pro_acme, alice)
    from billing.models import Subscription

    Subscription.objects.filter(workspace=pro_acme).delete()  # back to Free
    answer = bearer(raw).get("/api/v1/takes/")
    assert answer.status_code == 403
    assert "does not include API access" in answer.json()["detail"]


def test_members_cannot_mint_keys(pro_acme, bob):
    with pytest.raises(ApiKeyError) as refused:
        create_api_key(pro_acme, name="x", acting_user=bob)
    assert refused.value.status == 403


def test_a_key_of_workspace_a_gets_404_on_workspace_b_objects(api, pro_acme, alice, charlie_key):
    created = api.post("/api/v1/takes/", TAKE, format="json")
    assert created.status_code == 201, created.json()
    take = created.json()["takes"][0]
    endpoint = api.post(
        "/api/v1/webhook-endpoints/",
        {"url": "https://example.com/hook", "event_types": ["take.succeeded"]},
        format="json",
    ).json()
    from api.models import WebhookDelivery, WebhookEndpoint

    delivery = WebhookDelivery.objects.create(
        endpoint=WebhookEndpoint.objects.get(pk=endpoint["id"]),
        message_id="msg_x",
        event_type="take.succeeded",
        payload={},
    )
    outsider = bearer(charlie_key)
    for path in (
        f"/api/v1/takes/{take['id']}/",
        f"/api/v1/projects/{take['shot'] and created.json()['takes'][0]['shot']}/",
        f"/api/v1/shots/{take['shot']}/",
        f"/api/v1/webhook-endpoints/{endpoint['id']}/",
        f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries/",
        f"/api/v1/webhook-deliveries/{delivery.pk}/",
        f"/v1/videos/video_{take['id'].replace('-', '')}",
    ):
        assert outsider.get(path).status_code == 404, path
    assert outsider.post(f"/api/v1/takes/{take['id']}/cancel/").status_code == 404
    assert outsider.post(f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver/").status_code == 404
    assert outsider.get("/api/v1/takes/").json()["results"] == []


def test_the_key_monthly_cap_is_enforced_when_credits_are_held(pro_acme, alice):
    quote = bearer(key_for(pro_acme, alice)).post("/api/v1/quotes/", TAKE, format="json").json()
    price = quote["quote"]["total"]
    cap = 2 * price - 1  # room for one take, not two
    client = bearer(key_for(pro_acme, alice, monthly_spend_cap=cap))
    first = client.post("/api/v1/takes/", TAKE, format="json")
    assert first.status_code == 201, first.json()
    assert first.json()["takes"][0]["price"] == price
    second = client.post("/api/v1/takes/", TAKE, format="json")
    assert second.status_code == 402
    assert f"monthly spending cap is {cap} credits" in second.json()["detail"]
    # The refusal changed nothing; an uncapped key of the same workspace still spends.
    assert Hold.objects.filter(workspace=pro_acme).count() == 1
    assert (
        bearer(key_for(pro_acme, alice)).post("/api/v1/takes/", TAKE, format="json").status_code
        == 201
    )


def test_create_api_key_command_prints_the_key_once(pro_acme, alice, charlie):
    out, err = StringIO(), StringIO()
    call_command(
        "create_api_key",
        alice.email,
        "--workspace",
        str(pro_acme.pk),
        "--name",
        "cli",
        stdout=out,
        stderr=err,
    )
    raw = out.getvalue().strip()
    assert raw.startswith("rtk_") and "shown once" in err.getvalue()
    wallet = bearer(raw).get("/api/v1/wallet/")
    assert wallet.status_code == 200 and wallet.json()["held"] == 0
    with pytest.raises(CommandError, match="not a member"):
        call_command("create_api_key", "charlie@example.com", "--workspace", str(pro_acme.pk))
    with pytest.raises(CommandError, match="does not include API access"):
        call_command("create_api_key", alice.email, stdout=StringIO())  # her personal: Free
