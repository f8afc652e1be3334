"""Billing data in the reader's language: the shipped plan and package names and the
ledger reasons the platform writes are translated when shown; typed ones are shown as
typed."""

from __future__ import annotations

from unittest import mock

import pytest
from django.utils import translation

from billing.display import ledger_reason, package_name, plan_name
from billing.ledger import adjust_credits, expire_lots
from billing.models import CreditPackage
from conftest import client_for
from generation.lifecycle import fail_take
from generation.submission import TakeSpec, submit_takes
from generation.tests.helpers import setup_catalog, subscribe

pytestmark = pytest.mark.django_db


def test_shipped_names_are_translated_and_typed_names_kept():
    with translation.override("zh-hans"):
        assert [plan_name(n) for n in ("Free", "Standard", "Pro", "Studio")] == [
            "免费版",
            "标准版",
            "专业版",
            "工作室版",
        ]
        assert package_name("500 credits") == "500 积分"
        assert plan_name("Night Owl") == "Night Owl"
    with translation.override("en"):
        assert plan_name("Studio") == "Studio"


@pytest.mark.parametrize(
    "stored, chinese",
    [
        ("take failed", "镜头失败"),
        ("take canceled", "镜头已取消"),
        ("credits expired", "积分已过期"),
        ("Daily free credits for 2026-11-30", "2026-11-30 的每日免费积分"),
        ("Standard credits for the period from 2026-11-01", "标准版 自 2026-11-01 起本周期的积分"),
        (
            "500 credits bought with Stripe checkout cs_test_1",
            "通过 Stripe 结账 cs_test_1 购买 500 积分",
        ),
        ("Upgrade from Standard to Pro", "从 标准版 升级到 专业版"),
        ("Refund of Stripe payment pi_9", "Stripe 付款 pi_9 退款"),
        ("Dispute of Stripe payment pi_9", "Stripe 付款 pi_9 争议"),
        ("Goodwill after the outage of 3 May", "Goodwill after the outage of 3 May"),
    ],
)
def test_ledger_reasons_read_in_chinese(stored, chinese):
    with translation.override("zh-hans"):
        assert ledger_reason(stored) == chinese
    with translation.override("en"):
        assert ledger_reason(stored) == stored


def test_the_wallet_shows_plan_and_reasons_in_chinese(alice, acme, staff):
    setup_catalog()
    subscribe(acme, "standard")
    adjust_credits(acme, 7, actor=staff, reason="Goodwill credit", idempotency_key="adj-1")
    with mock.patch("workers.tasks.dispatch_takes.delay"):
        [take] = submit_takes(
            acme,
            alice,
            TakeSpec(model="wan2.1-t2v-1.3b", prompt="a kite", resolution="480p", duration=1),
            idempotency_key="k1",
        )
    fail_take(take.pk, "no")
    expire_lots()
    client = client_for(alice, acme)
    body = client.get("/wallet/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "标准版" in body
    assert f"镜头 {take.pk}" in body and "镜头失败" in body
    assert "标准版 自 " in body and "起本周期的积分" in body
    assert "Goodwill credit" in body  # typed by a person: as typed
    for english in ("take failed", f"take {take.pk}", "credits for the period"):
        assert english not in body
    english = client.get("/wallet/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f"take {take.pk}" in english and "Standard credits for the period" in english


def test_pricing_and_billing_show_translated_plan_and_package_names(alice, acme, client):
    from billing.demo import seed_plans

    seed_plans()
    assert CreditPackage.objects.filter(name="100 credits").exists()
    body = client.get("/pricing/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    for name in ("免费版", "标准版", "专业版", "工作室版", "100 积分", "2000 积分"):
        assert name in body
    body = client_for(alice, acme).get("/billing/", HTTP_ACCEPT_LANGUAGE="zh-hans").content
    assert "100 积分" in body.decode() and "免费版" in body.decode()


def test_the_dunning_mail_is_in_each_owners_language(alice, acme, settings):
    from django.core import mail

    from accounts.actions import set_batch_digest
    from accounts.models import Membership, Role
    from billing.dunning import tell_owners_past_due
    from conftest import make_user

    settings.SITE_NAME = "Retake Studio"
    subscription = subscribe(acme, "standard")
    set_batch_digest(alice, False, language="zh-hans")  # alice reads her e-mails in Chinese
    carol = make_user("carol@example.com")
    Membership.objects.create(workspace=acme, user=carol, role=Role.OWNER)
    tell_owners_past_due(subscription.pk)
    by_owner = {m.to[0]: m for m in mail.outbox}
    chinese, english = by_owner["alice@example.com"], by_owner["carol@example.com"]
    assert chinese.subject == "Acme 的 标准版 套餐付款失败"
    assert (
        "Retake Studio" in chinese.body and "免费版" in chinese.body and "/billing/" in chinese.body
    )
    assert english.subject == "Payment failed for the Standard plan of Acme"
    assert "return to the Free plan" in english.body
