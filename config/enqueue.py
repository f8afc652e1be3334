"""Run a Celery task once the current transaction commits, naming the task by its name.

Every "do this after the row is saved" in the apps goes through `after_commit`, so a module
that only wants work done later (the take lifecycle, submission) never imports the module
that defines the task: `workers.tasks` imports the whole workers app, and importing it from
`generation` is what tied the two apps in a circle. This module imports nothing from the
apps. Messages carry ids only.
"""

from __future__ import annotations

from typing import Any

from celery import current_app
from django.db import transaction

DISPATCH = "workers.tasks.dispatch_takes"
SETTLE = "workers.tasks.process_take_output"
COLLECT = "workers.tasks.collect_provider_output"
CANCEL = "workers.tasks.cancel_attempt"
ROUGH_CUT = "workers.tasks.render_rough_cut"
BATCH_DIGEST = "workers.tasks.send_batch_digest"


def send(task: str, *args: Any) -> None:
    """Enqueue `task` now. The registered task object is used when this process has it
    (so eager mode and tests that replace `.delay` see the call); else it is sent by name."""
    registered = current_app.tasks.get(task)
    if registered is None:
        current_app.loader.import_default_modules()
        registered = current_app.tasks.get(task)
    if registered is None:
        current_app.send_task(task, args=args)
    else:
        registered.delay(*args)


def after_commit(task: str, *args: Any) -> None:
    """Enqueue `task` when the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: send(task, *args))
