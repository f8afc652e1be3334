"""API keys: mint, revoke, and recognise them.

A key reads `rtk_<prefix>_<secret>`. The prefix (12 characters) is unique and stored in
clear so lists can show it; the whole key is stored only as its SHA-256. The plaintext is
returned once, by `create_api_key`, and never again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from billing.plans import plan_for

from .models import MANAGER_ROLES, ApiKey, Membership, Workspace

KEY_PREFIX = "rtk_"
# How stale `last_used_at` may get before a request writes it again (one write a minute).
LAST_USED_RESOLUTION = timedelta(seconds=60)


class ApiKeyError(Exception):
    """Refused; the message is for a person. `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def plan_allows_api(workspace: Workspace) -> bool:
    return plan_for(workspace).api_access


def no_api_access_message(workspace: Workspace) -> str:
    return _(
        "The %(plan)s plan does not include API access: upgrade the workspace to a plan "
        "with API access to create or use API keys."
    ) % {"plan": plan_for(workspace).name}


def create_api_key(
    workspace: Workspace,
    *,
    name: str,
    acting_user,
    expires_at: datetime | None = None,
    monthly_spend_cap: int | None = None,
) -> tuple[ApiKey, str]:
    """Mint a key for `workspace`; return it and its plaintext (shown once)."""
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise ApiKeyError(_("Give the key a name of 1 to 120 characters."))
    membership = Membership.objects.filter(workspace=workspace, user=acting_user).first()
    if membership is None or membership.role not in MANAGER_ROLES:
        raise ApiKeyError(_("Only owners and admins can manage API keys."), status=403)
    if not plan_allows_api(workspace):
        raise ApiKeyError(no_api_access_message(workspace), status=403)
    if expires_at is not None and expires_at <= timezone.now():
        raise ApiKeyError(_("The expiry must be in the future."))
    if monthly_spend_cap is not None and monthly_spend_cap < 0:
        raise ApiKeyError(_("The monthly cap cannot be negative."))
    prefix = secrets.token_hex(6)
    raw = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.for_workspace(workspace).create(
        workspace=workspace,
        name=name,
        prefix=prefix,
        key_hash=hash_key(raw),
        created_by=acting_user,
        expires_at=expires_at,
        monthly_spend_cap=monthly_spend_cap,
    )
    return key, raw


@transaction.atomic
def revoke_api_key(key: ApiKey, *, acting_user) -> ApiKey:
    membership = Membership.objects.filter(workspace_id=key.workspace_id, user=acting_user).first()
    if membership is None or membership.role not in MANAGER_ROLES:
        raise ApiKeyError(_("Only owners and admins can manage API keys."), status=403)
    ApiKey.objects.dangerously_unscoped().filter(pk=key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    key.refresh_from_db()
    return key


def parse_prefix(raw: str) -> str | None:
    if not raw.startswith(KEY_PREFIX):
        return None
    prefix, sep, secret = raw[len(KEY_PREFIX) :].partition("_")
    if not sep or not secret or len(prefix) != 12:
        return None
    return prefix


def authenticate_key(raw: str) -> ApiKey:
    """The live key `raw` names, with its workspace and creator; raises ApiKeyError (401).

    A key stops working when revoked, past its expiry, or when its creator is no longer
    a member of the workspace (they could not spend its credits any more).
    """
    invalid = ApiKeyError(_("Invalid API key."), status=401)
    prefix = parse_prefix(raw or "")
    if prefix is None:
        raise invalid
    key = (
        ApiKey.objects.dangerously_unscoped()
        .select_related("workspace", "created_by")
        .filter(prefix=prefix)
        .first()
    )
    if key is None or not hmac.compare_digest(key.key_hash, hash_key(raw)):
        raise invalid
    now = timezone.now()
    if key.revoked_at is not None:
        raise ApiKeyError(_("This API key was revoked."), status=401)
    if key.expires_at is not None and key.expires_at <= now:
        raise ApiKeyError(_("This API key has expired."), status=401)
    if (
        key.created_by is None
        or not Membership.objects.filter(
            workspace_id=key.workspace_id, user=key.created_by
        ).exists()
    ):
        raise ApiKeyError(
            _("This API key's creator is no longer a member of the workspace."), status=401
        )
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.dangerously_unscoped().filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key
