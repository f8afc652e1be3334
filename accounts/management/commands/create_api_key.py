"""Mint an API key for scripts and print it once: `create_api_key EMAIL [--workspace ID]`."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.api_keys import ApiKeyError, create_api_key
from accounts.models import Membership


class Command(BaseCommand):
    help = "Create an API key for EMAIL's workspace and print it (it is not shown again)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("email")
        parser.add_argument("--workspace", type=int, help="workspace id (default: personal)")
        parser.add_argument("--name", default="command line")
        parser.add_argument("--cap", type=int, default=None, help="monthly spending cap")

    def handle(self, *args, email: str, workspace: int | None, name: str, cap, **options):
        user = get_user_model().objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No user with the e-mail address {email}.")
        memberships = Membership.objects.filter(user=user).select_related("workspace")
        if workspace is not None:
            membership = memberships.filter(workspace_id=workspace).first()
            if membership is None:
                raise CommandError(f"{email} is not a member of workspace {workspace}.")
        else:
            membership = memberships.order_by("-workspace__is_personal", "joined_at").first()
            if membership is None:
                raise CommandError(f"{email} has no workspace.")
        try:
            key, raw = create_api_key(
                membership.workspace, name=name, acting_user=user, monthly_spend_cap=cap
            )
        except ApiKeyError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(
            f"Created key {key.prefix} ({key.name}) for workspace {key.workspace_id} "
            f"“{key.workspace.name}”. It is shown once:"
        )
        self.stdout.write(raw)
