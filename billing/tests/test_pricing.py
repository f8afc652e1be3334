from __future__ import annotations

from datetime import datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError

from billing.models import PricingSchedule, PricingWindow
from billing.plans import start_subscription
from billing.pricing import (
    Mode,
    Quote,
    QuoteError,
    WindowSpec,
    active_schedule,
    billable_seconds,
    current_window,
    is_off_peak,
    next_off_peak_start,
    quote,
    quote_for,
    set_schedule,
    validate_windows,
)

SH = ZoneInfo("Asia/Shanghai")
EVERY_DAY = (0, 1, 2, 3, 4, 5, 6)
PEAK_AT = datetime(2026, 3, 4, 12, 0, tzinfo=SH)  # a Wednesday noon
OFF_PEAK_AT = datetime(2026, 3, 4, 23, 30, tzinfo=SH)


def q(plans, video_model, rate_card, schedule, *, plan="standard", mode="standard", **kw):
    args = dict(resolution="720p", seconds=5, at=PEAK_AT)
    args.update(kw)
    return quote(
        video_model=video_model,
        mode=mode,
        plan=plans[plan],
        rate_card=rate_card,
        schedule=active_schedule(),
        **args,
    )


@pytest.mark.parametrize(
    "measured,billed",
    [(0, 0), (0.3, 1), (5.0, 5), (5.0009, 5), (5.002, 6), (4.96, 5), (-1, 0)],
)
def test_billable_seconds_count_every_started_second(measured, billed):
    assert billable_seconds(measured) == billed


def test_standard_quote_at_peak_is_the_full_rate(plans, video_model, rate_card, schedule):
    quoted = q(plans, video_model, rate_card, schedule)
    assert (quoted.base_rate, quoted.seconds, quoted.multiplier, quoted.total) == (
        5,
        5,
        Decimal(1),
        25,
    )
    assert quoted.window == "peak"
    assert quoted.next_off_peak_at == datetime(2026, 3, 4, 23, 0, tzinfo=SH)


def test_standard_quote_off_peak_is_half_price_rounded_up(plans, video_model, rate_card, schedule):
    quoted = q(plans, video_model, rate_card, schedule, at=OFF_PEAK_AT)
    assert (quoted.window, quoted.multiplier, quoted.total) == ("off_peak", Decimal("0.5"), 13)


def test_off_peak_mode_is_priced_at_off_peak_terms_even_during_peak(
    plans, video_model, rate_card, schedule
):
    quoted = q(plans, video_model, rate_card, schedule, mode=Mode.OFF_PEAK)
    assert (quoted.window, quoted.multiplier, quoted.total, quoted.plan_effect) == (
        "peak",
        Decimal("0.5"),
        13,
        "",
    )


def test_off_peak_mode_is_free_on_plans_that_include_it(plans, video_model, rate_card, schedule):
    quoted = q(plans, video_model, rate_card, schedule, plan="pro", mode=Mode.OFF_PEAK)
    assert (quoted.total, quoted.plan_effect) == (0, "off_peak_free")
    assert quoted.charge_for(5.0) == 0


def test_off_peak_mode_is_refused_on_plans_without_it(plans, video_model, rate_card, schedule):
    with pytest.raises(QuoteError, match="not included in the Free plan"):
        q(
            plans,
            video_model,
            rate_card,
            schedule,
            plan="free",
            mode=Mode.OFF_PEAK,
            resolution="480p",
        )


def test_draft_uses_the_draft_rate_at_the_draft_resolution(plans, video_model, rate_card, schedule):
    quoted = q(plans, video_model, rate_card, schedule, mode=Mode.DRAFT)
    assert (quoted.resolution, quoted.base_rate, quoted.total) == ("480p", 1, 5)


def test_plan_limits_refuse_with_a_clear_error(plans, video_model, rate_card, schedule):
    with pytest.raises(QuoteError, match="up to 480p"):
        q(plans, video_model, rate_card, schedule, plan="free")
    with pytest.raises(QuoteError, match="up to 10 seconds"):
        q(plans, video_model, rate_card, schedule, seconds=11)


def test_charge_for_never_exceeds_the_quote(plans, video_model, rate_card, schedule):
    quoted = q(plans, video_model, rate_card, schedule, at=OFF_PEAK_AT)
    assert quoted.charge_for(3.2) == 10  # 4 s × 5 × 0.5
    assert quoted.charge_for(9.0) == quoted.total == 13
    assert Quote.from_dict(quoted.as_dict()) == quoted


def test_quote_for_loads_the_workspace_plan(acme, plans, video_model, rate_card, schedule):
    start_subscription(acme, plans["pro"])
    quoted = quote_for(
        acme,
        video_model=video_model,
        resolution="720p",
        seconds=5,
        mode="off_peak",
        at=PEAK_AT,
    )
    assert quoted.plan_effect == "off_peak_free"


def test_window_helpers_follow_the_active_schedule(schedule):
    assert is_off_peak(OFF_PEAK_AT)
    assert not is_off_peak(PEAK_AT)
    assert next_off_peak_start(OFF_PEAK_AT) == OFF_PEAK_AT
    assert current_window(schedule, datetime(2026, 3, 5, 8, 59, tzinfo=SH)) == (
        "off_peak",
        Decimal("0.5"),
    )


def test_overlapping_windows_are_refused_and_change_nothing(schedule):
    windows = list(PricingWindow.objects.filter(schedule=schedule).values_list("pk", flat=True))
    with pytest.raises(ValidationError, match="overlap on Monday 22:00–23:00"):
        set_schedule(
            schedule,
            [
                WindowSpec(EVERY_DAY, time(9), time(23), "peak", Decimal(1)),
                WindowSpec(EVERY_DAY, time(22), time(9), "off_peak", Decimal("0.5")),
            ],
        )
    assert list(schedule.windows.values_list("pk", flat=True)) == windows


def test_gaps_in_the_week_are_refused():
    with pytest.raises(ValidationError, match="No pricing window covers Monday 23:00–00:00"):
        validate_windows([WindowSpec(EVERY_DAY, time(0), time(23), "peak", Decimal(1))])
    with pytest.raises(ValidationError, match="Sunday"):
        validate_windows([WindowSpec((0, 1, 2, 3, 4, 5), time(0), time(0), "peak", Decimal(1))])


def test_holiday_override_prices_the_whole_date(db, schedule):
    from billing.models import HolidayOverride

    HolidayOverride.objects.create(
        schedule=schedule,
        date=PEAK_AT.date(),
        name="Spring Festival",
        kind="off_peak",
        multiplier=Decimal("0.25"),
    )
    assert current_window(active_schedule(), PEAK_AT) == ("off_peak", Decimal("0.25"))
    assert PricingSchedule.objects.get().is_active
