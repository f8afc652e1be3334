"""The one interface behind every place a take can run: a Cog GPU node, an upstream
provider (Replicate, fal, Kling, Runway), a ComfyUI server.

A backend is built for one target (a `Node` or a `Provider` row) and is used in a `with`
block. It gets a `Request` — the take's parameters, built from the take once, by
`workers.dispatch.request_for` — and answers `generation.reports.State`s:

- `submit(request)`: start the attempt; quick (the outcome comes later);
- `status(request, external_id)`: where the attempt stands now (the sweeper's re-drive);
- `cancel(request, external_id)`: ask it to stop; True if the backend still had it;
- `parse_webhook(headers, body)`: the state a callback reports (raises `WebhookRejected`
  if it cannot be trusted); the per-attempt secret in the URL is checked before;
- `calls_back`: False when the backend sends no webhooks and must be polled.

Every method raises one of the errors below, never a transport library's; the dispatcher
maps them in one place: a transient error puts the take back in the queue (for another
node or the next route), `NodeAtCapacity` does too without counting an attempt, a
permanent one fails the take (and releases its hold).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from generation.reports import State


class BackendError(Exception):
    """A backend could not accept or report on a take."""


class TransientBackendError(BackendError):
    """Unreachable, timed out or a 5xx: try again later or on another node."""


class NodeAtCapacity(TransientBackendError):
    """The node's slots are all busy (Cog answers 409): not the take's fault."""


class PermanentBackendError(BackendError):
    """The backend refused the request itself (e.g. 422 invalid input): fail the take."""


class ProviderAtCapacity(TransientBackendError):
    """The provider is rate limiting us or at its concurrency limit (429): try the next route."""


class ModerationBlocked(PermanentBackendError):
    """The provider's moderation refused the take; the message is the provider's reason."""


class WebhookRejected(Exception):
    """A webhook whose signature, timestamp or body does not check out."""


@dataclass(frozen=True)
class Request:
    """A take's attempt as every backend sees it, before mapping onto its own fields."""

    take_id: str
    attempt: int
    # The backend's name for the model (a provider's model id; empty for a node).
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
    # The attempt's secret (also in webhook_url): a node's uploads must carry it.
    secret: str = ""
    # Backend-specific fields merged in (a node's or a route's `extra_input`).
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def attempt_id(self) -> str:
        """Our id of this attempt, for backends that keep one."""
        return f"{self.take_id}-{self.attempt}"

    @property
    def image_to_video(self) -> bool:
        return bool(self.image)


class Backend:
    """One target's client. Subclasses set `kind` and implement the four calls."""

    kind: ClassVar[str]
    calls_back: ClassVar[bool] = True

    def close(self) -> None:
        """Release connections (nothing by default)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def submit(self, request: Request) -> State:
        raise NotImplementedError

    def status(self, request: Request, external_id: str) -> State:
        raise NotImplementedError

    def cancel(self, request: Request, external_id: str) -> bool:
        raise NotImplementedError

    def parse_webhook(self, headers: dict[str, str], body: bytes) -> State:
        raise WebhookRejected(f"{self.kind} does not send webhooks")


__all__ = [
    "Backend",
    "BackendError",
    "ModerationBlocked",
    "NodeAtCapacity",
    "PermanentBackendError",
    "ProviderAtCapacity",
    "Request",
    "State",
    "TransientBackendError",
    "WebhookRejected",
]
