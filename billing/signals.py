"""The first daily free credits arrive with the account, not at the next beat run.

Granted when the address is verified (or at sign-up when verification is off), to the
user's personal workspace, with the same once-a-day key the beat job uses, so nobody gets
them twice in a day.
"""

from __future__ import annotations

from allauth.account.signals import email_confirmed, user_signed_up
from django.conf import settings
from django.dispatch import receiver

from accounts.models import Workspace

from . import plans


def grant_first_daily_credits(user) -> None:
    workspace = Workspace.objects.filter(memberships__user=user, is_personal=True).first()
    if workspace is not None:
        plans.grant_daily_free(workspace, plans.plan_for(workspace))


@receiver(email_confirmed, dispatch_uid="billing.first_daily_credits_on_verify")
def first_daily_credits_on_verification(sender, request, email_address, **kwargs) -> None:
    grant_first_daily_credits(email_address.user)


@receiver(user_signed_up, dispatch_uid="billing.first_daily_credits_on_sign_up")
def first_daily_credits_on_sign_up(sender, request, user, **kwargs) -> None:
    if settings.ACCOUNT_EMAIL_VERIFICATION != "mandatory":
        grant_first_daily_credits(user)
