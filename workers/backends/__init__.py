"""Backends run takes somewhere else: GPU nodes (`cog`) or upstream providers (`upstream`).

They share one error vocabulary so the dispatcher decides the same way for all of them:
a transient error puts the take back in the queue for another node or the next route, a
permanent one fails the take (and releases its hold).
"""


class BackendError(Exception):
    """A backend could not accept or report on a take."""


class TransientBackendError(BackendError):
    """Unreachable, timed out or a 5xx: try again later or on another node."""


class NodeAtCapacity(TransientBackendError):
    """The node's slots are all busy (Cog answers 409)."""


class PermanentBackendError(BackendError):
    """The backend refused the request itself (e.g. 422 invalid input): fail the take."""


class ProviderAtCapacity(TransientBackendError):
    """The provider is rate limiting us or at its concurrency limit (429): try the next route."""


class ModerationBlocked(PermanentBackendError):
    """The provider's moderation refused the take; the message is the provider's reason."""
