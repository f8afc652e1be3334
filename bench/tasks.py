"""A no-op task for the dispatch benchmark's baseline: one Celery round trip on the same
broker (the worker is started with `--include bench.tasks`)."""

from __future__ import annotations

import redis
from celery import shared_task
from django.conf import settings


@shared_task(name="bench.tasks.ping", queue="dispatch")
def ping(key: str) -> None:
    redis.Redis.from_url(settings.REDIS_URL).rpush(key, "1")
