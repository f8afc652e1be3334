"""Billing beat tasks: thin wrappers that call the named actions (routed to `billing`)."""

from __future__ import annotations

from celery import shared_task

from . import ledger, plans


@shared_task(name="billing.tasks.expire_lots")
def expire_lots() -> int:
    """Expire the unpinned remainder of lots past their expiry."""
    return ledger.expire_lots()


@shared_task(name="billing.tasks.grant_daily_free_credits")
def grant_daily_free_credits() -> int:
    """Today's free credits for every workspace whose plan includes them (once a day)."""
    return plans.grant_daily_free_credits()


@shared_task(name="billing.tasks.grant_plan_period_credits")
def grant_plan_period_credits() -> int:
    """Make sure every live subscription holds its current period's credits."""
    return plans.grant_plan_period_credits()


@shared_task(name="billing.tasks.roll_over_subscriptions")
def roll_over_subscriptions() -> int:
    """Advance (or end) admin-sourced subscriptions whose period is over."""
    return plans.roll_over_subscriptions()
