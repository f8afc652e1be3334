import re

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client

from accounts.models import Membership, Role

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-staple-42"


def _signup(client: Client, email: str):
    return client.post(
        "/accounts/signup/",
        {"email": email, "password1": PASSWORD, "password2": PASSWORD},
    )


def _link(message) -> str:
    return re.search(r"https?://\S+", message.body).group(0)


def test_signup_gives_a_personal_workspace_and_asks_to_verify_email():
    client = Client()
    response = _signup(client, "dana@example.com")
    assert response.status_code == 302
    user = get_user_model().objects.get(email="dana@example.com")
    membership = Membership.objects.get(user=user)
    assert membership.workspace.is_personal and membership.role == Role.OWNER
    assert EmailAddress.objects.get(user=user).verified is False
    assert len(mail.outbox) == 1 and "dana@example.com" in mail.outbox[0].to


def test_email_verification_link_verifies_and_signs_in():
    client = Client()
    _signup(client, "erin@example.com")
    confirm = _link(mail.outbox[0]).split("testserver", 1)[-1]
    assert client.get(confirm).status_code == 200
    response = client.post(confirm)
    assert response.status_code == 302
    assert EmailAddress.objects.get(email="erin@example.com").verified is True
    assert client.get("/team/").status_code == 200


def test_unverified_user_cannot_sign_in():
    Client().post(
        "/accounts/signup/",
        {"email": "fay@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    client = Client()
    client.post("/accounts/login/", {"login": "fay@example.com", "password": PASSWORD})
    assert client.get("/team/").status_code == 302  # still sent to sign in


def test_sign_in_and_sign_out(alice):
    client = Client()
    response = client.post(
        "/accounts/login/", {"login": "alice@example.com", "password": "a-long-test-password"}
    )
    assert response.status_code == 302
    assert client.get("/team/").status_code == 200
    client.post("/accounts/logout/")
    assert client.get("/team/").status_code == 302


def test_password_reset_sends_a_working_link(alice):
    client = Client()
    client.post("/accounts/password/reset/", {"email": "alice@example.com"})
    assert len(mail.outbox) == 1
    link = _link(mail.outbox[0]).split("testserver", 1)[-1]
    form_url = client.get(link, follow=True).redirect_chain[-1][0]
    response = client.post(
        form_url, {"password1": "a-brand-new-password-99", "password2": "a-brand-new-password-99"}
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("a-brand-new-password-99")


def test_wrong_password_is_refused_and_changes_nothing(alice):
    client = Client()
    response = client.post("/accounts/login/", {"login": "alice@example.com", "password": "nope"})
    assert response.status_code == 200
    assert client.get("/team/").status_code == 302
