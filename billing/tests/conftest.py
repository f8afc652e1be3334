"""Billing fixtures: staff user, plans, a rate card and the default schedule."""

from __future__ import annotations

from datetime import time
from decimal import Decimal

import pytest

from conftest import make_user


@pytest.fixture
def staff(db):
    user = make_user("ops@example.com")
    user.is_staff = True
    user.is_superuser = True
    user.save(update_fields=["is_staff", "is_superuser"])
    return user


@pytest.fixture
def plans(db):
    from billing.demo import seed_plans

    return seed_plans()


@pytest.fixture
def video_model(db):
    from generation.models import VideoModel

    return VideoModel.objects.create(
        slug="wan2.1-t2v-1.3b",
        name="Wan 2.1 T2V 1.3B",
        family="Wan 2.1",
        resolutions=["480p", "720p"],
        durations=[3, 5, 10],
        draft_resolution="480p",
    )


@pytest.fixture
def rate_card(video_model):
    from billing.models import RateCard

    return RateCard.objects.create(
        video_model=video_model, rates={"480p": 2, "720p": 5}, draft_rate=1
    )


@pytest.fixture
def schedule(db):
    from billing.models import PricingSchedule
    from billing.pricing import WindowSpec, set_schedule

    every_day = (0, 1, 2, 3, 4, 5, 6)
    return set_schedule(
        PricingSchedule(name="Default", time_zone="Asia/Shanghai", is_active=True),
        [
            WindowSpec(every_day, time(9), time(23), "peak", Decimal("1")),
            WindowSpec(every_day, time(23), time(9), "off_peak", Decimal("0.5")),
        ],
    )


@pytest.fixture(params=["set-based", "portable"])
def ledger_path(request, monkeypatch):
    """Run a ledger test on both implementations of hold and settle: PostgreSQL's
    single data-modifying statement and the portable statements SQLite runs."""
    from billing import ledger

    monkeypatch.setattr(ledger, "USE_SET_BASED_SQL", request.param == "set-based")
    return request.param
