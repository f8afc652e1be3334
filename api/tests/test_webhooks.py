"""Customer webhooks: signed with Standard Webhooks (checked by the `standardwebhooks`
library at a local receiver), retried with growing delays, logged, redelivered, disabled
after failing for days, and never sent to private addresses or through redirects."""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta
from unittest import mock

import pytest
import time_machine
from django.core import mail
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from api import webhooks
from api.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from api.tests.receiver import Receiver
from billing.models import Hold, HoldStatus
from generation.curation import choose_take
from generation.lifecycle import cancel_take, fail_take
from generation.models import RoughCut, RoughCutStatus, Take
from generation.roughcut import render_rough_cut, start_rough_cut

pytestmark = pytest.mark.django_db

TAKE = {"model": "wan2.1-t2v-1.3b", "prompt": "a kite", "resolution": "480p", "duration": 2}


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def loopback(settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = True


def endpoint_for(api, url: str, events: list[str]) -> WebhookEndpoint:
    answer = api.post(
        "/api/v1/webhook-endpoints/", {"url": url, "event_types": events}, format="json"
    )
    assert answer.status_code == 201, answer.json()
    return WebhookEndpoint.objects.get(pk=answer.json()["id"])


def test_a_canceled_take_is_delivered_signed_and_verifies(
    api, pro_acme, receiver, loopback, django_capture_on_commit_callbacks
):
    endpoint = endpoint_for(api, receiver.url, ["take.canceled", "video.failed"])
    take_id = api.post("/api/v1/takes/", TAKE, format="json").json()["takes"][0]["id"]
    with django_capture_on_commit_callbacks(execute=False):
        cancel_take(Take.objects.get(pk=take_id))
        cancel_take(Take.objects.get(pk=take_id))  # already canceled: no second event
    deliveries = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("event_type")
    assert [d.event_type for d in deliveries] == ["take.canceled", "video.failed"]
    for delivery in deliveries:
        webhooks.attempt(str(delivery.pk))

    assert len(receiver.requests) == 2
    verifier = Webhook(endpoint.secret)
    events = {}
    for headers, body in receiver.requests:
        event = verifier.verify(body, headers)  # raises unless the signature is right
        events[event["type"]] = event["data"]
    assert events["take.canceled"]["id"] == take_id
    assert events["take.canceled"]["status"] == "canceled"
    assert events["video.failed"]["error"]["code"] == "canceled"
    assert events["video.failed"]["charged_credits"] == 0
    tampered_headers, body = receiver.requests[0]
    with pytest.raises(Exception, match="signature"):
        verifier.verify(body.replace(b"canceled", b"succeeded"), tampered_headers)

    delivery = WebhookDelivery.objects.get(endpoint=endpoint, event_type="take.canceled")
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.response_status == 200
    assert delivery.attempt_log.get().response_body == "answered 200"


def test_take_events_are_recorded_in_the_transaction_that_ends_the_take(
    api, pro_acme, receiver, loopback
):
    endpoint = endpoint_for(api, receiver.url, ["take.failed", "video.failed"])
    take_id = api.post("/api/v1/takes/", TAKE, format="json").json()["takes"][0]["id"]
    # Rolled back with the change: no event for a failure that never happened.
    with pytest.raises(RuntimeError), transaction.atomic():
        fail_take(take_id, "node on fire")
        assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 2
        raise RuntimeError
    assert not WebhookDelivery.objects.filter(endpoint=endpoint).exists()
    assert Take.objects.get(pk=take_id).status == "queued"
    fail_take(take_id, "node on fire")
    fail_take(take_id, "node on fire again")  # already failed: nothing more
    deliveries = {d.event_type: d.payload["data"] for d in endpoint.deliveries.all()}
    assert sorted(deliveries) == ["take.failed", "video.failed"]
    assert deliveries["take.failed"]["error"] == "node on fire"
    assert deliveries["take.failed"]["charged"] == 0
    assert deliveries["video.failed"]["charged_credits"] == 0


def test_a_broken_listener_never_undoes_the_take_change(api, pro_acme, receiver, loopback):
    endpoint_for(api, receiver.url, ["take.failed"])
    take_id = api.post("/api/v1/takes/", TAKE, format="json").json()["takes"][0]["id"]
    with mock.patch("api.webhooks.emit_to", side_effect=DatabaseError("boom")):
        assert fail_take(take_id, "node on fire") is not None
    take = Take.objects.get(pk=take_id)
    assert take.status == "failed"
    assert Hold.objects.get(pk=take.hold_id).status == HoldStatus.RELEASED
    assert not WebhookDelivery.objects.exists()


def test_rough_cut_events_carry_the_cut(api, pro_acme, alice, receiver, loopback, settings):
    endpoint = endpoint_for(api, receiver.url, ["rough_cut.succeeded", "rough_cut.failed"])
    take_id = api.post("/api/v1/takes/", TAKE, format="json").json()["takes"][0]["id"]
    # A delivered take whose file is gone: the render fails and says so.
    Take.objects.filter(pk=take_id).update(status="succeeded", output_original="takes/gone.mp4")
    take = Take.objects.get(pk=take_id)
    choose_take(take)
    cut = start_rough_cut(take.shot.project, alice)
    assert render_rough_cut(cut.pk) is None
    assert render_rough_cut(cut.pk) is None  # not queued any more: nothing, no second event
    cut = RoughCut.objects.get(pk=cut.pk)
    assert cut.status == RoughCutStatus.FAILED
    [delivery] = endpoint.deliveries.all()
    assert delivery.event_type == "rough_cut.failed"
    data = delivery.payload["data"]
    assert data["id"] == str(cut.pk) and data["object"] == "rough_cut"
    assert data["project"] == take.shot.project_id and data["status"] == "failed"
    assert data["error"] and data["links"] == {}
    webhooks.attempt(str(delivery.pk))
    [(headers, body)] = receiver.requests
    assert Webhook(endpoint.secret).verify(body, headers)["type"] == "rough_cut.failed"


def test_a_failing_receiver_gets_retries_with_growing_delays(api, pro_acme, receiver, loopback):
    receiver.status = 500
    endpoint = endpoint_for(api, receiver.url, ["take.succeeded"])
    delivery = webhooks.emit_to(endpoint, "take.succeeded", {"id": "x"})
    gaps = []
    now = timezone.now()
    for _ in range(4):
        with time_machine.travel(now, tick=False):
            webhooks.attempt(str(delivery.pk))
        delivery.refresh_from_db()
        gaps.append((delivery.next_attempt_at - now).total_seconds())
        # Not due yet: a duplicate message sends nothing.
        with time_machine.travel(now, tick=False):
            assert webhooks.attempt(str(delivery.pk)) is None
        now = delivery.next_attempt_at + timedelta(seconds=1)
    assert len(receiver.requests) == 4
    assert gaps == sorted(gaps) and gaps[0] < gaps[-1]
    assert [round(g) for g in gaps] == [5, 30, 120, 600]
    assert delivery.attempts == 4 and delivery.status == DeliveryStatus.PENDING
    assert [a.status_code for a in delivery.attempt_log.all()] == [500] * 4
    assert delivery.response_body == "answered 500"
    # Every try carried the same webhook-id.
    assert {h["webhook-id"] for h, _ in receiver.requests} == {delivery.message_id}


@pytest.mark.django_db(transaction=True)
def test_sending_one_delivery_does_not_make_another_of_the_endpoint_skip(
    api, pro_acme, receiver, loopback
):
    """Two workers send two events of one take to one endpoint at once (PostgreSQL): one
    is recording its answer (it holds the endpoint's row to count its health) when the other
    claims its delivery; the claim must not skip it (it used to, and the event then waited
    for the re-drive a minute later)."""
    endpoint = endpoint_for(api, receiver.url, ["take.failed", "video.failed"])
    webhooks.emit_to(endpoint, "take.failed", {"id": "x"})
    second = webhooks.emit_to(endpoint, "video.failed", {"id": "x"})
    locked = threading.Event()

    def recording_the_first():
        try:
            with transaction.atomic():
                WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
                locked.set()
                time.sleep(1)
        finally:
            connection.close()

    other = threading.Thread(target=recording_the_first)
    other.start()
    try:
        assert locked.wait(10)
        assert webhooks.attempt(str(second.pk)) is not None
    finally:
        other.join()
    second.refresh_from_db()
    assert second.status == DeliveryStatus.SUCCEEDED
    assert [h["webhook-id"] for h, _ in receiver.requests] == [second.message_id]


def test_deliveries_give_up_after_the_last_delay(api, pro_acme, receiver, loopback, settings):
    settings.WEBHOOK_RETRY_DELAYS = [1, 2]
    receiver.status = 503
    endpoint = endpoint_for(api, receiver.url, ["take.succeeded"])
    delivery = webhooks.emit_to(endpoint, "take.succeeded", {})
    moment = timezone.now()
    for _ in range(3):
        with time_machine.travel(moment, tick=False):
            webhooks.attempt(str(delivery.pk))
        moment += timedelta(seconds=5)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 3


def test_redeliver_sends_again_from_the_api(api, pro_acme, receiver, loopback, settings):
    settings.WEBHOOK_RETRY_DELAYS = []
    receiver.status = 500
    endpoint = endpoint_for(api, receiver.url, ["take.succeeded"])
    delivery = webhooks.emit_to(endpoint, "take.succeeded", {})
    webhooks.attempt(str(delivery.pk))
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    receiver.status = 200
    answer = api.post(f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver/")
    assert answer.status_code == 202 and answer.json()["status"] == "pending"
    webhooks.attempt(str(delivery.pk))
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.attempts == 2
    listed = api.get(f"/api/v1/webhook-endpoints/{endpoint.pk}/deliveries/").json()["results"]
    assert [a["status_code"] for a in listed[0]["attempt_log"]] == [500, 200]


def test_an_endpoint_failing_for_days_is_disabled_and_owners_told(
    api, pro_acme, receiver, loopback, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_RETRY_DELAYS = [60] * 10
    receiver.status = 500
    endpoint = endpoint_for(api, receiver.url, ["take.succeeded"])
    start = timezone.now() + timedelta(seconds=1)
    for hours in (0, 40, 80):
        delivery = webhooks.emit_to(endpoint, "take.succeeded", {})
        with (
            time_machine.travel(start + timedelta(hours=hours), tick=False),
            django_capture_on_commit_callbacks(execute=False) as callbacks,
        ):
            webhooks.attempt(str(delivery.pk))
        for callback in callbacks:
            if callback.__qualname__.startswith("_note_endpoint_health"):
                callback()
    endpoint.refresh_from_db()
    assert endpoint.disabled_at is not None and not endpoint.is_active
    assert webhooks.emit(pro_acme.pk, "take.succeeded", {}) == []  # nothing more is sent
    assert len(mail.outbox) == 1 and "disabled" in mail.outbox[0].body
    assert mail.outbox[0].to == ["alice@example.com"]


def test_private_addresses_and_redirects_are_refused(api, pro_acme, receiver, settings):
    refused = api.post(
        "/api/v1/webhook-endpoints/",
        {"url": "http://example.com/hook", "event_types": ["take.succeeded"]},
        format="json",
    )
    assert refused.status_code == 400 and refused.json()["field"] == "url"
    for url in (
        "https://10.0.0.1/x",
        "https://169.254.169.254/latest",
        "https://127.0.0.1/x",
        "https://[::1]/x",
        "https://localhost/x",
        "https://[::ffff:192.168.0.1]/x",
    ):
        with pytest.raises(webhooks.UnsafeURL, match="private or reserved"):
            webhooks.resolve_safe(url)
    # Stored before the rule applied (or resolving differently now): refused at send time.
    endpoint = WebhookEndpoint.objects.create(
        workspace=pro_acme, url="https://10.1.2.3/hook", event_types=["take.succeeded"]
    )
    delivery = webhooks.emit_to(endpoint, "take.succeeded", {})
    webhooks.attempt(str(delivery.pk))
    delivery.refresh_from_db()
    assert "private or reserved" in delivery.error and delivery.response_status is None

    settings.WEBHOOK_ALLOW_LOOPBACK = True
    receiver.redirect_to = "http://10.0.0.1/"
    local = endpoint_for(api, receiver.url, ["take.succeeded"])
    delivery = webhooks.emit_to(local, "take.succeeded", {})
    webhooks.attempt(str(delivery.pk))
    delivery.refresh_from_db()
    assert delivery.response_status == 307 and len(receiver.requests) == 1  # not followed
    with pytest.raises(webhooks.UnsafeURL):
        webhooks.resolve_safe("http://10.0.0.1/")  # loopback allowed, private still not


def test_a_delivery_goes_to_the_address_checked_not_to_a_second_dns_answer(
    pro_acme, receiver, loopback, monkeypatch
):
    """DNS rebinding: the host's first answer is checked; a later one would point at an
    internal service on another address. The delivery must reach the first, by name."""
    elsewhere = Receiver(host="127.0.0.2", port=receiver.server.server_port)
    answers: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host != "hooks.example":
            return real_getaddrinfo(host, port, *args, **kwargs)
        answers.append("127.0.0.1" if answers else "127.0.0.2")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[-1], port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    port = receiver.server.server_port
    endpoint = WebhookEndpoint.objects.create(
        workspace=pro_acme, url=f"http://hooks.example:{port}/hook", event_types=["take.succeeded"]
    )
    delivery = webhooks.emit_to(endpoint, "take.succeeded", {})
    try:
        webhooks.attempt(str(delivery.pk))
    finally:
        elsewhere.close()
    delivery.refresh_from_db()
    assert delivery.response_status == 200, delivery.error
    assert receiver.requests == []  # the address a second lookup would have given
    [(headers, _body)] = elsewhere.requests
    assert {k.lower(): v for k, v in headers.items()}["host"] == f"hooks.example:{port}"
    assert answers == ["127.0.0.2"]  # resolved once, by the check


def test_the_page_lists_deliveries_and_redelivers(pro_acme, alice, bob, receiver, loopback):
    from conftest import client_for

    endpoint = WebhookEndpoint.objects.create(
        workspace=pro_acme, url=receiver.url, event_types=["take.succeeded"]
    )
    delivery = webhooks.emit_to(endpoint, "take.succeeded", {})
    owner = client_for(alice, pro_acme)
    page = owner.get(f"/team/api/webhooks/{endpoint.pk}/")
    assert page.status_code == 200 and delivery.message_id in page.content.decode()
    answer = owner.post(f"/team/api/deliveries/{delivery.pk}/redeliver/")
    assert answer.status_code == 302
    member = client_for(bob, pro_acme)
    assert member.post(f"/team/api/deliveries/{delivery.pk}/redeliver/").status_code == 403
    assert mail.outbox == []
