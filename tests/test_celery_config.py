from django.conf import settings

from config.celery import app


def test_queues_are_declared():
    names = {queue.name for queue in app.conf.task_queues}
    assert {"dispatch", "media", "billing", "default"} <= names


def test_production_safe_delivery_settings():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1


def test_redis_visibility_timeout_exceeds_longest_task_time_limit():
    assert app.conf.broker_url.startswith("redis://")
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    assert visibility > settings.CELERY_TASK_TIME_LIMIT
    assert app.conf.task_time_limit == settings.CELERY_TASK_TIME_LIMIT


def test_every_beat_entry_names_a_registered_task():
    app.loader.import_default_modules()
    for name, entry in app.conf.beat_schedule.items():
        assert entry["task"] in app.tasks, f"beat entry {name} names unknown task {entry['task']}"
