"""Puts the current workspace on the request and turns the tenancy guard on."""

from __future__ import annotations

from django.conf import settings

from .models import Membership
from .tenancy import tenancy_guard

SESSION_KEY = "workspace_id"


def _current_membership(request) -> Membership | None:
    user = request.user
    if not user.is_authenticated:
        return None
    memberships = Membership.objects.select_related("workspace").filter(user=user)
    wanted = request.session.get(SESSION_KEY)
    chosen = memberships.filter(workspace_id=wanted).first() if wanted else None
    if chosen is None:
        # Fall back to the personal workspace, then to the oldest membership.
        chosen = memberships.order_by("-workspace__is_personal", "joined_at").first()
    if chosen is not None and wanted != chosen.workspace_id:
        request.session[SESSION_KEY] = chosen.workspace_id
    return chosen


class WorkspaceMiddleware:
    # The admin is staff-only and cross-tenant by design; everything else is guarded.
    unguarded_prefixes = ("/admin/",)

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        membership = _current_membership(request)
        request.membership = membership
        request.workspace = membership.workspace if membership else None
        guarded = settings.TENANCY_STRICT and not request.path.startswith(self.unguarded_prefixes)
        with tenancy_guard(guarded):
            return self.get_response(request)
