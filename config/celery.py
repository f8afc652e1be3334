"""The Celery app: queues, routing and the beat schedule, all in code.

Messages carry ids only; the database row is the truth. Tasks are acknowledged late and
rejected back to the queue when a worker dies, and attempt counts live on the rows they
drive (a redelivered message re-reads the row and finds the work done or still due).
"""

import os

from celery import Celery
from celery.signals import beat_init, worker_init
from django.conf import settings
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("retake")
app.config_from_object("django.conf:settings", namespace="CELERY")

app.conf.task_queues = [Queue(name) for name in ("dispatch", "media", "billing", "default")]
app.conf.task_default_queue = "default"
app.conf.task_routes = {
    "workers.tasks.dispatch_*": {"queue": "dispatch"},
    "workers.tasks.process_*": {"queue": "media"},
    "workers.tasks.collect_*": {"queue": "media"},
    "workers.tasks.render_*": {"queue": "media"},
    "billing.tasks.*": {"queue": "billing"},
}
app.conf.broker_connection_retry_on_startup = True


@worker_init.connect
@beat_init.connect
def _refuse_embedded_secrets(**kwargs) -> None:
    from config.startup import refuse_embedded_secrets

    refuse_embedded_secrets()


app.conf.worker_hijack_root_logger = False

# Beat: the sweepers. Each entry names a task that exists; later issues add theirs here.
app.conf.beat_schedule = {
    "dispatch-takes": {
        "task": "workers.tasks.dispatch_takes",
        "schedule": settings.DISPATCH_INTERVAL_SECONDS,
    },
    "sweep-takes": {
        "task": "workers.tasks.sweep_takes",
        "schedule": settings.SWEEP_INTERVAL_SECONDS,
    },
    "check-nodes": {
        "task": "workers.tasks.check_nodes",
        "schedule": settings.SWEEP_INTERVAL_SECONDS,
    },
    "purge-expired-invitations": {
        "task": "accounts.tasks.purge_expired_invitations",
        "schedule": 3600.0,
    },
    # Billing: every grant is keyed, so running these often is harmless and catches up
    # quickly after downtime (a day's free credits arrive within minutes of midnight).
    "billing-expire-lots": {"task": "billing.tasks.expire_lots", "schedule": 60.0},
    "billing-roll-over-subscriptions": {
        "task": "billing.tasks.roll_over_subscriptions",
        "schedule": 300.0,
    },
    "billing-grant-plan-period-credits": {
        "task": "billing.tasks.grant_plan_period_credits",
        "schedule": 600.0,
    },
    "billing-grant-daily-free-credits": {
        "task": "billing.tasks.grant_daily_free_credits",
        "schedule": 600.0,
    },
    "billing-downgrade-past-due-subscriptions": {
        "task": "billing.tasks.downgrade_past_due_subscriptions",
        "schedule": 3600.0,
    },
    "api-requeue-webhook-deliveries": {
        "task": "api.tasks.requeue_webhook_deliveries",
        "schedule": 300.0,
    },
    "api-purge-idempotent-responses": {
        "task": "api.tasks.purge_idempotent_responses",
        "schedule": 3600.0,
    },
    "billing-requeue-stale-stripe-events": {
        "task": "billing.tasks.requeue_stale_stripe_events",
        "schedule": 600.0,
    },
}

app.autodiscover_tasks()
