"""The batch digest: one e-mail when a long batch of takes has ended, for those who ask.

A batch is one submission (one press of Generate) with several takes, or with off-peak
takes (which may wait hours for their window). A user opts in on their notifications page
(`accounts.UserSettings.batch_digest_email`, off by default). When a take of an opted-in
user's batch ends, the lifecycle enqueues `workers.tasks.send_batch_digest` on commit
(`take_ended`); the task sends the e-mail only once every take of the batch has ended, and
only once per batch: the submission row is locked and stamped (`digest_sent_at`) in the
transaction that sends it, so a retried task or two takes ending together send one e-mail.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation

from accounts.models import UserSettings
from billing.pricing import Mode
from config import enqueue

from .models import TERMINAL, Submission, Take, TakeStatus

log = logging.getLogger(__name__)


def wants_digest(user_id: int | None) -> bool:
    return (
        user_id is not None
        and UserSettings.objects.filter(user_id=user_id, batch_digest_email=True).exists()
    )


def take_ended(take: Take) -> None:
    """Called by the lifecycle when `take` reaches a terminal status (inside its transaction)."""
    if wants_digest(take.submitted_by_id):
        enqueue.after_commit(enqueue.BATCH_DIGEST, str(take.submission_id))


def is_batch(takes: list[Take]) -> bool:
    return len(takes) > 1 or any(t.mode == Mode.OFF_PEAK for t in takes)


def send_batch_digest(submission_id: uuid.UUID | str | int) -> bool:
    """E-mail the batch's summary if it has ended and none was sent; True if this call sent it."""
    with transaction.atomic():
        submission = (
            Submission.objects.dangerously_unscoped()
            .select_for_update()
            .filter(pk=submission_id, digest_sent_at__isnull=True)
            .first()
        )
        if submission is None:
            return False
        takes = list(
            Take.objects.dangerously_unscoped()
            .filter(submission=submission)
            .select_related("shot__project", "submitted_by")
            .order_by("created_at", "seed")
        )
        if not takes or not is_batch(takes) or any(t.status not in TERMINAL for t in takes):
            return False
        user = takes[0].submitted_by
        preferences = UserSettings.objects.filter(user=user, batch_digest_email=True).first()
        if user is None or not user.email or preferences is None:
            return False
        subject, body = render_digest(takes, preferences.email_language)
        submission.digest_sent_at = timezone.now()
        submission.save(update_fields=["digest_sent_at"])
        # Sent inside the transaction: if sending fails, the stamp rolls back with it and the
        # next take's end (or a retry) sends it again.
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email])
    log.info("batch digest for submission %s sent to user %s", submission.pk, user.pk)
    return True


def render_digest(takes: list[Take], language: str) -> tuple[str, str]:
    """The subject and plain-text body, in the language the user chose the setting in."""
    counts = Counter(t.status for t in takes)
    shots = list({t.shot_id: t.shot for t in takes}.values())
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    with translation.override(language or settings.LANGUAGE_CODE):
        context = {
            "site_name": settings.SITE_NAME,
            "count": len(takes),
            "statuses": [
                (TakeStatus(status).label, counts[status])
                for status in TakeStatus.values
                if counts[status]
            ],
            "charged": sum(t.charged for t in takes),
            "off_peak": any(t.mode == Mode.OFF_PEAK for t in takes),
            "shots": [
                {
                    "shot": shot,
                    "project": shot.project,
                    "url": f"{base}{reverse('studio')}?shot={shot.pk}",
                }
                for shot in shots
            ],
            "settings_url": f"{base}{reverse('notification_settings')}",
        }
        subject = render_to_string("generation/email/batch_digest_subject.txt", context)
        body = render_to_string("generation/email/batch_digest_body.txt", context)
    return " ".join(subject.split()), body
