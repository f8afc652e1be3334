"""Suite-wide set-up: real PostgreSQL and Redis or a clear failure, and the three users.

alice owns the team workspace "Acme", bob is a member of it, charlie is an outsider with
only his personal workspace. Every tenant-facing test keeps charlie around.
"""

from __future__ import annotations

import pytest
from django.conf import settings

# Live-platform fixtures (live server, Celery workers, reference nodes) for any test folder.
pytest_plugins = ["workers.tests.live"]


def _fail(service: str, url: str, exc: Exception) -> None:
    pytest.exit(
        f"{service} is not answering at {url}: {exc}. Start it (see README, 'Tests') "
        f"or point {'DATABASE_URL' if service == 'PostgreSQL' else 'REDIS_URL'} at one.",
        returncode=3,
    )


def pytest_sessionstart(session) -> None:
    settings.STATIC_ROOT.mkdir(parents=True, exist_ok=True)
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.exit(
            "The suite runs on PostgreSQL: set DATABASE_URL=postgres://… (make test does).",
            returncode=3,
        )
    import psycopg

    url = settings.DATABASE_URL
    try:
        psycopg.connect(
            host=db["HOST"] or "127.0.0.1",
            port=db["PORT"] or 5432,
            user=db["USER"],
            password=db["PASSWORD"],
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except Exception as exc:  # noqa: BLE001
        _fail("PostgreSQL", url, exc)
    if not settings.REDIS_URL:
        pytest.exit("The suite needs Redis: set REDIS_URL=redis://… (make test does).", 3)
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        _fail("Redis", settings.REDIS_URL, exc)


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    # Media in a per-test folder; a fast password hasher (PBKDF2 dominates otherwise).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media"), "base_url": "/media/"},
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def make_user(email: str, password: str = "a-long-test-password"):
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username=email, email=email, password=password)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user


@pytest.fixture
def alice(db):
    return make_user("alice@example.com")


@pytest.fixture
def acme(alice):
    from accounts.actions import create_workspace

    return create_workspace(alice, "Acme")


@pytest.fixture
def bob(acme):
    from accounts.models import Membership, Role

    user = make_user("bob@example.com")
    Membership.objects.create(workspace=acme, user=user, role=Role.MEMBER)
    return user


@pytest.fixture
def charlie(db):
    return make_user("charlie@example.com")


def client_for(user, workspace=None):
    from django.test import Client

    from accounts.middleware import SESSION_KEY

    client = Client()
    client.force_login(user)
    if workspace is not None:
        session = client.session
        session[SESSION_KEY] = workspace.pk
        session.save()
    return client
