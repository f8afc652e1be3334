"""A personal workspace's given name is stored in English and shown in the reader's
language; a name a person typed is shown as typed."""

from __future__ import annotations

import pytest
from django.utils import translation

from accounts.actions import create_workspace
from accounts.models import Workspace
from conftest import client_for, make_user

pytestmark = pytest.mark.django_db


def test_personal_name_is_stored_in_english_whatever_the_sign_up_language():
    with translation.override("zh-hans"):
        dana = make_user("dana@example.com")
    personal = Workspace.objects.get(memberships__user=dana, is_personal=True)
    assert personal.name == "dana's workspace"  # the admin, API, Stripe and webhooks read this
    with translation.override("zh-hans"):
        assert personal.display_name == "dana 的工作区"
    with translation.override("en"):
        assert personal.display_name == "dana's workspace"


def test_typed_names_are_shown_as_typed(alice):
    team = create_workspace(alice, "bob's workspace")  # a team, named by a person
    with translation.override("zh-hans"):
        assert team.display_name == "bob's workspace"
        assert create_workspace(alice, "Acme").display_name == "Acme"


def test_pages_show_the_personal_name_in_chinese(alice):
    acme = create_workspace(alice, "Acme")
    client = client_for(alice)
    for url in ("/workspaces/", "/wallet/", "/billing/", "/team/"):
        body = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
        assert "alice 的工作区" in body, url  # the header's switcher and the page
        assert "alice's workspace" not in body, url
        assert "Acme" in body, url  # the team in the switcher, as typed
    english = client.get("/workspaces/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "alice&#x27;s workspace" in english
    assert acme.name == "Acme"
