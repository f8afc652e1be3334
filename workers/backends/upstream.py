"""What every upstream provider backend shares: the request a take becomes, the state a
provider reports, the error mapping, and the registry keyed by `Provider.kind`.

A backend maps the platform's parameters onto the provider's fields and the provider's
statuses onto `JobState.status`: queued, running, succeeded, failed, blocked (moderation),
canceled. Every method raises a `workers.backends` error, never an httpx one:

- timeouts, connection errors, 5xx, 401/403 (our credentials) and malformed JSON are
  transient (the take moves to the next route);
- 429 is `ProviderAtCapacity` (transient too);
- other 4xx are permanent (the input itself was refused); one whose reason names moderation
  is `ModerationBlocked`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from . import (
    ModerationBlocked,
    PermanentBackendError,
    ProviderAtCapacity,
    TransientBackendError,
)

if TYPE_CHECKING:
    from workers.models import Provider

QUEUED, RUNNING, SUCCEEDED, FAILED, BLOCKED, CANCELED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "blocked",
    "canceled",
)
FINISHED = frozenset({SUCCEEDED, FAILED, BLOCKED, CANCELED})
# Failure messages that mean the provider's moderation refused the content.
MODERATION_WORDS = re.compile(r"nsfw|safety|content.?polic|flagged|sensitive|moderat|risk", re.I)


class WebhookRejected(Exception):
    """A webhook whose signature, timestamp or body does not check out."""


@dataclass(frozen=True)
class JobRequest:
    """A take as every provider sees it, before mapping onto its own fields."""

    # Our id of this attempt (take id and attempt number), for providers that keep one.
    attempt_id: str
    model: str
    prompt: str
    negative_prompt: str = ""
    seed: int | None = None
    resolution: str = "720p"
    aspect_ratio: str = "16:9"
    width: int = 1280
    height: int = 720
    duration: int = 5
    fps: int = 24
    # Data URLs (data:image/png;base64,…) of the first and last frame, if any.
    image: str | None = None
    last_frame: str | None = None
    webhook_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def image_to_video(self) -> bool:
        return bool(self.image)


@dataclass(frozen=True)
class JobRef:
    """Enough to find a job again at the provider."""

    external_id: str
    model: str
    image_to_video: bool = False


@dataclass(frozen=True)
class JobState:
    external_id: str
    status: str
    output_url: str = ""
    error: str = ""
    progress: int | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def failure(external_id: str, message: str) -> JobState:
    """A failed job, or a blocked one when the provider's message says moderation."""
    status = BLOCKED if MODERATION_WORDS.search(message or "") else FAILED
    return JobState(external_id, status, error=message or "The provider reported a failure.")


def raw_base64(data_url: str) -> str:
    """The base64 payload of a data URL (some providers want it without the header)."""
    return data_url.partition(",")[2] if data_url.startswith("data:") else data_url


class ProviderBackend:
    """One provider account's API client."""

    kind: ClassVar[str]
    default_base_url: ClassVar[str]
    # Without webhooks the sweeper polls every PROVIDER_POLL_SECONDS.
    has_webhooks: ClassVar[bool] = True

    def __init__(self, provider: Provider, timeout: float = 20) -> None:
        self.provider = provider
        self.base_url = (provider.base_url or self.default_base_url).rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ProviderBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def submit(self, request: JobRequest) -> JobState:
        raise NotImplementedError

    def status(self, ref: JobRef) -> JobState:
        raise NotImplementedError

    def cancel(self, ref: JobRef) -> bool:
        raise NotImplementedError

    def parse_webhook(self, headers: dict[str, str], body: bytes) -> JobState:
        """The state a webhook reports; raises WebhookRejected if it cannot be trusted."""
        raise WebhookRejected(f"{self.kind} does not send webhooks")

    def headers(self) -> dict[str, str]:
        return {}

    def send(
        self, method: str, path: str, *, allow: tuple[int, ...] = (), **kwargs: Any
    ) -> tuple[int, Any]:
        """One API call: (status, parsed JSON body or None for an empty one)."""
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        name = self.provider.name
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


def backend_class(kind: str) -> type[ProviderBackend]:
    from .fal import FalBackend
    from .kling import KlingBackend
    from .replicate import ReplicateBackend
    from .runway import RunwayBackend

    registry = {b.kind: b for b in (ReplicateBackend, FalBackend, KlingBackend, RunwayBackend)}
    return registry[kind]


def backend_for(provider: Provider, timeout: float | None = None) -> ProviderBackend:
    """The client for a provider account (close it, or use it in a `with` block)."""
    from django.conf import settings

    cls = backend_class(provider.kind)
    return cls(provider, timeout=timeout or settings.PROVIDER_TIMEOUT_SECONDS)
