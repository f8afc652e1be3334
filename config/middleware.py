"""Response headers every page gets: Permissions-Policy, and Retry-After on any 429."""

from __future__ import annotations

# Features no page of Retake uses; a script injected anywhere cannot turn them on.
PERMISSIONS_POLICY = (
    "accelerometer=(), autoplay=(self), camera=(), display-capture=(), fullscreen=(self), "
    "geolocation=(), gyroscope=(), magnetometer=(), microphone=(), midi=(), payment=(), "
    "picture-in-picture=(self), publickey-credentials-get=(), usb=()"
)


# allauth's limits are per minute or per few minutes; its 429 pages get this.
DEFAULT_RETRY_AFTER = 60


class EdgeHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        if response.status_code == 429 and not response.has_header("Retry-After"):
            # allauth's own limits answer 429 without saying when to come back.
            response["Retry-After"] = str(DEFAULT_RETRY_AFTER)
        return response
