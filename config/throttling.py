"""Rate limits every process shares: counted in the cache (Redis outside the embedded mode).

A rate is `"<count>/<period>"` with the period `s`, `m`, `h`, `d` or a number of seconds
(`"5/300s"`). Each limit is a fixed window counted with an atomic increment, so gunicorn
workers and restarts see the same counts. Over a limit, the caller answers 429 with
`Retry-After` (the seconds until the window ends) and writes nothing.

`SubmissionThrottle` (DRF) and `submission_retry_after` (plain views) apply the take
submission limits: a burst and a sustained rate (`RATE_LIMIT_SUBMIT_BURST`,
`RATE_LIMIT_SUBMIT_SUSTAINED`), each per user and per workspace. `client_ip` is the
address allauth's limits use too (`ALLAUTH_TRUSTED_PROXY_COUNT` behind a proxy).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from rest_framework.throttling import BaseThrottle

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")


@dataclass(frozen=True)
class Rate:
    limit: int
    period: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        match = RATE.match(text or "")
        if not match:
            raise ImproperlyConfigured(f"{text!r} is not a rate like 20/m or 5/300s")
        count, multiple, unit = match.groups()
        return cls(int(count), int(multiple or 1) * PERIODS[unit])


def retry_after(*limits: tuple[str, object, str]) -> int | None:
    """Count one hit against each (scope, identity, rate); the seconds to wait if any limit
    is now exceeded, else None."""
    now = time.time()
    wait = 0
    for scope, ident, text in limits:
        rate = Rate.parse(text)
        window = int(now // rate.period)
        key = f"throttle:{scope}:{ident}:{rate.limit}/{rate.period}:{window}"
        cache.add(key, 0, timeout=rate.period + 1)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr: a fresh window
            cache.add(key, 1, timeout=rate.period + 1)
            count = 1
        if count > rate.limit:
            wait = max(wait, int((window + 1) * rate.period - now) + 1)
    return wait or None


def client_ip(request) -> str:
    from allauth.core.internal.httpkit import get_client_ip

    return get_client_ip(request) or "unknown"


def submission_retry_after(request) -> int | None:
    """Hit the submission limits of this request's user and workspace."""
    workspace = getattr(request, "workspace", None)
    burst, sustained = settings.RATE_LIMIT_SUBMIT_BURST, settings.RATE_LIMIT_SUBMIT_SUSTAINED
    return retry_after(
        ("submit-user", request.user.pk, burst),
        ("submit-user", request.user.pk, sustained),
        ("submit-workspace", workspace.pk if workspace else 0, burst),
        ("submit-workspace", workspace.pk if workspace else 0, sustained),
    )


class SubmissionThrottle(BaseThrottle):
    """DRF throttle for endpoints that create takes."""

    wait_seconds: int | None = None

    def allow_request(self, request, view) -> bool:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        self.wait_seconds = submission_retry_after(request)
        return self.wait_seconds is None

    def wait(self) -> float | None:
        return self.wait_seconds
