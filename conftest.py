"""Suite-wide set-up: real PostgreSQL and Redis or a clear failure, and the three users.

alice owns the team workspace "Acme", bob is a member of it, charlie is an outsider with
only his personal workspace. Every tenant-facing test keeps charlie around.
"""

from __future__ import annotations

import calendar
import os
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.conf import settings

# Live-platform fixtures (live server, Celery workers, reference nodes) for any test folder.
pytest_plugins = ["workers.tests.live"]


# Fixtures that start processes outside pytest (Celery workers, Cog nodes, the platform):
# a test using one is marked `live`, because --clock can't move those processes' clocks.
LIVE_FIXTURES = {"workers", "node_pair", "catalog", "cog_node", "idle_node"}


def far_clock(now: datetime | None = None) -> datetime:
    """A moment far from today and awkward for calendars: 23:58:30 in Shanghai on the last
    day of the month about 13 months ahead, so a run that lasts a few minutes crosses a
    day, a billing day in Asia/Shanghai and a month end while it runs."""
    shanghai = ZoneInfo("Asia/Shanghai")
    ahead = (now or datetime.now(shanghai)).astimezone(shanghai) + timedelta(days=400)
    last_day = calendar.monthrange(ahead.year, ahead.month)[1]
    return ahead.replace(day=last_day, hour=23, minute=58, second=30, microsecond=0)


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--clock",
        default=os.environ.get("RETAKE_TEST_CLOCK", ""),
        help="run with the clock moved (time_machine, ticking) to an ISO datetime, or 'far' "
        "for 23:58:30 Asia/Shanghai on a month's last day ~13 months ahead; env "
        "RETAKE_TEST_CLOCK. Tests marked `live` keep the real clock in their processes.",
    )


def pytest_configure(config) -> None:
    value = config.getoption("--clock")
    if not value:
        return
    moment = far_clock() if value == "far" else datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise pytest.UsageError(f"--clock needs a time zone offset, got {value!r}")
    config.clock_moved_to = moment
    time_machine.travel(moment, tick=True).start()


def pytest_report_header(config) -> str | None:
    moment = getattr(config, "clock_moved_to", None)
    return f"clock moved to {moment.isoformat()} (ticking)" if moment else None


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if LIVE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.live)


def _fail(service: str, url: str, exc: Exception) -> None:
    pytest.exit(
        f"{service} is not answering at {url}: {exc}. Start it (see README, 'Tests') "
        f"or point {'DATABASE_URL' if service == 'PostgreSQL' else 'REDIS_URL'} at one.",
        returncode=3,
    )


# Outside DEBUG the embedded secrets are refused at start-up (config/startup.py): the
# suite and the workers and nodes it starts share these test values instead.
TEST_SECRETS = {
    "SECRET_KEY": "test-suite-secret-key-not-for-production-0123456789abcdef",
    "REFERENCE_NODE_TOKEN": "test-suite-node-token",
}


def pytest_sessionstart(session) -> None:
    for name, value in TEST_SECRETS.items():
        if os.environ.get(name) in (None, ""):
            os.environ[name] = value
            setattr(settings, name, value)
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
def _frozen_at(request):
    """`@pytest.mark.frozen_at("2026-03-04T23:30:00+08:00")` freezes the clock before any
    other function-scoped fixture runs, so users, workspaces, plans and grants made by
    fixtures exist at that moment too: a test that needs a date builds all of its state in
    the same clock (nested `time_machine.travel` moves it on from there)."""
    marker = request.node.get_closest_marker("frozen_at")
    if marker is None:
        yield None
        return
    moment = datetime.fromisoformat(marker.args[0])
    if moment.tzinfo is None:
        raise pytest.UsageError(f"frozen_at needs a time zone offset: {marker.args[0]!r}")
    with time_machine.travel(moment, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    # Rate-limit counters live in the shared Redis cache: each test starts with none.
    from django.core.cache import cache

    cache.delete_pattern("*")
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
    # A request in another language leaves it active in this thread (LocaleMiddleware
    # activates it and nothing switches back): every test starts in the default language.
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)


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
