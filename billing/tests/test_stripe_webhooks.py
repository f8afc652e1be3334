"""Stripe webhooks against a local fake of Stripe's API, with the real stripe library."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings as django_settings
from django.core import mail
from django.utils import timezone

from billing import dunning, ledger, payments, stripe_events
from billing.models import (
    CreditLot,
    CreditPackage,
    CreditRevocation,
    CreditSource,
    StripeCustomer,
    StripeEvent,
    StripeEventStatus,
    StripePayment,
    Subscription,
    SubscriptionStatus,
)
from billing.plans import plan_for
from billing.stripe_tasks import handle_stripe_event

from .fake_stripe import FakeStripe, sign
from .stripe_support import configured_fake, deliver, post_event


@pytest.fixture
def fake(settings, db):
    with configured_fake(settings) as fake:
        yield fake


@pytest.fixture
def shop(plans):
    return CreditPackage.objects.get(slug="credits-100")


def _session_id(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _buy(fake, workspace, package, user, currency="CNY", *, paid=True) -> dict:
    url = payments.start_package_checkout(workspace, package, currency, user=user)
    return fake.complete_checkout(_session_id(url), paid=paid)


def _subscribe(fake, workspace, plan, user, currency="CNY") -> tuple[dict, dict]:
    url = payments.start_subscription_checkout(workspace, plan, currency, user=user)
    session = fake.complete_checkout(_session_id(url))
    return session, fake.get(session["subscription"])


def _balance(workspace) -> int:
    return ledger.get_wallet(workspace).balance


# --- signatures and the event store ------------------------------------------------------


def test_forged_or_missing_signatures_get_400_and_store_nothing(fake, charlie):
    event = FakeStripe.event("checkout.session.completed", {"id": "cs_x", "object": "x"})
    payload = json.dumps(event)
    stale = int(time.time()) - 3600
    forged = [
        sign(payload, "whsec_wrong"),
        sign(payload + " ", "whsec_test_retake"),
        sign(payload, "whsec_test_retake", timestamp=stale),
        "t=1,v1=deadbeef",
        "",
    ]
    for signature in forged:
        assert post_event(event, signature=signature).status_code == 400
    assert StripeEvent.objects.count() == 0
    assert post_event(event).status_code == 200
    assert StripeEvent.objects.count() == 1


def test_signature_matches_stripes_scheme(fake):
    payload = '{"id": "evt_1"}'
    header = sign(payload, "whsec_abc", timestamp=1700000000)
    import hashlib
    import hmac

    digest = hmac.new(b"whsec_abc", b'1700000000.{"id": "evt_1"}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={digest}"


def test_event_is_stored_once_by_id_and_enqueued_on_commit(
    fake, django_capture_on_commit_callbacks
):
    event = FakeStripe.event("customer.created", {"id": "cus_1", "object": "customer"})
    with django_capture_on_commit_callbacks() as first:
        assert post_event(event).status_code == 200
    with django_capture_on_commit_callbacks() as second:
        assert post_event(event).status_code == 200
    assert StripeEvent.objects.filter(event_id=event["id"]).count() == 1
    assert len(first) == 1 and len(second) == 0
    stored = StripeEvent.objects.get()
    assert stored.status == StripeEventStatus.RECEIVED and stored.attempts == 0


def test_unhandled_event_types_are_marked_ignored(fake):
    event = deliver(FakeStripe.event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert event.status == StripeEventStatus.IGNORED and event.attempts == 1


# --- credit packages ---------------------------------------------------------------------


def test_package_checkout_sends_the_documented_shape(fake, acme, alice, shop):
    payments.start_package_checkout(acme, shop, "CNY", user=alice)
    payments.start_package_checkout(acme, shop, "USD", user=alice)
    cny, usd = fake.sent("POST", "/v1/checkout/sessions")
    assert cny["mode"] == "payment"
    assert cny["payment_method_types"] == ["card", "alipay", "wechat_pay"]
    assert usd["payment_method_types"] == ["card"]
    assert fake.get(cny["line_items"][0]["price"])["unit_amount"] == 1000
    assert fake.get(usd["line_items"][0]["price"])["currency"] == "usd"
    assert cny["metadata"]["workspace_id"] == str(acme.pk)
    # One customer per workspace, created once with an idempotency key.
    assert len(fake.sent("POST", "/v1/customers")) == 1
    assert cny["customer"] == usd["customer"] == acme.stripe_customer.customer_id
    shop.refresh_from_db()
    assert set(shop.stripe_price_ids) == {"CNY", "USD"}


def test_customer_creation_is_idempotent_at_stripe(fake, acme):
    first = payments.ensure_customer(acme)
    StripeCustomer.objects.filter(workspace=acme).delete()
    assert payments.ensure_customer(acme) == first  # same idempotency key, same customer
    assert len({o for o in fake.objects if o.startswith("cus_")}) == 1


def test_paid_checkout_delivered_ten_times_out_of_order_grants_credits_once(
    fake, acme, alice, charlie, shop
):
    session = _buy(fake, acme, shop, alice)
    events = [
        FakeStripe.event("checkout.session.completed", session),
        FakeStripe.event("checkout.session.async_payment_succeeded", session),
    ]
    deliveries = events * 10
    random.Random(6).shuffle(deliveries)
    for event in deliveries:
        assert deliver(event).status == StripeEventStatus.PROCESSED
    assert _balance(acme) == 100
    lot = CreditLot.objects.get(workspace=acme)
    assert lot.source == CreditSource.PURCHASE and lot.amount == 100
    expected = timezone.now() + timedelta(days=shop.validity_days)
    assert abs((lot.expires_at - expected).total_seconds()) < 60
    assert StripePayment.objects.get().lot == lot
    assert StripeEvent.objects.count() == 2
    assert _balance(charlie.workspaces.get()) == 0
    assert ledger.audit_wallets() == []


def test_delayed_payment_grants_only_when_it_succeeds(fake, acme, alice, shop):
    session = _buy(fake, acme, shop, alice, paid=False)
    deliver(FakeStripe.event("checkout.session.completed", session))
    assert _balance(acme) == 0
    session["payment_status"] = "paid"
    deliver(FakeStripe.event("checkout.session.async_payment_succeeded", session))
    assert _balance(acme) == 100


def test_failed_handler_is_recorded_then_succeeds_on_retry(fake, acme, alice, shop):
    session = _buy(fake, acme, shop, alice)
    session["metadata"]["package"] = "credits-gone"
    event = deliver(FakeStripe.event("checkout.session.completed", session))
    assert event.status == StripeEventStatus.FAILED and event.attempts == 1
    assert "credits-gone" in event.last_error
    assert _balance(acme) == 0 and not StripePayment.objects.exists()
    CreditPackage.objects.create(slug="credits-gone", name="Gone", credits=7, prices={"CNY": 1})
    event = stripe_events.process_event(event.pk)
    assert event.status == StripeEventStatus.PROCESSED and event.attempts == 2
    assert event.last_error == "" and _balance(acme) == 7


def test_task_retries_a_failing_event_until_attempts_run_out(fake, acme, settings):
    settings.STRIPE_EVENT_MAX_ATTEMPTS = 3
    bad = {
        "id": "cs_bad",
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": "paid",
        "customer": "cus_unknown",
        "metadata": {"kind": "package", "package": "credits-100"},
    }
    post_event(FakeStripe.event("checkout.session.completed", bad))
    stored = StripeEvent.objects.get()
    handle_stripe_event.apply(args=[stored.pk])
    stored.refresh_from_db()
    assert stored.status == StripeEventStatus.FAILED
    assert stored.attempts == 3
    assert "No workspace" in stored.last_error


def test_admin_retry_action_requeues_failed_events(fake, staff, django_capture_on_commit_callbacks):
    from conftest import client_for

    event = deliver(
        FakeStripe.event(
            "checkout.session.completed",
            {
                "id": "cs_bad",
                "object": "checkout.session",
                "mode": "payment",
                "payment_status": "paid",
                "customer": "cus_unknown",
                "metadata": {"kind": "package"},
            },
        )
    )
    assert event.status == StripeEventStatus.FAILED
    admin = client_for(staff)
    page = admin.get(f"/admin/billing/stripeevent/{event.pk}/change/")
    assert page.status_code == 200 and b"No workspace" in page.content
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin.post(
            "/admin/billing/stripeevent/",
            {"action": "retry", "_selected_action": [event.pk]},
        )
    assert response.status_code == 302
    assert len(callbacks) == 1


# --- subscriptions -----------------------------------------------------------------------


def test_subscription_events_in_any_order_and_replayed_grant_the_period_once(
    fake, acme, alice, charlie, plans
):
    session, sub = _subscribe(fake, acme, plans["standard"], alice)
    invoice = fake.get(sub["latest_invoice"])
    events = [
        FakeStripe.event("invoice.paid", invoice),
        FakeStripe.event("customer.subscription.created", sub),
        FakeStripe.event("checkout.session.completed", session),
    ]
    for event in events * 10:
        deliver(event)
    local = Subscription.objects.get(workspace=acme)
    assert local.plan == plans["standard"] and local.status == SubscriptionStatus.ACTIVE
    assert local.external_id == sub["id"] and local.currency == "CNY"
    assert plan_for(acme) == plans["standard"]
    assert _balance(acme) == 660
    lot = CreditLot.objects.get(workspace=acme)
    assert lot.source == CreditSource.PLAN_PERIOD
    assert lot.expires_at == datetime.fromtimestamp(
        sub["items"]["data"][0]["current_period_end"], tz=UTC
    )
    assert StripePayment.objects.get(reference=invoice["id"]).lot == lot
    params = fake.sent("POST", "/v1/checkout/sessions")[0]
    assert params["mode"] == "subscription" and "wechat_pay" not in params["payment_method_types"]
    assert plan_for(charlie.workspaces.get()).slug == "free"


def test_renewal_grants_the_next_period_while_the_old_credits_expire(fake, acme, alice, plans):
    _session, sub = _subscribe(fake, acme, plans["standard"], alice)
    deliver(FakeStripe.event("invoice.paid", fake.get(sub["latest_invoice"])))
    hold = ledger.place_hold(acme, 60, idempotency_key="take-1")
    ledger.settle_hold(hold, 60, idempotency_key="take-1-settle")
    assert _balance(acme) == 600
    end = datetime.fromtimestamp(sub["items"]["data"][0]["current_period_end"], tz=UTC)
    with time_machine.travel(end + timedelta(minutes=5), tick=False):
        invoice = fake.renew(sub["id"])
        for _ in range(3):
            deliver(FakeStripe.event("invoice.paid", invoice))
        ledger.expire_lots()
        local = Subscription.objects.get(workspace=acme)
        assert local.current_period_start == end
        lots = CreditLot.objects.filter(workspace=acme).order_by("pk")
        assert [(lot.amount, lot.remaining) for lot in lots] == [(660, 0), (660, 660)]
        assert lots[0].expired_at is not None
        assert _balance(acme) == 660
        assert ledger.audit_wallets() == []


def test_upgrade_applies_at_once_and_downgrade_waits_for_the_next_period(fake, acme, alice, plans):
    _session, sub = _subscribe(fake, acme, plans["standard"], alice)
    deliver(FakeStripe.event("invoice.paid", fake.get(sub["latest_invoice"])))

    payments.change_plan(acme, plans["pro"])
    update = fake.sent("POST", f"/v1/subscriptions/{sub['id']}")[-1]
    assert update["proration_behavior"] == "always_invoice"
    for _ in range(2):
        deliver(FakeStripe.event("customer.subscription.updated", fake.get(sub["id"])))
    assert plan_for(acme) == plans["pro"]
    assert _balance(acme) == 3000  # topped up to the Pro period's credits
    proration = fake._invoice(fake.get(sub["id"]), "subscription_update")
    deliver(FakeStripe.event("invoice.paid", proration))
    assert StripePayment.objects.get(reference=proration["id"]).credits == 2340

    payments.change_plan(acme, plans["standard"])
    update = fake.sent("POST", f"/v1/subscriptions/{sub['id']}")[-1]
    assert update["proration_behavior"] == "none"
    deliver(FakeStripe.event("customer.subscription.updated", fake.get(sub["id"])))
    assert plan_for(acme) == plans["pro"]  # until the period ends

    end = datetime.fromtimestamp(sub["items"]["data"][0]["current_period_end"], tz=UTC)
    with time_machine.travel(end + timedelta(minutes=1), tick=False):
        deliver(FakeStripe.event("invoice.paid", fake.renew(sub["id"])))
        ledger.expire_lots()
        assert plan_for(acme) == plans["standard"]
        assert _balance(acme) == 660


def test_cancel_at_period_end_then_deleted_returns_the_workspace_to_free(fake, acme, alice, plans):
    _session, sub = _subscribe(fake, acme, plans["standard"], alice)
    deliver(FakeStripe.event("customer.subscription.created", sub))
    payments.cancel_at_period_end(acme)
    deliver(FakeStripe.event("customer.subscription.updated", fake.get(sub["id"])))
    local = Subscription.objects.get(workspace=acme)
    assert local.cancel_at_period_end and plan_for(acme) == plans["standard"]
    stale_update = FakeStripe.event("customer.subscription.updated", fake.get(sub["id"]))
    deliver(FakeStripe.event("customer.subscription.deleted", fake.end_subscription(sub["id"])))
    deliver(stale_update)  # arrives late: Stripe's current state says canceled
    local.refresh_from_db()
    assert local.status == SubscriptionStatus.CANCELED
    assert plan_for(acme).slug == "free"


def test_payment_failure_marks_past_due_tells_the_owner_once_then_grace_downgrades(
    fake, acme, alice, bob, plans, settings
):
    settings.PAST_DUE_GRACE_DAYS = 3
    _session, sub = _subscribe(fake, acme, plans["standard"], alice)
    deliver(FakeStripe.event("customer.subscription.created", sub))
    end = datetime.fromtimestamp(sub["items"]["data"][0]["current_period_end"], tz=UTC)
    with time_machine.travel(end + timedelta(minutes=1), tick=False):
        failed = FakeStripe.event("invoice.payment_failed", fake.renew(sub["id"], paid=False))
        deliver(failed)
        deliver(failed)
        assert Subscription.objects.get(workspace=acme).status == SubscriptionStatus.PAST_DUE
        assert plan_for(acme) == plans["standard"]  # still entitled during the grace period
        assert [m.to for m in mail.outbox] == [["alice@example.com"]]
        assert dunning.downgrade_past_due() == 0
    with time_machine.travel(end + timedelta(days=3, minutes=2), tick=False):
        assert dunning.downgrade_past_due() == 1
        assert dunning.downgrade_past_due() == 0
    assert plan_for(acme).slug == "free"
    assert fake.get(sub["id"])["status"] == "canceled"


# --- refunds and disputes ----------------------------------------------------------------


def _spend(workspace, amount: int, key: str) -> None:
    hold = ledger.place_hold(workspace, amount, idempotency_key=key)
    ledger.settle_hold(hold, amount, idempotency_key=f"{key}-settle")


def test_full_refund_after_half_was_spent_takes_back_the_rest_and_records_the_shortfall(
    fake, acme, alice, shop
):
    session = _buy(fake, acme, shop, alice)
    deliver(FakeStripe.event("checkout.session.completed", session))
    _spend(acme, 50, "take-1")
    charge = fake.charge_for_intent(session["payment_intent"])
    refunded = FakeStripe.event("charge.refunded", fake.refund(charge["id"], charge["amount"]))
    for _ in range(10):
        deliver(refunded)
    assert _balance(acme) == 0
    payment = StripePayment.objects.get()
    assert (payment.credits_revoked, payment.credits_shortfall) == (50, 50)
    revocation = CreditRevocation.objects.get()
    assert (revocation.requested, revocation.taken, revocation.shortfall) == (100, 50, 50)
    assert (revocation.entry.kind, revocation.entry.amount) == ("revoke", -50)
    assert "Refund" in revocation.entry.reason and revocation.entry.params["cause"] == "refund"
    assert ledger.audit_wallets() == []


def test_partial_refunds_take_back_proportional_credits_and_add_up(fake, acme, alice, shop):
    session = _buy(fake, acme, shop, alice)
    deliver(FakeStripe.event("checkout.session.completed", session))
    charge = fake.charge_for_intent(session["payment_intent"])
    first = FakeStripe.event("charge.refunded", fake.refund(charge["id"], 300))
    second = FakeStripe.event("charge.refunded", fake.refund(charge["id"], 200))
    deliver(second)  # the later state first
    deliver(first)
    assert _balance(acme) == 50
    assert StripePayment.objects.get().credits_revoked == 50
    assert CreditRevocation.objects.count() == 1


def test_dispute_takes_back_unspent_credits(fake, acme, alice, shop):
    session = _buy(fake, acme, shop, alice)
    deliver(FakeStripe.event("checkout.session.completed", session))
    _spend(acme, 30, "take-1")
    charge = fake.charge_for_intent(session["payment_intent"])
    dispute = FakeStripe.event("charge.dispute.created", fake.dispute(charge["id"]))
    deliver(dispute)
    deliver(dispute)
    assert _balance(acme) == 0
    revocation = CreditRevocation.objects.get()
    assert (revocation.cause, revocation.taken, revocation.shortfall) == ("dispute", 70, 30)


def test_refund_of_a_subscription_invoice_takes_back_the_period_credits(fake, acme, alice, plans):
    _session, sub = _subscribe(fake, acme, plans["standard"], alice)
    invoice = fake.get(sub["latest_invoice"])
    deliver(FakeStripe.event("invoice.paid", invoice))
    intent = invoice["payments"]["data"][0]["payment"]["payment_intent"]
    charge = fake.charge_for_intent(intent)
    deliver(FakeStripe.event("charge.refunded", fake.refund(charge["id"], charge["amount"])))
    assert _balance(acme) == 0


def test_no_test_talks_to_stripes_servers(fake):
    assert django_settings.STRIPE_API_BASE.startswith("http://127.0.0.1:")


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_payment_grant_once_and_refund_once(settings, monkeypatch):
    """Eight workers handle the same paid checkout and refund at once, on PostgreSQL."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from accounts.actions import create_workspace
    from billing.demo import seed_plans
    from conftest import make_user

    enqueued: list[int] = []
    monkeypatch.setattr(stripe_events, "enqueue", enqueued.append)  # the threads are the workers
    seed_plans()
    owner = make_user("dora@example.com")
    team = create_workspace(owner, "Dora's")
    package = CreditPackage.objects.get(slug="credits-100")
    with configured_fake(settings) as fake:
        session = _buy(fake, team, package, owner)
        stored = []
        for kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
            post_event(FakeStripe.event(kind, session))
            stored.append(StripeEvent.objects.get(type=kind).pk)

        def handle(pk: int) -> str:
            try:
                return stripe_events.process_event(pk).status
            finally:
                connection.close()

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(handle, stored * 4))
        assert _balance(team) == 100
        assert CreditLot.objects.filter(workspace=team).count() == 1

        charge = fake.charge_for_intent(session["payment_intent"])
        refunds = [
            FakeStripe.event("charge.refunded", fake.refund(charge["id"], 500)),
            FakeStripe.event("charge.refunded", fake.refund(charge["id"], 500)),
        ]
        for event in refunds:
            post_event(event)
        pks = list(StripeEvent.objects.filter(type="charge.refunded").values_list("pk", flat=True))
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(handle, pks * 4))
    assert _balance(team) == 0
    assert StripePayment.objects.get().credits_revoked == 100
    assert ledger.audit_wallets() == []
    assert sorted(enqueued) == sorted(stored + pks)
