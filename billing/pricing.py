"""Rate card, pricing schedule and quotes: what a take costs, decided in one place.

`quote()` is pure: given a model, resolution, seconds, mode, plan, rate card, schedule
snapshot and a time, it returns the breakdown the studio shows, the hold reserves and the
take stores (`Quote.as_dict()`) to lock its price (money rule 6).

Prices:
- standard: rate(resolution) × seconds × the multiplier of the window in force at `at`;
- off-peak: priced at the terms of the off-peak window the take will wait for (the one in
  force now, or the next to open), free on plans with off-peak free, refused on plans
  without off-peak;
- draft: the rate card's draft rate at the model's draft resolution, at the current window.
Totals are rounded up to a whole credit.

Billable seconds (the rounding): every started second of measured output counts. A
measured duration is first forgiven `BILLABLE_TOLERANCE` (1 ms) of container timing noise,
then rounded up: 5.0 s and 5.0009 s bill 5, 5.002 s bills 6, 0.3 s bills 1, 0 bills 0. The
charge never exceeds the quoted seconds or the quoted total.

Schedule: weekly windows, each on some weekdays with a local start and end (end ≤ start
runs past midnight), must cover the week exactly once; holiday overrides price a whole
local date as one window.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_CEILING, Decimal
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .models import (
    RESOLUTION_ORDER,
    HolidayOverride,
    PricingSchedule,
    PricingWindow,
    RateCard,
    WindowKind,
)
from .plans import plan_for

MINUTES_PER_DAY = 24 * 60
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
BILLABLE_TOLERANCE = 0.001  # seconds of container timing noise forgiven before rounding up
NEXT_OFF_PEAK_HORIZON = timedelta(days=14)
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


class Mode(models.TextChoices):
    STANDARD = "standard", gettext_lazy("Standard")
    OFF_PEAK = "off_peak", gettext_lazy("Off-peak")
    DRAFT = "draft", gettext_lazy("Draft")


class QuoteError(Exception):
    """A price cannot be given; the message says why, for a person."""


def billable_seconds(measured_seconds: float) -> int:
    """Every started second of measured output (see the module docstring)."""
    if measured_seconds is None or measured_seconds <= 0:
        return 0
    return max(0, math.ceil(measured_seconds - BILLABLE_TOLERANCE))


def _ceil_credits(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True)
class Quote:
    model_slug: str
    resolution: str
    mode: str
    seconds: int
    base_rate: int
    multiplier: Decimal
    window: str
    plan_effect: str
    total: int
    next_off_peak_at: datetime | None

    def as_dict(self) -> dict:
        data = asdict(self)
        data["multiplier"] = str(self.multiplier)
        data["next_off_peak_at"] = (
            self.next_off_peak_at.isoformat() if self.next_off_peak_at else None
        )
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Quote:
        nxt = data.get("next_off_peak_at")
        return cls(
            model_slug=data["model_slug"],
            resolution=data["resolution"],
            mode=data["mode"],
            seconds=int(data["seconds"]),
            base_rate=int(data["base_rate"]),
            multiplier=Decimal(str(data["multiplier"])),
            window=data["window"],
            plan_effect=data.get("plan_effect", ""),
            total=int(data["total"]),
            next_off_peak_at=datetime.fromisoformat(nxt) if nxt else None,
        )

    def charge_for(self, measured_seconds: float) -> int:
        """The charge for the delivered output at the locked price, never above `total`."""
        if self.total == 0:
            return 0
        seconds = min(billable_seconds(measured_seconds), self.seconds)
        return min(self.total, _ceil_credits(Decimal(self.base_rate) * seconds * self.multiplier))


# --- the schedule, as a pure snapshot ----------------------------------------------------


@dataclass(frozen=True)
class WindowSpec:
    days: tuple[int, ...]
    start: time
    end: time
    kind: str
    multiplier: Decimal

    def minutes(self) -> list[int]:
        """The minutes of the week (0 = Monday 00:00) this window covers."""
        start = self.start.hour * 60 + self.start.minute
        end = self.end.hour * 60 + self.end.minute
        length = (end - start) % MINUTES_PER_DAY or MINUTES_PER_DAY
        covered = []
        for day in self.days:
            first = day * MINUTES_PER_DAY + start
            covered.extend((first + i) % MINUTES_PER_WEEK for i in range(length))
        return covered


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule's windows and holidays, loaded once; everything below is pure."""

    time_zone: str
    windows: tuple[WindowSpec, ...]
    holidays: dict[date, tuple[str, Decimal]] = field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def minute_map(self) -> list[tuple[str, Decimal]]:
        cached = self.__dict__.get("_minute_map")
        if cached is None:
            validate_windows(self.windows)
            cached = [("peak", Decimal(1))] * MINUTES_PER_WEEK
            for window in self.windows:
                for minute in window.minutes():
                    cached[minute] = (window.kind, window.multiplier)
            object.__setattr__(self, "_minute_map", cached)
        return cached

    def window_at(self, at: datetime) -> tuple[str, Decimal]:
        local = at.astimezone(self.tz)
        holiday = self.holidays.get(local.date())
        if holiday is not None:
            return holiday
        return self.minute_map()[local.weekday() * MINUTES_PER_DAY + local.hour * 60 + local.minute]

    def has_off_peak(self) -> bool:
        return any(w.kind == WindowKind.OFF_PEAK for w in self.windows) or any(
            kind == WindowKind.OFF_PEAK for kind, _m in self.holidays.values()
        )


def _fmt_minute(minute: int) -> str:
    day, rest = divmod(minute % MINUTES_PER_WEEK, MINUTES_PER_DAY)
    return f"{WEEKDAYS[day]} {rest // 60:02d}:{rest % 60:02d}"


def _first_run(minutes: list[int]) -> str:
    start = minutes[0]
    end = start
    for m in minutes[1:]:
        if m != end + 1:
            break
        end = m
    return f"{_fmt_minute(start)}–{_fmt_minute(end + 1)[-5:]}"


def validate_windows(windows) -> None:
    """Refuse windows that overlap or leave a gap in the week, naming where."""
    counts = [0] * MINUTES_PER_WEEK
    for window in windows:
        if not window.days:
            raise ValidationError(_("Every window needs at least one weekday."))
        if any(d not in range(7) for d in window.days):
            raise ValidationError(_("Weekdays are numbers from 0 (Monday) to 6 (Sunday)."))
        if window.kind not in WindowKind.values:
            raise ValidationError(_("A window is either peak or off-peak."))
        if window.multiplier is None or Decimal(window.multiplier) < 0:
            raise ValidationError(_("Multipliers are zero or more."))
        for minute in window.minutes():
            counts[minute] += 1
    overlaps = [m for m, c in enumerate(counts) if c > 1]
    if overlaps:
        raise ValidationError(
            _("Pricing windows overlap on %(when)s.") % {"when": _first_run(overlaps)}
        )
    gaps = [m for m, c in enumerate(counts) if c == 0]
    if gaps:
        raise ValidationError(
            _("No pricing window covers %(when)s; every minute of the week needs one.")
            % {"when": _first_run(gaps)}
        )


def schedule_spec(schedule: PricingSchedule | ScheduleSpec | None) -> ScheduleSpec | None:
    """A pure snapshot of a schedule (uses prefetched windows and holidays when present)."""
    if schedule is None or isinstance(schedule, ScheduleSpec):
        return schedule
    return ScheduleSpec(
        time_zone=schedule.time_zone,
        windows=tuple(
            WindowSpec(tuple(w.days), w.start, w.end, w.kind, Decimal(w.multiplier))
            for w in schedule.windows.all()
        ),
        holidays={h.date: (h.kind, Decimal(h.multiplier)) for h in schedule.holidays.all()},
    )


def active_schedule() -> ScheduleSpec | None:
    """The active schedule, read from the database on every call (edits apply at once)."""
    schedule = (
        PricingSchedule.objects.filter(is_active=True)
        .prefetch_related("windows", "holidays")
        .first()
    )
    return schedule_spec(schedule)


def current_window(schedule, at: datetime) -> tuple[str, Decimal]:
    """("peak" | "off_peak", multiplier) in force at `at`; no schedule means peak ×1."""
    spec = schedule_spec(schedule)
    if spec is None or not spec.windows:
        return (WindowKind.PEAK.value, Decimal(1))
    kind, multiplier = spec.window_at(at)
    return (str(kind), multiplier)


def _next_off_peak(spec: ScheduleSpec | None, at: datetime) -> datetime | None:
    """`at` if off-peak now, else when the next off-peak window opens (None if none soon)."""
    if spec is None or not spec.windows or not spec.has_off_peak():
        return None
    if spec.window_at(at)[0] == WindowKind.OFF_PEAK:
        return at
    probe = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    horizon = at + NEXT_OFF_PEAK_HORIZON
    while probe <= horizon:
        if spec.window_at(probe)[0] == WindowKind.OFF_PEAK:
            return probe
        probe += timedelta(minutes=1)
    return None


def is_off_peak(at: datetime | None = None) -> bool:
    """Whether the active schedule is in an off-peak window at `at` (default now)."""
    return current_window(active_schedule(), at or timezone.now())[0] == WindowKind.OFF_PEAK


def next_off_peak_start(at: datetime | None = None) -> datetime | None:
    """With the active schedule: `at` when off-peak now, else the next window's opening."""
    return _next_off_peak(active_schedule(), at or timezone.now())


def off_peak_span(at: datetime | None = None) -> tuple[datetime, datetime] | None:
    """The next (or current) off-peak stretch as (opens, closes) in the schedule's zone.

    How a quote and a waiting take name the window they are priced on and wait for.
    """
    schedule = active_schedule()
    spec = schedule_spec(schedule)
    opens = _next_off_peak(spec, at or timezone.now())
    if opens is None:
        return None
    probe = opens.replace(second=0, microsecond=0) + timedelta(minutes=1)
    horizon = opens + timedelta(days=7)
    while probe < horizon and spec.window_at(probe)[0] == WindowKind.OFF_PEAK:
        probe += timedelta(minutes=1)
    return opens.astimezone(spec.tz), probe.astimezone(spec.tz)


# --- quotes ------------------------------------------------------------------------------


def _rank(resolution: str) -> int:
    return RESOLUTION_ORDER.index(resolution) if resolution in RESOLUTION_ORDER else -1


def quote(
    *,
    video_model,
    resolution: str,
    seconds: int,
    mode: str,
    plan,
    rate_card,
    schedule,
    at: datetime,
) -> Quote:
    """The price of one take, as a breakdown. Pure: pass a `ScheduleSpec` (or a schedule
    with prefetched windows and holidays) and a rate card already loaded."""
    if mode not in Mode.values:
        raise QuoteError(_("Unknown mode %(mode)r.") % {"mode": mode})
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
        raise QuoteError(_("The duration must be a whole number of seconds above zero."))
    if timezone.is_naive(at):
        raise QuoteError(_("The quote time needs a time zone."))
    if video_model.resolutions and resolution not in video_model.resolutions:
        raise QuoteError(
            _("%(model)s does not render %(res)s.") % {"model": video_model.name, "res": resolution}
        )
    if rate_card is None or not rate_card.is_active:
        raise QuoteError(_("%(model)s has no price yet.") % {"model": video_model.name})
    if seconds > plan.max_duration:
        raise QuoteError(
            _("The %(plan)s plan allows takes up to %(max)d seconds.")
            % {"plan": plan.display_name, "max": plan.max_duration}
        )

    if mode == Mode.DRAFT:
        priced_resolution = video_model.draft_resolution
        base_rate = rate_card.draft_rate
    else:
        priced_resolution = resolution
        base_rate = (rate_card.rates or {}).get(resolution)
        if base_rate is None:
            raise QuoteError(
                _("%(model)s has no price at %(res)s.")
                % {"model": video_model.name, "res": resolution}
            )
    if _rank(priced_resolution) > _rank(plan.max_resolution):
        raise QuoteError(
            _("The %(plan)s plan renders up to %(max)s.")
            % {"plan": plan.display_name, "max": plan.max_resolution}
        )

    spec = schedule_spec(schedule)
    window, multiplier = current_window(spec, at)
    next_off_peak_at = _next_off_peak(spec, at)
    plan_effect = ""
    if mode == Mode.OFF_PEAK:
        if not plan.off_peak_allowed:
            raise QuoteError(
                _("Off-peak mode is not included in the %(plan)s plan.")
                % {"plan": plan.display_name}
            )
        if next_off_peak_at is None:
            raise QuoteError(_("No off-peak window opens in the next two weeks."))
        multiplier = current_window(spec, next_off_peak_at)[1]
        if plan.off_peak_free:
            plan_effect = "off_peak_free"

    total = 0 if plan_effect else _ceil_credits(Decimal(base_rate) * seconds * multiplier)
    return Quote(
        model_slug=video_model.slug,
        resolution=priced_resolution,
        mode=str(mode),
        seconds=seconds,
        base_rate=int(base_rate),
        multiplier=Decimal(multiplier),
        window=window,
        plan_effect=plan_effect,
        total=total,
        next_off_peak_at=next_off_peak_at,
    )


def quote_for(
    workspace,
    *,
    video_model,
    resolution: str,
    seconds: int,
    mode: str,
    at: datetime | None = None,
    plan=None,
) -> Quote:
    """Load the workspace's plan (unless the caller already has it), the model's rate card
    and the active schedule; quote."""
    rate_card = RateCard.objects.filter(video_model=video_model).first()
    return quote(
        video_model=video_model,
        resolution=resolution,
        seconds=seconds,
        mode=mode,
        plan=plan if plan is not None else plan_for(workspace),
        rate_card=rate_card,
        schedule=active_schedule(),
        at=at or timezone.now(),
    )


# --- writing schedules -------------------------------------------------------------------


@transaction.atomic
def set_schedule(
    schedule: PricingSchedule,
    windows: list[WindowSpec],
    *,
    holidays: list[tuple[date, str, str, Decimal]] | None = None,
) -> PricingSchedule:
    """Replace a schedule's windows (and holidays, if given) after validating them.

    `holidays` items are (date, name, kind, multiplier). Raises ValidationError, changing
    nothing, when the windows overlap or leave a gap.
    """
    validate_windows(windows)
    if holidays is not None:
        for _day, _name, kind, multiplier in holidays:
            if kind not in WindowKind.values or Decimal(multiplier) < 0:
                raise ValidationError(_("A holiday is peak or off-peak, with a multiplier ≥ 0."))
    schedule.full_clean()
    schedule.save()
    schedule.windows.all().delete()
    PricingWindow.objects.bulk_create(
        PricingWindow(
            schedule=schedule,
            days=list(w.days),
            start=w.start,
            end=w.end,
            kind=w.kind,
            multiplier=w.multiplier,
        )
        for w in windows
    )
    if holidays is not None:
        schedule.holidays.all().delete()
        HolidayOverride.objects.bulk_create(
            HolidayOverride(schedule=schedule, date=d, name=n, kind=k, multiplier=m)
            for d, n, k, m in holidays
        )
    return schedule


def week_grid(spec: ScheduleSpec) -> list[dict]:
    """7 rows × 24 hourly cells (kind, multiplier at the hour's start; `mixed` when the
    window changes inside the hour), for the admin's picture of the week."""
    minute_map = spec.minute_map()
    rows = []
    for day in range(7):
        cells = []
        for hour in range(24):
            first = day * MINUTES_PER_DAY + hour * 60
            kind, multiplier = minute_map[first]
            mixed = any(minute_map[first + i] != (kind, multiplier) for i in range(60))
            cells.append({"hour": hour, "kind": kind, "multiplier": multiplier, "mixed": mixed})
        rows.append({"day": WEEKDAYS[day], "cells": cells})
    return rows
