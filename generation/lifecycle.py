"""The take lifecycle: the only code that changes a take's status.

    queued ─► dispatching ─► running ─► finalizing ─► succeeded
       ▲           │            │            │
       └─ requeue ─┴────────────┘            └─► failed / canceled / expired (hold released)

Each action locks the take row, checks that the caller speaks for the take's current
attempt (the attempt's secret: a fresh one per dispatch, carried in webhook URLs), settles
or releases the hold through `billing.ledger`, and enqueues follow-up work on commit through
`config.enqueue` (never by importing the workers app). The two actions that end a take
(`_end` and `succeed`) announce it with `signals.take_ended` in the same transaction, so the
public API records exactly one set of webhook events per take, sent once it commits.
A replayed, late or forged report changes nothing; every action is safe to run twice.

Backends report `generation.reports.State`s; `apply_state` is where they land, whichever
backend sent them (a Cog node, a provider, by webhook, as a submit's answer or a poll's).

A canceled take that was already sent keeps its slot on the node (or at the provider)
until the backend confirms it let go (`confirm_cancel`) or its lease runs out, so the
dispatcher never sends the next take to a node still busy with the canceled one.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from billing import ledger
from billing.pricing import Quote
from config import enqueue

from . import digest, display, queue, reports
from .models import (
    ATTEMPT_LIVE,
    IN_FLIGHT,
    TERMINAL,
    AttemptStatus,
    Shot,
    Take,
    TakeStatus,
    new_secret,
)
from .reports import State
from .signals import announce, take_ended

log = logging.getLogger(__name__)


class TakeActionError(Exception):
    """A take action was refused; the message says why."""


def _takes():
    return Take.objects.dangerously_unscoped()


def _lock(take_id: uuid.UUID | str) -> Take | None:
    return (
        _takes()
        .select_for_update(of=("self",))
        .select_related("provider", "node")
        .filter(pk=take_id)
        .first()
    )


def _lease(seconds: int | None = None) -> datetime:
    return timezone.now() + timedelta(seconds=seconds or settings.TAKE_LEASE_SECONDS)


def secret_matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def holding_slot(now: datetime | None = None) -> Q:
    """Takes that occupy a slot on their node or at their provider: in flight, or canceled
    while in flight and not yet let go of by the backend (until their lease runs out)."""
    now = now or timezone.now()
    return Q(status__in=IN_FLIGHT) | Q(status=TakeStatus.CANCELED, lease_expires_at__gt=now)


def _current_job(take: Take):
    """The record of the take's current attempt (`workers.ProviderJob`, via `take.jobs`)."""
    return take.jobs.select_for_update().filter(attempt=take.attempts).first()


def _end_job(take: Take, status: str, error: str = "") -> None:
    take.jobs.filter(attempt=take.attempts, status__in=ATTEMPT_LIVE).update(
        status=status, error=error[:2000], finished_at=timezone.now()
    )


def _node_job_delivered(take: Take) -> None:
    """A node delivered: its attempt succeeded, and cost its GPU seconds at the node's rate."""
    job = take.jobs.filter(
        attempt=take.attempts, status__in=ATTEMPT_LIVE, node__isnull=False
    ).first()
    if job is None:
        return
    now = timezone.now()
    seconds = Decimal(max(0.0, (now - job.submitted_at).total_seconds()))
    rate = take.node.cost_per_gpu_second if take.node_id else Decimal(0)
    take.jobs.filter(pk=job.pk).update(
        status=AttemptStatus.SUCCEEDED,
        finished_at=now,
        cost=(rate * seconds).quantize(Decimal("0.0001")),
    )


def release_take_hold(take: Take, reason: str) -> None:
    """Release a take's whole hold (no-op for free takes); safe to call twice."""
    if take.hold_id is not None:
        ledger.release_hold(take.hold_id, idempotency_key=f"take:{take.pk}:release", reason=reason)


def _end(take: Take, status: str, error: str = "", *, keep_slot: bool = False) -> None:
    """Move a locked, live take to failed/canceled/expired and release its hold."""
    was_in_flight = take.status in IN_FLIGHT
    take.status = status
    take.error = error[:2000]
    take.finished_at = timezone.now()
    take.lease_expires_at = _lease() if keep_slot else None
    take.save(update_fields=["status", "error", "finished_at", "lease_expires_at"])
    release_take_hold(take, reason=f"take {status}")
    announce(take_ended, Take, take=take)
    if was_in_flight and not keep_slot:
        enqueue.after_commit(enqueue.DISPATCH)
    digest.take_ended(take)


# Sending -------------------------------------------------------------------------------


def start_attempt(take: Take, target: Any, now: datetime) -> None:
    """Mark a take the dispatcher just claimed (row locked) as sent to `target`, a `Node`
    or a `Provider`, as a new attempt with a fresh secret."""
    is_provider = target.backend_kind != "cog"
    previously_dispatched_at = take.dispatched_at
    take.status = TakeStatus.DISPATCHING
    take.node = None if is_provider else target
    take.provider = target if is_provider else None
    take.attempts += 1
    take.progress = 0
    take.dispatched_at = now
    take.lease_expires_at = now + timedelta(seconds=settings.TAKE_LEASE_SECONDS)
    # A fresh secret per attempt: a node we gave up on cannot report on it any more.
    take.webhook_secret = new_secret()
    take.save(
        update_fields=[
            "status",
            "node",
            "provider",
            "attempts",
            "progress",
            "dispatched_at",
            "lease_expires_at",
            "webhook_secret",
        ]
    )
    queue.record_usage(take, now, previously_dispatched_at)


def requeue(
    take_id: uuid.UUID | str, secret: str, reason: str, *, counts: bool = True
) -> Take | None:
    """Put a take whose attempt could not run back in the queue (another node or route is
    tried first), or fail it when out of attempts. `counts=False` (the node was merely at
    capacity) gives the attempt back. Acts only for the take's current attempt."""
    with transaction.atomic():
        take = _lock(take_id)
        if take is None or take.status not in IN_FLIGHT:
            return None
        if not secret_matches(secret, take.webhook_secret):
            return None
        if counts:
            _end_job(take, AttemptStatus.FAILED_OVER, reason)
        else:  # the attempt is given back: it never ran
            take.jobs.filter(attempt=take.attempts).delete()
        if counts and take.attempts >= settings.TAKE_MAX_ATTEMPTS:
            log.info("take %s failed: out of attempts: %s", take.pk, reason)
            _end(take, TakeStatus.FAILED, f"Gave up after {take.attempts} attempts: {reason}")
            return take
        log.info("take %s back to the queue: %s", take.pk, reason)
        take.status = TakeStatus.QUEUED
        take.previous_node_id = take.node_id
        take.node = None
        take.provider = None
        take.progress = 0
        take.lease_expires_at = None
        if not counts:
            take.attempts -= 1
        take.save(
            update_fields=[
                "status",
                "previous_node",
                "node",
                "provider",
                "progress",
                "lease_expires_at",
                "attempts",
            ]
        )
        return take


def extend_lease(take_id: uuid.UUID | str, secret: str, seconds: int) -> bool:
    """Give a live attempt more time (a poll found its backend silent but not overdue)."""
    return bool(
        _takes()
        .filter(pk=take_id, status__in=IN_FLIGHT, webhook_secret=secret)
        .update(lease_expires_at=_lease(seconds))
    )


# What backends report ------------------------------------------------------------------


def apply_state(
    take_id: uuid.UUID | str, state: State, *, secret: str, calls_back: bool = True
) -> bool:
    """Apply a backend's report to the take's current attempt.

    Returns False if the caller is not that attempt (wrong secret, another job's id);
    True otherwise, even when the report was stale and changed nothing. `calls_back=False`
    (a backend that must be polled) sets the lease to the poll interval.
    """
    with transaction.atomic():
        take = _lock(take_id)
        if take is None or not secret_matches(secret, take.webhook_secret):
            return False
        job = _current_job(take)
        if take.provider_id is not None:
            if job is None or (job.external_id and job.external_id != state.external_id):
                return False
        if take.status == TakeStatus.CANCELED and state.finished:
            _let_go(take)
            return True
        if take.status not in IN_FLIGHT:
            return True
        seconds = settings.TAKE_LEASE_SECONDS if calls_back else settings.PROVIDER_POLL_SECONDS
        if state.status in (reports.QUEUED, reports.RUNNING):
            if state.status == reports.RUNNING:
                take.status = TakeStatus.RUNNING
                take.progress = max(take.progress, state.progress or 0)
                if job is not None:
                    take.jobs.filter(pk=job.pk, status=AttemptStatus.SUBMITTED).update(
                        status=AttemptStatus.RUNNING
                    )
            take.lease_expires_at = _lease(seconds)
            take.save(update_fields=["status", "progress", "lease_expires_at"])
        elif state.status == reports.SUCCEEDED:
            _accept_output(take, job, state)
        elif state.status == reports.BLOCKED:
            _end_job(take, AttemptStatus.BLOCKED, state.error)
            where = take.provider.name if take.provider_id else "the backend"
            _end(take, TakeStatus.FAILED, f"Blocked by {where}'s moderation: {state.error}")
        elif state.status in (reports.FAILED, reports.CANCELED):
            failed = state.status == reports.FAILED
            _end_job(take, AttemptStatus.FAILED if failed else AttemptStatus.CANCELED, state.error)
            reason = state.error or f"The provider reported the job {state.status}."
            if take.provider_id is not None:
                reason = f"{take.provider.name}: {reason}"
            log.info("take %s failed: %s", take.pk, reason)
            _end(take, TakeStatus.FAILED, reason)
        return True


def _accept_output(take: Take, job, state: State) -> None:
    if state.output_data is not None:
        old = take.output_original
        take.output_original = default_storage.save(
            f"takes/{take.pk}/original.mp4", ContentFile(state.output_data)
        )
        if old:
            transaction.on_commit(lambda: default_storage.delete(old))
        _finalize(take)
    elif state.output_stored:
        if not take.output_original:
            _end(take, TakeStatus.FAILED, "The node reported an output it never uploaded.")
            return
        _finalize(take)
    elif state.output_url and job is not None:
        # A provider's URL expires: copy it into storage first (`collect_provider_output`).
        if job.status in ATTEMPT_LIVE:
            cost = take.provider.cost_of(take.duration_seconds)
            take.jobs.filter(pk=job.pk).update(
                status=AttemptStatus.SUCCEEDED,
                output_url=state.output_url,
                cost=cost,
                finished_at=timezone.now(),
            )
            _takes().filter(pk=take.pk).update(provider_cost=F("provider_cost") + cost)
        take.status = TakeStatus.RUNNING
        take.progress = 99
        take.lease_expires_at = _lease()
        take.save(update_fields=["status", "progress", "lease_expires_at"])
        enqueue.after_commit(enqueue.COLLECT, str(take.pk))
    else:
        _end(take, TakeStatus.FAILED, "The backend reported success without an output.")


def _finalize(take: Take) -> None:
    _node_job_delivered(take)
    take.status = TakeStatus.FINALIZING
    take.progress = 100
    take.lease_expires_at = _lease()
    take.save(update_fields=["status", "progress", "lease_expires_at", "output_original"])
    enqueue.after_commit(enqueue.SETTLE, str(take.pk))
    enqueue.after_commit(enqueue.DISPATCH)  # its slot is free


def output_collected(take_id: uuid.UUID | str, secret: str, name: str) -> bool:
    """A provider's output is in storage as `name`: hand the take to settlement. If the
    take moved on meanwhile, the copy is deleted and nothing changes."""
    with transaction.atomic():
        take = _lock(take_id)
        if (
            take is None
            or take.status not in IN_FLIGHT
            or not secret_matches(secret, take.webhook_secret)
        ):
            transaction.on_commit(lambda: default_storage.delete(name))
            return False
        old = take.output_original
        take.output_original = name
        if old and old != name:
            transaction.on_commit(lambda: default_storage.delete(old))
        _finalize(take)
        return True


def attach_upload(take_id: uuid.UUID | str, node_ids: list[int], name: str, *, secret: str) -> bool:
    """A node PUT the output of a take it runs to ingest, stored as `name`: remember it
    (the completed webhook then finalizes the take). False, and the file is deleted, if
    the take is not live on one of `node_ids` any more, or `secret` is not its current
    attempt's."""
    with transaction.atomic():
        take = _lock(take_id)
        if (
            take is None
            or not secret_matches(secret, take.webhook_secret)
            or take.node_id not in node_ids
            or take.status not in IN_FLIGHT
        ):
            transaction.on_commit(lambda: default_storage.delete(name))
            return False
        old = take.output_original
        take.output_original = name
        take.save(update_fields=["output_original"])
        if old:
            transaction.on_commit(lambda: default_storage.delete(old))
        return True


def attach_preview(take_id: uuid.UUID | str, node_ids: list[int], name: str) -> bool:
    """A node sent a live preview of a take it runs, stored as `name`: keep it as the
    take's latest (the previous one is deleted). False, and the file is deleted, if the
    take is not live on one of `node_ids` any more."""
    with transaction.atomic():
        take = _lock(take_id)
        if take is None or take.node_id not in node_ids or take.status not in IN_FLIGHT:
            transaction.on_commit(lambda: default_storage.delete(name))
            return False
        old = take.live_preview
        take.live_preview = name
        take.live_preview_at = timezone.now()
        take.save(update_fields=["live_preview", "live_preview_at"])
        if old:
            transaction.on_commit(lambda: default_storage.delete(old))
        return True


def succeed(take_id: uuid.UUID | str, info: Any, *, poster: str, preview: str, video: str):
    """Charge a finalizing take for the seconds it measured (`info`, a `MediaInfo`) and
    mark it succeeded; None if it was not finalizing any more (its files are deleted)."""
    with transaction.atomic():
        take = _takes().select_for_update().get(pk=take_id)
        if take.status != TakeStatus.FINALIZING:
            for name in {poster, preview, video} - {take.output_original}:
                transaction.on_commit(lambda name=name: default_storage.delete(name))
            return None
        charge = Quote.from_dict(take.quote).charge_for(info.duration_seconds)
        if take.hold_id is not None:
            hold = ledger.settle_hold(
                take.hold_id, charge, idempotency_key=f"take:{take.pk}:settle"
            )
            charge = hold.charged
        else:
            charge = 0
        take.status = TakeStatus.SUCCEEDED
        take.charged = charge
        take.output_original = video
        take.output_poster = poster
        take.output_preview = preview
        take.measured_duration = info.duration_seconds
        take.measured_fps = info.fps
        take.measured_width = info.width
        take.measured_height = info.height
        take.measured_codec = info.codec
        take.finished_at = timezone.now()
        take.lease_expires_at = None
        take.save()
        if take.draft_of_id:
            # A finalized draft is what the creator chose: it becomes the shot's take.
            Shot.objects.dangerously_unscoped().filter(pk=take.shot_id).update(chosen_take=take)
        announce(take_ended, Take, take=take)
        log.info("take %s delivered %.2fs, charged %d", take.pk, info.duration_seconds, charge)
        digest.take_ended(take)
        return take


# Ending without delivery ---------------------------------------------------------------


def fail_take(
    take_id: uuid.UUID | str,
    error: str,
    *,
    secret: str | None = None,
    attempt_status: str = AttemptStatus.FAILED,
) -> Take | None:
    """Fail a live take and release its hold. With `secret`, only if that is still the
    take's current attempt. Returns the take if this call ended it."""
    with transaction.atomic():
        take = _lock(take_id)
        if take is None or take.status in TERMINAL:
            return None
        if secret is not None and not secret_matches(secret, take.webhook_secret):
            return None
        log.info("take %s failed: %s", take.pk, error)
        _end_job(take, attempt_status, error)
        _end(take, TakeStatus.FAILED, error)
        return take


def cancel_take(take: Take) -> Take:
    """Cancel a take that has not delivered yet. One already sent is also stopped at its
    backend, and keeps its slot there until the backend lets go of it."""
    with transaction.atomic():
        locked = _lock(take.pk)
        if locked.status not in (TakeStatus.QUEUED, *IN_FLIGHT):
            if locked.status == TakeStatus.CANCELED:
                return locked
            raise TakeActionError(
                _("This take can no longer be canceled (it is %(status)s).")
                % {"status": locked.get_status_display().lower()}
            )
        sent = locked.status in IN_FLIGHT
        _end_job(locked, AttemptStatus.CANCELED, "canceled by the user")
        _end(locked, TakeStatus.CANCELED, display.CANCELED, keep_slot=sent)
        if sent:
            enqueue.after_commit(enqueue.CANCEL, str(locked.pk))
        return locked


def _let_go(take: Take) -> None:
    if take.lease_expires_at is not None:
        take.lease_expires_at = None
        take.save(update_fields=["lease_expires_at"])
        enqueue.after_commit(enqueue.DISPATCH)  # its slot is free


def confirm_cancel(take_id: uuid.UUID | str) -> bool:
    """The backend let go of a canceled take: free its slot. False if it held none."""
    with transaction.atomic():
        take = _lock(take_id)
        if take is None or take.status != TakeStatus.CANCELED or take.lease_expires_at is None:
            return False
        _let_go(take)
        return True


def expire_overdue_takes(now: datetime | None = None) -> int:
    """Expire queued off-peak takes whose deadline passed without their starting."""
    now = now or timezone.now()
    ids = list(
        _takes().filter(status=TakeStatus.QUEUED, deadline__lte=now).values_list("pk", flat=True)
    )
    expired = 0
    for take_id in ids:
        with transaction.atomic():
            take = _lock(take_id)
            if take is None or take.status != TakeStatus.QUEUED:
                continue
            _end(take, TakeStatus.EXPIRED, display.NOT_STARTED)
            expired += 1
    return expired
