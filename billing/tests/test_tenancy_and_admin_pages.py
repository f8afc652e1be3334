from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from accounts.tenancy import UnscopedQueryError, WorkspaceOwned, tenancy_guard
from billing.ledger import get_wallet, grant_credits, place_hold
from billing.models import (
    CreditLot,
    CreditPackage,
    CreditSource,
    Hold,
    LedgerEntry,
    Subscription,
    Wallet,
)
from billing.plans import start_subscription
from billing.stripe_sync import grant_package
from conftest import client_for


@pytest.mark.parametrize("model", [Wallet, CreditLot, LedgerEntry, Hold, Subscription])
def test_ledger_models_are_tenant_owned_and_fail_closed(model, acme, charlie, plans):
    assert issubclass(model, WorkspaceOwned)
    start_subscription(acme, plans["standard"])
    place_hold(acme, 5, idempotency_key="h")
    with tenancy_guard():
        with pytest.raises(UnscopedQueryError):
            list(model.objects.all())
        assert model.objects.for_workspace(acme).exists()
        assert not model.objects.for_workspace(charlie.workspaces.get()).exists()


def test_package_purchase_grants_a_purchase_lot_once(acme, plans):
    """Through the one live path (a paid checkout session), not a second helper."""
    package = CreditPackage.objects.get(slug="credits-500")
    session = {
        "id": "cs_order-1",
        "mode": "payment",
        "amount_total": 500,
        "currency": "cny",
        "metadata": {"kind": "package", "package": package.slug, "workspace_id": str(acme.pk)},
    }
    with time_machine.travel(timezone.now(), tick=False):
        paid_at = timezone.now()
        lot = grant_package(session).lot
        again = grant_package(session).lot
    assert lot.pk == again.pk and lot.source == CreditSource.PURCHASE
    assert lot.expires_at == paid_at + timedelta(days=365)
    assert get_wallet(acme).balance == 500


def test_every_billing_admin_page_renders(staff, acme, plans, rate_card, schedule):
    start_subscription(acme, plans["standard"])
    grant_credits(acme, 10, source=CreditSource.PROMOTION, idempotency_key="p")
    place_hold(acme, 5, idempotency_key="h")
    client = client_for(staff)
    for name in [
        "plan",
        "creditpackage",
        "subscription",
        "wallet",
        "creditlot",
        "ledgerentry",
        "hold",
        "consumption",
        "ratecard",
        "pricingschedule",
    ]:
        response = client.get(reverse(f"admin:billing_{name}_changelist"))
        assert response.status_code == 200, name
    for obj, name in [
        (Hold.objects.get(), "hold"),
        (plans["pro"], "plan"),
        (schedule, "pricingschedule"),
    ]:
        response = client.get(reverse(f"admin:billing_{name}_change", args=[obj.pk]))
        assert response.status_code == 200, name
