"""Who is calling the public API: an API key (`Authorization: Bearer rtk_…`) or the browser
session, and the workspace the call acts on.

A key acts on its own workspace as its creator (holds count against the creator's member
cap and the key's own cap). A session acts on the workspace chosen in the studio. Keys work
only while the workspace's plan has API access; sessions work on every plan (the studio
itself uses these endpoints).
"""

from __future__ import annotations

from django.utils.translation import gettext as _
from rest_framework import authentication, exceptions, permissions

from accounts.api_keys import ApiKeyError, authenticate_key, no_api_access_message, plan_allows_api
from accounts.models import ApiKey, Membership


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _sep, raw = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None
        raw = raw.strip()
        if not raw:
            raise exceptions.AuthenticationFailed(_("The Authorization header has no key."))
        try:
            key = authenticate_key(raw)
        except ApiKeyError as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from exc
        # The session middleware chose a workspace before DRF authenticated: a key's own
        # workspace replaces it.
        django_request = request._request
        django_request.workspace = key.workspace
        django_request.membership = Membership.objects.filter(
            workspace=key.workspace, user=key.created_by
        ).first()
        return key.created_by, key

    def authenticate_header(self, request) -> str:
        return self.keyword


class SessionAuthentication(authentication.SessionAuthentication):
    """The browser session (CSRF-checked), acting on the workspace chosen in the studio."""


class WorkspaceAccess(permissions.BasePermission):
    """A workspace to act on, and API access on its plan when the caller uses a key."""

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        workspace = getattr(request._request, "workspace", None)
        if workspace is None:
            raise exceptions.PermissionDenied(_("You are not a member of any workspace."))
        if isinstance(request.auth, ApiKey) and not plan_allows_api(workspace):
            raise exceptions.PermissionDenied(no_api_access_message(workspace))
        return True


def api_key_of(request) -> ApiKey | None:
    return request.auth if isinstance(request.auth, ApiKey) else None
