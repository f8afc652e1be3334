"""Celery tasks of the public API: webhook delivery and its sweeper, and the purge of old
idempotent responses."""

from __future__ import annotations

from celery import shared_task

from . import idempotency, webhooks


@shared_task(ignore_result=True)
def deliver_webhook(delivery_id: str) -> None:
    webhooks.attempt(delivery_id)


@shared_task(ignore_result=True)
def requeue_webhook_deliveries() -> int:
    return webhooks.requeue_due()


@shared_task(ignore_result=True)
def purge_idempotent_responses() -> int:
    return idempotency.purge_expired()
