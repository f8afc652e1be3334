"""Billing data as people read it, in their language.

Plan and package names are data (an administrator names them), and ledger reasons are
stored in English (stable for support, search and the CSV export). Pages translate them
when they show them:

- the names the platform ships (the built-in Free plan, the demo plans and packages of
  `billing/demo.py`) are looked up by their stored name and translated with a message
  context ("plan", "credit package"), so the plan "Studio" is not the studio page; a name
  an administrator typed is shown as typed;
- the reasons the platform writes itself (holds for takes, releases, expiry, daily and
  plan credits, purchases, upgrades, refunds and disputes) are recognised by their fixed
  shapes and translated with their values; a reason a person typed (adjustments) is shown
  as typed.
"""

from __future__ import annotations

import re

from django.utils.translation import gettext, pgettext_lazy

from config.stored_text import Shape, translate

PLAN_NAMES = {
    "Free": pgettext_lazy("plan", "Free"),
    "Standard": pgettext_lazy("plan", "Standard"),
    "Pro": pgettext_lazy("plan", "Pro"),
    "Studio": pgettext_lazy("plan", "Studio"),
}
PACKAGE_NAMES = {
    "100 credits": pgettext_lazy("credit package", "100 credits"),
    "500 credits": pgettext_lazy("credit package", "500 credits"),
    "2000 credits": pgettext_lazy("credit package", "2000 credits"),
}


def plan_name(name: str) -> str:
    return str(PLAN_NAMES.get(name, name))


def package_name(name: str) -> str:
    return str(PACKAGE_NAMES.get(name, name))


# The stored reasons the platform writes (`config.stored_text.Shape`).
_REASONS: list[Shape] = [
    (
        re.compile(r"take (?P<take>[0-9a-f-]{36})"),
        {},
        lambda: gettext("take %(take)s"),
    ),
    (re.compile(r"take failed"), {}, lambda: gettext("take failed")),
    (re.compile(r"take canceled"), {}, lambda: gettext("take canceled")),
    (re.compile(r"take expired"), {}, lambda: gettext("take expired")),
    (re.compile(r"credits expired"), {}, lambda: gettext("credits expired")),
    (re.compile(r"Demo welcome credits"), {}, lambda: gettext("Demo welcome credits")),
    (
        re.compile(r"Daily free credits for (?P<date>\d{4}-\d{2}-\d{2})"),
        {},
        lambda: gettext("Daily free credits for %(date)s"),
    ),
    (
        re.compile(r"(?P<plan>.+) credits for the period from (?P<date>\d{4}-\d{2}-\d{2})"),
        {"plan": plan_name},
        lambda: gettext("%(plan)s credits for the period from %(date)s"),
    ),
    (
        re.compile(r"(?P<package>.+) bought with Stripe checkout (?P<session>\S+)"),
        {"package": package_name},
        lambda: gettext("%(package)s bought with Stripe checkout %(session)s"),
    ),
    (
        re.compile(r"Upgrade from (?P<old>.+) to (?P<new>.+)"),
        {"old": plan_name, "new": plan_name},
        lambda: gettext("Upgrade from %(old)s to %(new)s"),
    ),
    (
        re.compile(r"Refund of Stripe payment (?P<payment>\S+)"),
        {},
        lambda: gettext("Refund of Stripe payment %(payment)s"),
    ),
    (
        re.compile(r"Dispute of Stripe payment (?P<payment>\S+)"),
        {},
        lambda: gettext("Dispute of Stripe payment %(payment)s"),
    ),
]


def ledger_reason(reason: str) -> str:
    """A stored ledger or hold reason in the reader's language (typed ones as typed)."""
    return translate(reason, _REASONS)
