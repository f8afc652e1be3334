"""Workspace pages: switcher, team management, invitations. Thin: parse, call an action."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from billing.ledger import spend_by_member
from config.throttling import client_ip, retry_after
from config.validation import POSTGRES_INT_MAX

from . import actions
from .middleware import SESSION_KEY
from .models import Invitation, Membership, Role, UserSettings, Workspace


class WorkspaceForm(forms.Form):
    name = forms.CharField(max_length=120, label=gettext_lazy("Team name"))
    switch = forms.BooleanField(
        required=False,
        initial=False,
        label=gettext_lazy("Switch to the new team now (its wallet and projects)"),
    )


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254, label=gettext_lazy("E-mail"))
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER, label=gettext_lazy("Role"))


class NotificationsForm(forms.Form):
    batch_digest_email = forms.BooleanField(
        required=False,
        label=gettext_lazy(
            "E-mail me a summary when a batch of takes has ended (several takes from one "
            "Generate, or off-peak takes)"
        ),
    )


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class SpendCapForm(forms.Form):
    monthly_spend_cap = forms.IntegerField(
        min_value=0,
        max_value=POSTGRES_INT_MAX,
        required=False,
        label=gettext_lazy("Monthly cap (credits)"),
    )


def safe_next(request: HttpRequest, target: str | None, fallback: str = "home") -> str:
    """`target` if it is a path or URL on this site, else the fallback: no open redirects."""
    if (
        target
        and target.startswith("/")
        and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return target
    return reverse(fallback)


def _team_membership(request: HttpRequest, membership_id: int) -> Membership:
    """A membership of the current workspace, or 404: other workspaces' rows do not exist."""
    return get_object_or_404(
        Membership.objects.select_related("user", "workspace"),
        pk=membership_id,
        workspace=request.workspace,
    )


def _run(request: HttpRequest, action, *args, success: str, **kwargs):
    try:
        result = action(*args, **kwargs)
    except actions.WorkspaceActionError as exc:
        messages.error(request, str(exc))
        return None
    messages.success(request, success)
    return result


@login_required
def workspace_list(request: HttpRequest) -> HttpResponse:
    form = WorkspaceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        workspace = _run(
            request,
            actions.create_workspace,
            request.user,
            form.cleaned_data["name"],
            success=_("Team created."),
        )
        if workspace is not None:
            if form.cleaned_data["switch"]:
                request.session[SESSION_KEY] = workspace.pk
                return redirect("team")
            messages.info(
                request,
                _("You are still in %(current)s. Switch to %(team)s when you want to work there.")
                % {"current": request.workspace.display_name, "team": workspace.display_name},
            )
            return redirect("workspace_list")
    memberships = Membership.objects.filter(user=request.user).select_related("workspace")
    return render(request, "accounts/workspaces.html", {"form": form, "memberships": memberships})


@login_required
def notification_settings(request: HttpRequest) -> HttpResponse:
    """The user's own notification settings (not a workspace's): the batch digest e-mail."""
    preferences = UserSettings.objects.filter(user=request.user).first()
    initial = {"batch_digest_email": bool(preferences and preferences.batch_digest_email)}
    form = NotificationsForm(request.POST if request.method == "POST" else None, initial=initial)
    if request.method == "POST" and form.is_valid():
        enabled = form.cleaned_data["batch_digest_email"]
        actions.set_batch_digest(request.user, enabled, language=request.LANGUAGE_CODE)
        messages.success(
            request,
            _("Batch summaries will be e-mailed to %(email)s.") % {"email": request.user.email}
            if enabled
            else _("Batch summaries are off."),
        )
        return redirect(safe_next(request, request.POST.get("next"), "notification_settings"))
    return render(
        request,
        "accounts/notifications.html",
        {
            "form": form,
            "next": safe_next(request, request.GET.get("next"), "notification_settings"),
        },
    )


@login_required
@require_POST
def switch_workspace(request: HttpRequest, workspace_id: int) -> HttpResponse:
    workspace = get_object_or_404(Workspace.objects.for_user(request.user), pk=workspace_id)
    request.session[SESSION_KEY] = workspace.pk
    messages.success(request, _("Switched to %(name)s.") % {"name": workspace.display_name})
    return HttpResponseRedirect(safe_next(request, request.POST.get("next")))


@login_required
def team(request: HttpRequest) -> HttpResponse:
    workspace = request.workspace
    invite_form = InviteForm(request.POST or None)
    wait = None
    if request.method == "POST" and invite_form.is_valid():
        wait = retry_after(
            ("invite-user", request.user.pk, settings.RATE_LIMIT_INVITE),
            ("invite-ip", client_ip(request), settings.RATE_LIMIT_INVITE),
        )
        if wait:
            messages.error(
                request, _("Too many invitations; try again in %(n)d seconds.") % {"n": wait}
            )
    if request.method == "POST" and invite_form.is_valid() and not wait:
        _run(
            request,
            actions.invite_member,
            workspace,
            invite_form.cleaned_data["email"],
            invite_form.cleaned_data["role"],
            acting_user=request.user,
            success=_("Invitation sent."),
        )
        return redirect("team")
    can_manage = request.membership.can_manage
    spend = spend_by_member(workspace) if can_manage else {}
    memberships = list(workspace.memberships.select_related("user"))
    for membership in memberships:
        figures = spend.get(membership.user_id, {"charged": 0, "held": 0})
        membership.spent_this_month = figures["charged"]
        membership.held_this_month = figures["held"]
    context = {
        "workspace": workspace,
        "memberships": memberships,
        "invitations": workspace.invitations.filter(
            accepted_at__isnull=True, revoked_at__isnull=True
        ),
        "invite_form": invite_form,
        "roles": Role.choices,
        "can_manage": can_manage,
    }
    response = render(request, "accounts/team.html", context, status=429 if wait else 200)
    if wait:
        response["Retry-After"] = str(wait)
    return response


@login_required
@require_POST
def change_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    membership = _team_membership(request, membership_id)
    form = RoleForm(request.POST)
    if form.is_valid():
        _run(
            request,
            actions.set_role,
            membership,
            form.cleaned_data["role"],
            acting_user=request.user,
            success=_("Role updated."),
        )
    else:
        messages.error(request, _("Choose a valid role."))
    return redirect("team")


@login_required
@require_POST
def change_spend_cap(request: HttpRequest, membership_id: int) -> HttpResponse:
    membership = _team_membership(request, membership_id)
    form = SpendCapForm(request.POST)
    if form.is_valid():
        _run(
            request,
            actions.set_spend_cap,
            membership,
            form.cleaned_data["monthly_spend_cap"],
            acting_user=request.user,
            success=_("Spending cap updated."),
        )
    else:
        messages.error(request, _("A spending cap is a whole number of credits, or empty."))
    return redirect("team")


@login_required
@require_POST
def remove_member(request: HttpRequest, membership_id: int) -> HttpResponse:
    membership = _team_membership(request, membership_id)
    _run(
        request,
        actions.remove_member,
        membership,
        acting_user=request.user,
        success=_("Member removed."),
    )
    return redirect("team")


@login_required
@require_POST
def revoke_invitation(request: HttpRequest, invitation_id: int) -> HttpResponse:
    invitation = get_object_or_404(Invitation, pk=invitation_id, workspace=request.workspace)
    _run(
        request,
        actions.revoke_invitation,
        invitation,
        acting_user=request.user,
        success=_("Invitation revoked."),
    )
    return redirect("team")


@login_required
@require_POST
def leave(request: HttpRequest) -> HttpResponse:
    left = _run(
        request,
        actions.leave_workspace,
        request.workspace,
        request.user,
        success=_("You left %(name)s.") % {"name": request.workspace.display_name},
    )
    if left is not None:
        request.session.pop(SESSION_KEY, None)
        return redirect("home")
    return redirect("team")


@login_required
def accept_invitation(request: HttpRequest, token: str) -> HttpResponse:
    invitation = Invitation.objects.select_related("workspace").filter(token=token).first()
    # Only the addressee may see an invitation; to anyone else it does not exist. Accepting
    # it needs that address verified (the action checks).
    if invitation is None or not actions.has_address(request.user, invitation.email):
        raise Http404
    if request.method == "POST":
        membership = _run(
            request,
            actions.accept_invitation,
            token,
            request.user,
            success=_("Welcome to %(name)s.") % {"name": invitation.workspace.display_name},
        )
        if membership is not None:
            request.session[SESSION_KEY] = membership.workspace_id
            return redirect("home")
    return render(request, "accounts/invitation.html", {"invitation": invitation})
