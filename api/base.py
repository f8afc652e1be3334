"""What every public API view shares: authentication, the workspace, rate limits, errors."""

from __future__ import annotations

from django.utils.translation import gettext as _
from rest_framework import viewsets
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination

from config.throttling import SubmissionThrottle

from .auth import ApiKeyAuthentication, SessionAuthentication, WorkspaceAccess
from .errors import ApiError, openai_exception_handler, v1_exception_handler
from .throttles import BurstRateThrottle, SustainedRateThrottle, rate_limit_headers


class NewestFirst(CursorPagination):
    """Opaque cursors over the newest rows first; `page_size` up to 100."""

    ordering = ("-created_at", "-pk")
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except NotFound as exc:
            raise ApiError(_("Invalid cursor."), "cursor") from exc


class ApiViewSet(viewsets.GenericViewSet):
    """The base of `/api/v1/` views."""

    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [WorkspaceAccess]
    throttle_classes = [BurstRateThrottle, SustainedRateThrottle]
    pagination_class = NewestFirst
    # Actions that create takes: also under the per-user and per-workspace submission
    # rates the studio has (config/throttling.py), whatever the key's own rate.
    submission_actions: tuple[str, ...] = ()

    def get_throttles(self):
        throttles = super().get_throttles()
        if self.action in self.submission_actions:
            throttles.append(SubmissionThrottle())
        return throttles

    @property
    def workspace(self):
        return self.request._request.workspace

    @property
    def api_key(self):
        from .auth import api_key_of

        return api_key_of(self.request)

    def get_exception_handler(self):
        return v1_exception_handler

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in rate_limit_headers(request).items():
            response[name] = value
        return response


class OpenAIViewSet(ApiViewSet):
    """The base of the OpenAI-compatible `/v1/` views: OpenAI's error shape."""

    def get_exception_handler(self):
        return openai_exception_handler

    def perform_content_negotiation(self, request, force=False):
        # The SDK asks `Accept: application/binary` for downloads; errors are JSON anyway.
        return super().perform_content_negotiation(request, force=True)
