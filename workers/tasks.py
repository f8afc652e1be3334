"""Celery tasks: thin edges that load by id and call an action.

Messages carry ids only; every task is safe to run twice (the row says what is left).
Other modules enqueue these by name through `config.enqueue`, never by importing this one.
"""

from __future__ import annotations

from celery import shared_task

from generation import digest, roughcut

from . import dispatch, providers, settlement, sweeper


@shared_task(name="workers.tasks.dispatch_takes")
def dispatch_takes() -> int:
    """Send queued takes to free slots (on submit, when a slot frees, and from beat)."""
    return dispatch.dispatch_pending()


@shared_task(name="workers.tasks.process_take_output")
def process_take_output(take_id: str) -> bool:
    """Probe, make poster/preview/watermark and charge a delivered take."""
    settled = settlement.settle_take(take_id) is not None
    dispatch_takes.delay()
    return settled


@shared_task(name="workers.tasks.collect_provider_output")
def collect_provider_output(take_id: str) -> bool:
    """Copy a provider's output into storage at once (its URL expires), then settle it."""
    return providers.collect_output(take_id)


@shared_task(name="workers.tasks.cancel_attempt")
def cancel_attempt(take_id: str) -> bool:
    """Stop a canceled take at its node or provider; its slot frees when that is done."""
    return dispatch.cancel_attempt(take_id)


@shared_task(name="workers.tasks.sweep_takes")
def sweep_takes() -> dict[str, int]:
    """Re-drive takes whose lease ran out and expire overdue off-peak takes."""
    result = sweeper.sweep()
    dispatch_takes.delay()
    return result


@shared_task(name="workers.tasks.check_nodes")
def check_nodes() -> dict[str, str]:
    """Health-check every node; mark them down or up again."""
    return sweeper.check_nodes()


@shared_task(name="workers.tasks.render_rough_cut")
def render_rough_cut(cut_id: str) -> bool:
    """Join a project's chosen takes into one MP4 and its timelines (.otio, EDL, FCP XML)."""
    return roughcut.render_rough_cut(cut_id) is not None


@shared_task(name="workers.tasks.send_batch_digest")
def send_batch_digest(submission_id: str) -> bool:
    """E-mail a finished batch's summary to its author, once (if they asked for it)."""
    return digest.send_batch_digest(submission_id)
