"""What generation announces to the apps above it (the public API's webhooks).

Each signal is sent by the named action that makes the change, inside the transaction that
makes it, once per change: a receiver that records rows (webhook deliveries) commits or
rolls back with the change itself, and sends nothing outward until it commits. Receivers
run through `announce`, which logs and swallows their errors, so a bug in a listener never
undoes a settlement or a render. A receiver that writes must do so in its own savepoint
(`transaction.atomic()`), so a database error there leaves the sender's transaction usable.
"""

from __future__ import annotations

import logging

from django.dispatch import Signal

log = logging.getLogger(__name__)

# A take reached a final status (succeeded, failed, canceled, expired). Argument: `take`.
take_ended = Signal()
# A rough cut finished rendering (succeeded or failed). Argument: `rough_cut`.
rough_cut_ended = Signal()


def announce(signal: Signal, sender: type, **kwargs) -> None:
    for receiver, result in signal.send_robust(sender=sender, **kwargs):
        if isinstance(result, Exception):
            log.error("%s receiver %r failed", sender.__name__, receiver, exc_info=result)
