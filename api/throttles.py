"""Per-key request rates: a burst and a sustained limit (DRF throttles on Django's cache).

Only calls made with an API key are counted; the browser session is not. Each throttle
leaves what it saw on the request, and the API views turn the tightest of them into
`X-RateLimit-*` headers on every answer (a refused call gets 429 and `Retry-After`).
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from .auth import api_key_of


class _KeyThrottle(SimpleRateThrottle):
    setting: str = ""

    def get_rate(self) -> str:
        return getattr(settings, self.setting)

    def get_cache_key(self, request, view) -> str | None:
        key = api_key_of(request)
        if key is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": key.pk}

    def allow_request(self, request, view) -> bool:
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        allowed = super().allow_request(request, view)
        if self.key is not None and getattr(self, "history", None) is not None:
            remaining = max(0, self.num_requests - len(self.history))
            reset = self.duration - (self.now - self.history[-1]) if self.history else 0
            seen = getattr(request, "_rate_limits", [])
            seen.append((remaining, self.num_requests, max(0, reset)))
            request._rate_limits = seen
        return allowed


class BurstRateThrottle(_KeyThrottle):
    scope = "api_burst"
    setting = "API_RATE_BURST"


class SustainedRateThrottle(_KeyThrottle):
    scope = "api_sustained"
    setting = "API_RATE_SUSTAINED"


def rate_limit_headers(request) -> dict[str, str]:
    seen = getattr(request, "_rate_limits", None)
    if not seen:
        return {}
    remaining, limit, reset = min(seen)
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(max(1, round(reset))),
    }
