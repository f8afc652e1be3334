"""What every upstream provider backend shares: the HTTP client, the error mapping and
the moderation wording. Providers are `workers.backends.base.Backend`s built for one
`Provider` row.

A backend maps the platform's parameters (`Request`) onto the provider's fields and the
provider's statuses onto `State.status`: queued, running, succeeded, failed, blocked
(moderation), canceled. Every method raises a `workers.backends` error, never an httpx one:

- timeouts, connection errors, 5xx, 401/403 (our credentials) and malformed JSON are
  transient (the take moves to the next route);
- 429 is `ProviderAtCapacity` (transient too);
- other 4xx are permanent (the input itself was refused); one whose reason names moderation
  is `ModerationBlocked`.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from django.conf import settings

from generation.reports import (
    BLOCKED,
    CANCELED,
    FAILED,
    FINISHED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    State,
)

from ..credentials import CredentialError
from .base import (
    Backend,
    ModerationBlocked,
    PermanentBackendError,
    ProviderAtCapacity,
    Request,
    TransientBackendError,
    WebhookRejected,
)

if TYPE_CHECKING:
    from workers.models import Provider

__all__ = [
    "BLOCKED",
    "CANCELED",
    "FAILED",
    "FINISHED",
    "QUEUED",
    "RUNNING",
    "SUCCEEDED",
    "ProviderBackend",
    "Request",
    "State",
    "WebhookRejected",
    "expect_dict",
    "failure",
    "raw_base64",
]

# Failure messages that mean the provider's moderation refused the content.
MODERATION_WORDS = re.compile(r"nsfw|safety|content.?polic|flagged|sensitive|moderat|risk", re.I)


def failure(external_id: str, message: str) -> State:
    """A failed job, or a blocked one when the provider's message says moderation."""
    status = BLOCKED if MODERATION_WORDS.search(message or "") else FAILED
    return State(external_id, status, error=message or "The provider reported a failure.")


def raw_base64(data_url: str) -> str:
    """The base64 payload of a data URL (some providers want it without the header)."""
    return data_url.partition(",")[2] if data_url.startswith("data:") else data_url


class ProviderBackend(Backend):
    """One provider account's API client."""

    default_base_url: ClassVar[str]

    def __init__(self, provider: Provider, timeout: float | None = None) -> None:
        self.provider = provider
        self.base_url = (provider.base_url or self.default_base_url).rstrip("/")
        timeout = timeout or settings.PROVIDER_TIMEOUT_SECONDS
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def headers(self) -> dict[str, str]:
        return {}

    def send(
        self, method: str, path: str, *, allow: tuple[int, ...] = (), **kwargs: Any
    ) -> tuple[int, Any]:
        """One API call: (status, parsed JSON body or None for an empty one)."""
        name = self.provider.name
        try:
            headers = {**self.headers(), **kwargs.pop("headers", {})}
        except CredentialError as exc:
            raise TransientBackendError(f"{name}: {exc}") from exc
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise TransientBackendError(f"{name}: timed out ({exc})") from exc
        except httpx.HTTPError as exc:
            raise TransientBackendError(f"{name}: unreachable ({exc})") from exc
        try:
            body = response.json() if response.content else None
        except (ValueError, UnicodeDecodeError):
            body = ValueError(response.text[:200])
        status = response.status_code
        if status < 400 or status in allow:
            if isinstance(body, ValueError):
                raise TransientBackendError(f"{name}: malformed JSON in a {status} answer")
            return status, body
        detail = self.error_detail(body if not isinstance(body, ValueError) else None)
        detail = detail or response.text[:300]
        self.raise_for(status, detail, body if isinstance(body, dict) else {})
        raise PermanentBackendError(f"{name}: {status} {detail}")

    def raise_for(self, status: int, detail: str, body: dict) -> None:
        """Raise the error a failed answer means (the default: by HTTP status)."""
        name = self.provider.name
        if status == 429:
            raise ProviderAtCapacity(f"{name}: 429 {detail}")
        if status >= 500 or status in (401, 403, 408):
            raise TransientBackendError(f"{name}: {status} {detail}")
        if MODERATION_WORDS.search(detail):
            raise ModerationBlocked(detail)

    def error_detail(self, body: Any) -> str:
        if isinstance(body, dict):
            for key in ("detail", "error", "message", "title"):
                if body.get(key):
                    value = body[key]
                    return value if isinstance(value, str) else json.dumps(value)[:300]
        return ""


def expect_dict(provider: Provider, body: Any, *keys: str) -> dict:
    """The answer as a dict holding `keys`, or a transient error (a garbled answer)."""
    if not isinstance(body, dict) or any(key not in body for key in keys):
        raise TransientBackendError(f"{provider.name}: unexpected answer {str(body)[:200]}")
    return body
