"""The billing page and its buttons: owners and admins pay, members read, outsiders see
only their own workspace."""

from __future__ import annotations

import pytest

from accounts.models import Membership, Role
from billing.models import StripeCustomer
from conftest import client_for

from .fake_stripe import StripeError
from .stripe_support import configured_fake


@pytest.fixture
def fake(settings, db):
    with configured_fake(settings) as fake:
        yield fake


def test_billing_page_lists_plans_and_packages_with_prices(fake, alice, acme, plans):
    page = client_for(alice, acme).get("/billing/")
    assert page.status_code == 200
    text = page.content.decode()
    for expected in ("Acme", "Free", "Standard", "¥66.00", "$9.99", "100 credits", "¥10.00"):
        assert expected in text
    assert "Manage billing" in text and "Subscribe (CNY)" in text and "Buy (" in text


def test_member_sees_billing_read_only_and_cannot_pay(fake, bob, acme, plans):
    client = client_for(bob, acme)
    text = client.get("/billing/").content.decode()
    assert "Standard" in text and "Buy (" not in text and "Manage billing" not in text
    form = {"kind": "package", "slug": "credits-100", "currency": "CNY"}
    assert client.post("/billing/checkout/", form).status_code == 403
    assert client.post("/billing/portal/").status_code == 403
    assert client.post("/billing/cancel/").status_code == 403
    assert fake.requests == []


def test_admin_can_pay_like_the_owner(fake, bob, acme, plans):
    Membership.objects.filter(user=bob, workspace=acme).update(role=Role.ADMIN)
    form = {"kind": "package", "slug": "credits-100", "currency": "USD"}
    response = client_for(bob, acme).post("/billing/checkout/", form)
    assert response.status_code == 302
    assert response.url.startswith("https://checkout.stripe.test/")


def test_owner_checkout_redirects_to_stripe_for_their_workspace(fake, alice, acme, plans):
    client = client_for(alice, acme)
    form = {"kind": "plan", "slug": "standard", "currency": "CNY"}
    response = client.post("/billing/checkout/", form)
    assert response.status_code == 302 and response.url.startswith("https://checkout.stripe")
    sent = fake.sent("POST", "/v1/checkout/sessions")[0]
    assert sent["mode"] == "subscription"
    assert sent["subscription_data"]["metadata"]["workspace_id"] == str(acme.pk)
    portal = client.post("/billing/portal/")
    assert portal.status_code == 302 and portal.url.startswith("https://billing.stripe.test/")
    assert fake.sent("POST", "/v1/billing_portal/sessions")[0]["customer"] == (
        StripeCustomer.objects.get(workspace=acme).customer_id
    )


def test_outsider_only_ever_reaches_his_own_workspace(fake, alice, acme, charlie, plans):
    client = client_for(charlie, acme)  # a forged session pointing at Acme
    text = client.get("/billing/").content.decode()
    assert "Acme" not in text
    client.post("/billing/checkout/", {"kind": "package", "slug": "credits-100", "currency": "CNY"})
    sent = fake.sent("POST", "/v1/checkout/sessions")[0]
    assert sent["metadata"]["workspace_id"] == str(charlie.workspaces.get().pk)
    assert not StripeCustomer.objects.filter(workspace=acme).exists()


def test_bad_choices_and_stripe_errors_show_a_message_and_change_nothing(fake, alice, acme, plans):
    client = client_for(alice, acme)
    for form in (
        {"kind": "package", "slug": "nope", "currency": "CNY"},
        {"kind": "package", "slug": "credits-100", "currency": "EUR"},
        {"kind": "plan", "slug": "free", "currency": "CNY"},
        {"kind": "other"},
    ):
        response = client.post("/billing/checkout/", form, follow=True)
        assert response.redirect_chain[-1][0] == "/billing/"
        assert list(response.context["messages"])
    fake.fail_next.append(StripeError(402, "Your card was declined."))
    response = client.post(
        "/billing/checkout/",
        {"kind": "package", "slug": "credits-100", "currency": "CNY"},
        follow=True,
    )
    assert "declined" in " ".join(str(m) for m in response.context["messages"])
    assert not StripeCustomer.objects.exists()
    assert fake.sent("POST", "/v1/checkout/sessions") == []


def test_without_keys_payments_are_refused_with_a_message(fake, alice, acme, plans, settings):
    settings.STRIPE_SECRET_KEY = ""
    response = client_for(alice, acme).post(
        "/billing/checkout/",
        {"kind": "package", "slug": "credits-100", "currency": "CNY"},
        follow=True,
    )
    assert "not configured" in " ".join(str(m) for m in response.context["messages"])
    assert fake.requests == []


def test_anonymous_visitors_are_sent_to_sign_in(fake, db):
    from django.test import Client

    assert Client().get("/billing/").status_code == 302


def test_upgrade_from_the_page_applies_at_once_and_outsiders_cannot_touch_it(
    fake, alice, acme, bob, charlie, plans
):
    from billing import payments
    from billing.plans import plan_for

    from .stripe_support import deliver
    from .test_stripe_webhooks import _subscribe

    _session, sub = _subscribe(fake, acme, plans["standard"], alice)
    deliver(fake.event("customer.subscription.created", sub))
    assert plan_for(acme) == plans["standard"]
    assert "Change plan" in client_for(alice, acme).get("/billing/").content.decode()

    form = {"kind": "plan", "slug": "pro", "currency": "CNY"}
    assert client_for(bob, acme).post("/billing/checkout/", form).status_code == 403
    client_for(charlie, acme).post("/billing/checkout/", form)  # his own workspace only
    assert plan_for(acme) == plans["standard"]

    response = client_for(alice, acme).post("/billing/checkout/", form)
    assert response.status_code == 302 and response.url == "/billing/"
    assert plan_for(acme) == plans["pro"]
    update = fake.sent("POST", f"/v1/subscriptions/{sub['id']}")[-1]
    assert update["payment_behavior"] == "pending_if_incomplete"
    assert payments.live_payment_subscription(acme).plan == plans["pro"]
