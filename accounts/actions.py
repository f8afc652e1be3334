"""Every state change to workspaces and memberships, as named actions.

Views, admin and tasks call these; each runs in one transaction and raises
`WorkspaceActionError` with a message a person can read when it refuses.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from billing.plans import plan_for

from .models import (
    MANAGER_ROLES,
    PERSONAL_NAME,
    Invitation,
    Membership,
    Role,
    UserSettings,
    Workspace,
)


class WorkspaceActionError(Exception):
    """An action was refused; the message says why."""


def _lock_membership(workspace: Workspace, user) -> Membership:
    try:
        return Membership.objects.select_for_update().get(workspace=workspace, user=user)
    except Membership.DoesNotExist as exc:
        raise WorkspaceActionError(_("You are not a member of this workspace.")) from exc


def _require_manager(workspace: Workspace, acting_user) -> Membership:
    actor = _lock_membership(workspace, acting_user)
    if actor.role not in MANAGER_ROLES:
        raise WorkspaceActionError(_("Only owners and admins can manage members."))
    return actor


def _owner_count(workspace: Workspace) -> int:
    # Lock every owner row so two owners cannot both leave at once.
    return len(
        list(
            Membership.objects.select_for_update()
            .filter(workspace=workspace, role=Role.OWNER)
            .values_list("pk", flat=True)
        )
    )


def _check_team_creation_limit(user) -> None:
    """At most TEAMS_PER_USER_PER_DAY new teams in any 24 hours (the user's row is locked,
    so racing requests count each other)."""
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    since = timezone.now() - timedelta(days=1)
    recent = Membership.objects.filter(
        user=user, role=Role.OWNER, workspace__is_personal=False, workspace__created_at__gte=since
    ).count()
    if recent >= settings.TEAMS_PER_USER_PER_DAY:
        raise WorkspaceActionError(
            _("You can create at most %(n)d teams a day; try again tomorrow.")
            % {"n": settings.TEAMS_PER_USER_PER_DAY}
        )


def _check_seats(workspace: Workspace, *, extra: int, exclude_email: str = "") -> None:
    """Members plus open invitations may not exceed the plan's team seats."""
    seats = plan_for(workspace).team_seats
    members = Membership.objects.filter(workspace=workspace).count()
    pending = (
        Invitation.objects.filter(
            workspace=workspace, accepted_at__isnull=True, revoked_at__isnull=True
        )
        .filter(expires_at__gt=timezone.now())
        .exclude(email=exclude_email)
        .count()
    )
    if members + pending + extra > seats:
        raise WorkspaceActionError(
            _("Your plan has %(seats)d team seat(s), all taken; upgrade to add members.")
            % {"seats": seats}
        )


@transaction.atomic
def create_workspace(user, name: str, *, personal: bool = False) -> Workspace:
    name = name.strip()
    if not name:
        raise WorkspaceActionError(_("A workspace needs a name."))
    if len(name) > 120:
        raise WorkspaceActionError(_("Workspace names are at most 120 characters."))
    if not personal:
        _check_team_creation_limit(user)
    workspace = Workspace.objects.create(
        name=name, slug=Workspace.unique_slug(name), is_personal=personal
    )
    Membership.objects.create(workspace=workspace, user=user, role=Role.OWNER)
    return workspace


def ensure_personal_workspace(user) -> Workspace:
    existing = Workspace.objects.filter(memberships__user=user, is_personal=True).first()
    if existing:
        return existing
    label = user.get_username().split("@")[0] or "me"
    # Stored in English whatever language the sign-up page was in; shown translated.
    return create_workspace(user, PERSONAL_NAME % {"name": label}, personal=True)


@transaction.atomic
def invite_member(workspace: Workspace, email: str, role: str, *, acting_user) -> Invitation:
    actor = _require_manager(workspace, acting_user)
    email = email.strip().lower()
    if role not in Role.values:
        raise WorkspaceActionError(_("Unknown role."))
    if role == Role.OWNER and actor.role != Role.OWNER:
        raise WorkspaceActionError(_("Only owners can invite owners."))
    if workspace.is_personal:
        raise WorkspaceActionError(_("Personal workspaces cannot have members; create a team."))
    if Membership.objects.filter(workspace=workspace, user__email__iexact=email).exists():
        raise WorkspaceActionError(_("%(email)s is already a member.") % {"email": email})
    Workspace.objects.select_for_update().filter(pk=workspace.pk).first()  # seats: one at a time
    _check_seats(workspace, extra=1, exclude_email=email)
    # A fresh invitation replaces any open one for the same address.
    Invitation.objects.filter(
        workspace=workspace, email=email, accepted_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=timezone.now())
    invitation = Invitation.objects.create(
        workspace=workspace, email=email, role=role, invited_by=acting_user
    )
    link = settings.PUBLIC_BASE_URL + reverse("accept_invitation", args=[invitation.token])
    transaction.on_commit(
        lambda: send_mail(
            _("You are invited to %(workspace)s on Retake") % {"workspace": workspace.name},
            _("Accept the invitation (valid for %(hours)s hours): %(link)s")
            % {"hours": settings.INVITATION_TTL_HOURS, "link": link},
            None,
            [email],
        )
    )
    return invitation


@transaction.atomic
def revoke_invitation(invitation: Invitation, *, acting_user) -> None:
    _require_manager(invitation.workspace, acting_user)
    Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def has_address(user, email: str, *, verified: bool = False) -> bool:
    """Whether `email` is one of the user's addresses (verified, when asked), whatever
    the e-mail verification setting: an invitation goes only to a proven address."""
    from allauth.account.models import EmailAddress

    addresses = EmailAddress.objects.filter(user=user, email__iexact=email)
    if verified:
        return addresses.filter(verified=True).exists()
    return addresses.exists() or (user.email or "").lower() == email.lower()


@transaction.atomic
def accept_invitation(token: str, user) -> Membership:
    invitation = Invitation.objects.select_for_update().filter(token=token).first()
    if invitation is None or not invitation.is_open:
        raise WorkspaceActionError(_("This invitation is invalid or has expired."))
    if not has_address(user, invitation.email, verified=True):
        raise WorkspaceActionError(
            _("This invitation was sent to %(email)s; verify that address to accept it.")
            % {"email": invitation.email}
        )
    workspace = Workspace.objects.select_for_update().get(pk=invitation.workspace_id)
    if not Membership.objects.filter(workspace=workspace, user=user).exists():
        # The invitation itself holds a seat until it is accepted.
        _check_seats(workspace, extra=1, exclude_email=invitation.email)
    membership, _created = Membership.objects.get_or_create(
        workspace=workspace, user=user, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    return membership


@transaction.atomic
def set_role(membership: Membership, role: str, *, acting_user) -> Membership:
    workspace = membership.workspace
    actor = _require_manager(workspace, acting_user)
    target = Membership.objects.select_for_update().get(pk=membership.pk)
    if role not in Role.values:
        raise WorkspaceActionError(_("Unknown role."))
    if actor.role != Role.OWNER and Role.OWNER in (role, target.role):
        raise WorkspaceActionError(_("Only owners can grant or take away the owner role."))
    if target.role == Role.OWNER and role != Role.OWNER and _owner_count(workspace) <= 1:
        raise WorkspaceActionError(_("A workspace needs at least one owner."))
    target.role = role
    target.save(update_fields=["role"])
    return target


@transaction.atomic
def set_spend_cap(membership: Membership, cap: int | None, *, acting_user) -> Membership:
    _require_manager(membership.workspace, acting_user)
    if cap is not None and cap < 0:
        raise WorkspaceActionError(_("A spending cap cannot be negative."))
    Membership.objects.filter(pk=membership.pk).update(monthly_spend_cap=cap)
    membership.refresh_from_db()
    return membership


@transaction.atomic
def remove_member(membership: Membership, *, acting_user) -> None:
    workspace = membership.workspace
    actor = _require_manager(workspace, acting_user)
    target = Membership.objects.select_for_update().get(pk=membership.pk)
    if target.role == Role.OWNER and actor.role != Role.OWNER:
        raise WorkspaceActionError(_("Only owners can remove an owner."))
    if target.role == Role.OWNER and _owner_count(workspace) <= 1:
        raise WorkspaceActionError(_("A workspace needs at least one owner."))
    target.delete()


@transaction.atomic
def leave_workspace(workspace: Workspace, user) -> Workspace:
    membership = _lock_membership(workspace, user)
    if membership.role == Role.OWNER and _owner_count(workspace) <= 1:
        raise WorkspaceActionError(
            _("You are the last owner: make someone else an owner before you leave.")
        )
    membership.delete()
    return workspace


def set_batch_digest(user, enabled: bool, *, language: str) -> UserSettings:
    """Turn the batch summary e-mail on or off; it is written in `language` (a LANGUAGES
    code, else the site default) from then on."""
    known = {code for code, _label in settings.LANGUAGES}
    preferences, _created = UserSettings.objects.update_or_create(
        user=user,
        defaults={
            "batch_digest_email": enabled,
            "email_language": language if language in known else settings.LANGUAGE_CODE,
        },
    )
    return preferences
