"""Celery tasks of the public API: webhook delivery and its sweeper."""

from __future__ import annotations

from celery import shared_task

from . import webhooks


@shared_task(ignore_result=True)
def deliver_webhook(delivery_id: str) -> None:
    webhooks.attempt(delivery_id)


@shared_task(ignore_result=True)
def requeue_webhook_deliveries() -> int:
    return webhooks.requeue_due()
