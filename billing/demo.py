"""Demo billing data priced like the anchors (Kling/Jimeng ~66 CNY a month). Idempotent."""

from __future__ import annotations

from datetime import time
from decimal import Decimal

from django.db import transaction

from accounts.models import Workspace
from generation.models import VideoModel

from .plans import BUILTIN_FREE_PLAN

PLANS = [
    # The built-in fallback's entitlements, plus 20 daily free credits.
    {**BUILTIN_FREE_PLAN, "sort_order": 0, "daily_free_credits": 20},
    dict(
        slug="standard",
        name="Standard",
        sort_order=10,
        monthly_credits=660,
        daily_free_credits=0,
        max_concurrent_takes=2,
        queue_priority=10,
        max_resolution="720p",
        max_duration=10,
        max_takes_per_batch=4,
        watermark=False,
        off_peak_allowed=True,
        off_peak_free=False,
        api_access=False,
        team_seats=1,
        retention_days=90,
        prices={"CNY": 6600, "USD": 999},
    ),
    dict(
        slug="pro",
        name="Pro",
        sort_order=20,
        monthly_credits=3000,
        daily_free_credits=0,
        max_concurrent_takes=4,
        queue_priority=20,
        max_resolution="1080p",
        max_duration=10,
        max_takes_per_batch=8,
        watermark=False,
        off_peak_allowed=True,
        off_peak_free=True,
        api_access=True,
        team_seats=3,
        retention_days=180,
        prices={"CNY": 19800, "USD": 2999},
    ),
    dict(
        slug="studio",
        name="Studio",
        sort_order=30,
        monthly_credits=10000,
        daily_free_credits=0,
        max_concurrent_takes=10,
        queue_priority=30,
        max_resolution="1080p",
        max_duration=10,
        max_takes_per_batch=16,
        watermark=False,
        off_peak_allowed=True,
        off_peak_free=True,
        api_access=True,
        team_seats=10,
        retention_days=365,
        prices={"CNY": 64800, "USD": 8999},
    ),
]

PACKAGES = [
    dict(
        slug="credits-100",
        name="100 credits",
        credits=100,
        validity_days=365,
        sort_order=0,
        prices={"CNY": 1000, "USD": 149},
    ),
    dict(
        slug="credits-500",
        name="500 credits",
        credits=500,
        validity_days=365,
        sort_order=1,
        prices={"CNY": 4500, "USD": 649},
    ),
    dict(
        slug="credits-2000",
        name="2000 credits",
        credits=2000,
        validity_days=730,
        sort_order=2,
        prices={"CNY": 16000, "USD": 2399},
    ),
]

# slug -> (name, family, rates by resolution, draft rate)
RATES = {
    "wan2.1-t2v-1.3b": ("Wan 2.1 T2V 1.3B", "Wan 2.1", {"480p": 2, "720p": 4}, 1),
    "wan2.1-i2v-14b": ("Wan 2.1 I2V 14B", "Wan 2.1", {"480p": 6, "720p": 10}, 2),
    "ltx-video-2b": ("LTX-Video 2B", "LTX-Video", {"480p": 1, "720p": 2}, 1),
    "hunyuanvideo-i2v": (
        "HunyuanVideo I2V",
        "HunyuanVideo",
        {"480p": 6, "720p": 8, "1080p": 16},
        2,
    ),
}
DEFAULT_RATES = ({"480p": 2, "720p": 4, "1080p": 8}, 1)


def seed_plans() -> dict:
    from .models import CreditPackage, Plan

    plans = {}
    for data in PLANS:
        fields = dict(data)
        slug = fields.pop("slug")
        plans[slug], _ = Plan.objects.update_or_create(slug=slug, defaults=fields)
    for data in PACKAGES:
        fields = dict(data)
        CreditPackage.objects.update_or_create(slug=fields.pop("slug"), defaults=fields)
    return plans


def seed_rate_cards() -> int:
    from .models import RateCard

    for slug, (name, family, _rates, _draft) in RATES.items():
        VideoModel.objects.get_or_create(
            slug=slug,
            defaults={"name": name, "family": family, "resolutions": list(_rates)},
        )
    count = 0
    for model in VideoModel.objects.all():
        _n, _f, rates, draft = RATES.get(model.slug, ("", "", *DEFAULT_RATES))
        RateCard.objects.update_or_create(
            video_model=model, defaults={"rates": rates, "draft_rate": draft, "is_active": True}
        )
        count += 1
    return count


def seed_schedule():
    from .models import PricingSchedule
    from .pricing import WindowSpec, set_schedule

    schedule = PricingSchedule.objects.filter(is_active=True).first()
    if schedule is not None and schedule.windows.exists():
        return schedule
    every_day = (0, 1, 2, 3, 4, 5, 6)
    return set_schedule(
        schedule or PricingSchedule(name="Default", time_zone="Asia/Shanghai", is_active=True),
        [
            WindowSpec(every_day, time(9), time(23), "peak", Decimal("1")),
            WindowSpec(every_day, time(23), time(9), "off_peak", Decimal("0.5")),
        ],
    )


def seed_demo_workspace(plans: dict) -> None:
    from django.contrib.auth import get_user_model

    from .ledger import grant_credits
    from .models import CreditSource
    from .plans import live_subscription, start_subscription

    user = get_user_model().objects.filter(email="demo@retake.local").first()
    if user is None:
        return
    workspace = Workspace.objects.filter(memberships__user=user, is_personal=True).first()
    if workspace is None:
        return
    if live_subscription(workspace) is None:
        start_subscription(workspace, plans["standard"])
    grant_credits(
        workspace,
        500,
        source=CreditSource.PROMOTION,
        idempotency_key=f"demo:welcome:{workspace.pk}",
        reason="Demo welcome credits",
    )


@transaction.atomic
def seed(stdout) -> None:
    plans = seed_plans()
    cards = seed_rate_cards()
    seed_schedule()
    seed_demo_workspace(plans)
    stdout.write(
        f"billing: {len(plans)} plans, {len(PACKAGES)} packages, {cards} rate cards, "
        "default schedule (Asia/Shanghai), demo workspace on Standard"
    )
