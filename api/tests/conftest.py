"""Fixtures for the public API: a catalog, Acme on the Pro plan (API access) with credits,
and an API key for it. charlie (another workspace) is always around."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.api_keys import create_api_key
from generation.tests.helpers import fund, setup_catalog, subscribe


@pytest.fixture
def no_dispatch(monkeypatch):
    monkeypatch.setattr("workers.tasks.dispatch_takes.delay", lambda *a, **k: None)


@pytest.fixture
def pro_acme(acme, no_dispatch):
    setup_catalog()
    subscribe(acme, "pro")
    fund(acme, 1000)
    return acme


def key_for(workspace, user, **kwargs) -> str:
    return create_api_key(workspace, name=kwargs.pop("name", "test"), acting_user=user, **kwargs)[1]


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def acme_key(pro_acme, alice) -> str:
    return key_for(pro_acme, alice)


@pytest.fixture
def api(acme_key) -> APIClient:
    return bearer(acme_key)


@pytest.fixture
def charlie_ws(charlie):
    from accounts.actions import ensure_personal_workspace

    return ensure_personal_workspace(charlie)


@pytest.fixture
def charlie_key(charlie, charlie_ws, pro_acme) -> str:
    subscribe(charlie_ws, "pro")
    fund(charlie_ws, 100, key="charlie")
    return key_for(charlie_ws, charlie)
