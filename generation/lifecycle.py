"""Ending takes that deliver nothing: fail, cancel, expire — each releasing the hold in full.

Every function locks the take row and acts only if the take is not already terminal, so
a redelivered message or a second click changes nothing. Releases use idempotency keys
derived from the take id.
"""

from __future__ import annotations

import logging
import uuid

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from billing import ledger

from .models import TERMINAL, Take, TakeStatus

log = logging.getLogger(__name__)


class TakeActionError(Exception):
    """A take action was refused; the message says why."""


def release_take_hold(take: Take, reason: str) -> None:
    """Release a take's whole hold (no-op for free takes); safe to call twice."""
    if take.hold_id is not None:
        ledger.release_hold(take.hold_id, idempotency_key=f"take:{take.pk}:release", reason=reason)


def end_without_delivery(
    take_id: uuid.UUID | str, status: str, error: str = "", *, only_from: tuple = ()
) -> Take | None:
    """Move a live take to failed/canceled/expired and release its hold.

    Returns the take if this call ended it, None if it was already terminal (or not in
    `only_from`, when given).
    """
    with transaction.atomic():
        take = Take.objects.dangerously_unscoped().select_for_update().get(pk=take_id)
        if take.status in TERMINAL or (only_from and take.status not in only_from):
            return None
        take.status = status
        take.error = error
        take.finished_at = timezone.now()
        take.lease_expires_at = None
        take.save(update_fields=["status", "error", "finished_at", "lease_expires_at"])
        release_take_hold(take, reason=f"take {status}")
        return take


def fail_take(take_id: uuid.UUID | str, error: str) -> Take | None:
    log.info("take %s failed: %s", take_id, error)
    return end_without_delivery(take_id, TakeStatus.FAILED, error)


def cancel_take(take: Take) -> Take:
    """Cancel a take that has not delivered yet; a running one is also stopped on its node."""
    node, provider_id = take.node, take.provider_id
    ended = end_without_delivery(
        take.pk,
        TakeStatus.CANCELED,
        _("Canceled."),
        only_from=(TakeStatus.QUEUED, TakeStatus.DISPATCHING, TakeStatus.RUNNING),
    )
    if ended is None:
        take.refresh_from_db()
        if take.status == TakeStatus.CANCELED:
            return take
        raise TakeActionError(
            _("This take can no longer be canceled (it is %(status)s).")
            % {"status": take.get_status_display().lower()}
        )
    if node is not None:
        transaction.on_commit(lambda: _cancel_on_node(node.pk, str(take.pk)))
    if provider_id is not None:
        transaction.on_commit(lambda: _cancel_on_provider(provider_id, str(take.pk)))
    return ended


def _cancel_on_node(node_id: int, take_id: str) -> None:
    from workers.tasks import cancel_on_node, dispatch_takes

    cancel_on_node.delay(node_id, take_id)
    dispatch_takes.delay()  # its slot is free


def _cancel_on_provider(provider_id: int, take_id: str) -> None:
    from workers.tasks import cancel_on_provider, dispatch_takes

    cancel_on_provider.delay(provider_id, take_id)
    dispatch_takes.delay()


def expire_overdue_takes(now=None) -> int:
    """Expire queued off-peak takes whose deadline passed without their starting."""
    now = now or timezone.now()
    ids = list(
        Take.objects.dangerously_unscoped()
        .filter(status=TakeStatus.QUEUED, deadline__lte=now)
        .values_list("pk", flat=True)
    )
    expired = 0
    for take_id in ids:
        if end_without_delivery(
            take_id,
            TakeStatus.EXPIRED,
            _("Not started before its off-peak deadline."),
            only_from=(TakeStatus.QUEUED,),
        ):
            expired += 1
    return expired
