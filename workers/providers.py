"""Takes on upstream providers: submit, follow (webhook or poll), collect, cancel.

The provider counterpart of `send_to_node` and `callbacks.apply_prediction`. A take's
current attempt at a provider is the `ProviderJob` with its attempt number; webhooks carry
the attempt's secret in their URL (and Replicate's are signed as well), and a state is
applied only to the take's current job while the take is live there, so a late, replayed
or forged report changes nothing.

Outputs are copied into storage at once (provider URLs expire) by `collect_output` on the
media queue, then probed and charged by the same settlement as node outputs: on the
platform's own measurement. The provider's cost of a delivered clip is recorded on the job
and added to the take once.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from datetime import timedelta

import httpx
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from generation.lifecycle import fail_take
from generation.models import ACTIVE_ON_NODE, Route, Take, TakeStatus

from . import media
from .backends import (
    BackendError,
    ModerationBlocked,
    PermanentBackendError,
    TransientBackendError,
)
from .backends.upstream import (
    BLOCKED,
    CANCELED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    JobRef,
    JobRequest,
    JobState,
    backend_for,
)
from .callbacks import _after_commit_dispatch, _fail_locked
from .credentials import CredentialError
from .dispatch import requeue
from .models import JOB_LIVE, JobStatus, Provider, ProviderJob

log = logging.getLogger(__name__)
CHUNK = 1024 * 1024


def _jobs():
    return ProviderJob.objects.dangerously_unscoped()


def webhook_url(take: Take) -> str:
    path = reverse("provider_webhook", args=[take.pk, take.webhook_secret])
    return f"{settings.PUBLIC_BASE_URL}{path}"


def job_request(take: Take, route: Route, *, with_webhook: bool = True) -> JobRequest:
    """The take's parameters in the shape every provider backend maps from."""
    shot = take.shot
    return JobRequest(
        attempt_id=f"{take.pk}-{take.attempts}",
        model=route.provider_model,
        prompt=shot.prompt,
        negative_prompt=shot.negative_prompt,
        seed=take.seed,
        resolution=take.resolution,
        aspect_ratio=take.aspect_ratio,
        width=take.width,
        height=take.height,
        duration=take.duration_seconds,
        fps=take.fps,
        image=media.data_url(shot.reference_image) if shot.reference_image else None,
        webhook_url=webhook_url(take) if with_webhook else "",
        extra=dict(route.extra_input or {}),
    )


def _ref(take: Take, job: ProviderJob) -> JobRef:
    route = Route.objects.get(video_model_id=take.video_model_id, provider_id=job.provider_id)
    return JobRef(job.external_id, route.provider_model, bool(take.shot.reference_image))


def _end_job(job_id: int, status: str, error: str = "") -> None:
    _jobs().filter(pk=job_id, status__in=JOB_LIVE).update(
        status=status, error=error[:2000], finished_at=timezone.now()
    )


def _lease(provider: Provider) -> timedelta:
    from .backends.upstream import backend_class

    polled = not backend_class(provider.kind).has_webhooks
    return timedelta(
        seconds=settings.PROVIDER_POLL_SECONDS if polled else settings.TAKE_LEASE_SECONDS
    )


def send_to_provider(take: Take) -> None:
    """Submit a claimed take to its provider; the outcome comes by webhook or poll."""
    provider = take.provider
    route = Route.objects.get(video_model_id=take.video_model_id, provider=provider)
    job = _jobs().create(
        take=take, provider=provider, attempt=take.attempts, submitted_at=timezone.now()
    )
    try:
        with backend_for(provider) as backend:
            state = backend.submit(job_request(take, route, with_webhook=backend.has_webhooks))
    except ModerationBlocked as exc:
        _end_job(job.pk, JobStatus.BLOCKED, str(exc))
        fail_take(take.pk, f"Blocked by {provider.name}'s moderation: {exc}")
    except (TransientBackendError, CredentialError) as exc:
        _end_job(job.pk, JobStatus.FAILED_OVER, str(exc))
        requeue(take.pk, None, str(exc), provider_id=provider.pk)
    except PermanentBackendError as exc:
        _end_job(job.pk, JobStatus.FAILED, str(exc))
        fail_take(take.pk, str(exc))
    else:
        _jobs().filter(pk=job.pk).update(external_id=state.external_id)
        apply_job_state(take.pk, state)


def _current_job(take: Take) -> ProviderJob | None:
    if take.provider_id is None:
        return None
    return (
        _jobs()
        .select_for_update()
        .filter(take=take, attempt=take.attempts, provider_id=take.provider_id)
        .first()
    )


def apply_job_state(
    take_id: uuid.UUID | str, state: JobState, *, secret: str | None = None
) -> bool:
    """Apply a provider's report to the take's current job. False if the caller is not
    that job (wrong secret, another job's id); True otherwise, even if nothing changed."""
    with transaction.atomic():
        take = (
            Take.objects.dangerously_unscoped()
            .select_for_update(of=("self",))
            .select_related("provider")
            .filter(pk=take_id)
            .first()
        )
        if take is None:
            return False
        if secret is not None:
            from .callbacks import secret_matches

            if not secret_matches(secret, take.webhook_secret):
                return False
        job = _current_job(take)
        if job is None or (job.external_id and job.external_id != state.external_id):
            return False
        if take.status not in ACTIVE_ON_NODE:
            return True
        now = timezone.now()
        if state.status in (QUEUED, RUNNING):
            if state.status == RUNNING:
                take.status = TakeStatus.RUNNING
                take.progress = max(take.progress, state.progress or 0)
                _jobs().filter(pk=job.pk, status=JobStatus.SUBMITTED).update(
                    status=JobStatus.RUNNING
                )
            take.lease_expires_at = now + _lease(take.provider)
            take.save(update_fields=["status", "progress", "lease_expires_at"])
        elif state.status == SUCCEEDED:
            _accept(take, job, state, now)
        elif state.status == BLOCKED:
            _end_job(job.pk, JobStatus.BLOCKED, state.error)
            _fail_locked(take, f"Blocked by {take.provider.name}'s moderation: {state.error}")
        elif state.status in (FAILED, CANCELED):
            status = JobStatus.FAILED if state.status == FAILED else JobStatus.CANCELED
            _end_job(job.pk, status, state.error)
            reason = state.error or f"The provider reported the job {state.status}."
            _fail_locked(take, f"{take.provider.name}: {reason}")
        return True


def _accept(take: Take, job: ProviderJob, state: JobState, now) -> None:
    """Record the delivered job (and its cost, once) and have its output collected."""
    if job.status in JOB_LIVE:
        cost = take.provider.cost_of(take.duration_seconds)
        _jobs().filter(pk=job.pk).update(
            status=JobStatus.SUCCEEDED, output_url=state.output_url, cost=cost, finished_at=now
        )
        Take.objects.dangerously_unscoped().filter(pk=take.pk).update(
            provider_cost=F("provider_cost") + cost
        )
    take.status = TakeStatus.RUNNING
    take.progress = 99
    take.lease_expires_at = now + timedelta(seconds=settings.TAKE_LEASE_SECONDS)
    take.save(update_fields=["status", "progress", "lease_expires_at"])
    from .tasks import collect_provider_output

    take_id = str(take.pk)
    transaction.on_commit(lambda: collect_provider_output.delay(take_id))


def _download(url: str, name: str) -> str:
    """Stream a provider's output into storage; raises a backend error if it cannot."""
    limit = settings.PROVIDER_OUTPUT_MAX_BYTES
    with tempfile.TemporaryFile() as spool:
        size = 0
        try:
            with httpx.stream(
                "GET", url, timeout=settings.PROVIDER_TIMEOUT_SECONDS, follow_redirects=True
            ) as response:
                if response.status_code >= 500:
                    raise TransientBackendError(f"output download: {response.status_code}")
                if response.status_code >= 400:
                    raise PermanentBackendError(
                        f"the provider's output URL answered {response.status_code}"
                    )
                for chunk in response.iter_bytes(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise PermanentBackendError("the provider's output is too large")
                    spool.write(chunk)
        except httpx.HTTPError as exc:
            raise TransientBackendError(f"output download failed ({exc})") from exc
        spool.seek(0)
        return default_storage.save(name, File(spool))


def collect_output(take_id: uuid.UUID | str) -> bool:
    """Copy a delivered job's output into storage and hand the take to settlement."""
    take = Take.objects.dangerously_unscoped().filter(pk=take_id).first()
    if take is None or take.status not in ACTIVE_ON_NODE or take.provider_id is None:
        return False
    job = (
        _jobs()
        .filter(take=take, attempt=take.attempts, provider_id=take.provider_id)
        .filter(status=JobStatus.SUCCEEDED)
        .first()
    )
    if job is None:
        return False
    try:
        name = _download(job.output_url, f"takes/{take.pk}/original.mp4")
    except PermanentBackendError as exc:
        fail_take(take.pk, f"Could not copy the output from {take.provider}: {exc}")
        return False
    except TransientBackendError as exc:
        log.warning("take %s: output not collected yet: %s", take.pk, exc)
        return False
    with transaction.atomic():
        locked = Take.objects.dangerously_unscoped().select_for_update().get(pk=take.pk)
        if (
            locked.status not in ACTIVE_ON_NODE
            or locked.attempts != take.attempts
            or locked.provider_id != take.provider_id
        ):
            transaction.on_commit(lambda: default_storage.delete(name))
            return False
        old = locked.output_original
        locked.output_original = name
        locked.status = TakeStatus.FINALIZING
        locked.progress = 100
        locked.lease_expires_at = timezone.now() + timedelta(seconds=settings.TAKE_LEASE_SECONDS)
        locked.save(update_fields=["output_original", "status", "progress", "lease_expires_at"])
        if old and old != name:
            transaction.on_commit(lambda: default_storage.delete(old))
        from .tasks import process_take_output

        transaction.on_commit(lambda: process_take_output.delay(str(take.pk)))
        _after_commit_dispatch()
    return True


def poll_take(take: Take) -> None:
    """The sweeper's look at a provider take whose lease ran out (no webhook came)."""
    job = _jobs().filter(take=take, attempt=take.attempts, provider_id=take.provider_id).first()
    provider = take.provider
    if job is None or not job.external_id:
        requeue(take.pk, None, "never reached its provider", provider_id=provider.pk)
        return
    if job.status == JobStatus.SUCCEEDED:
        from .tasks import collect_provider_output

        collect_provider_output.delay(str(take.pk))
        return
    overdue = timezone.now() - job.submitted_at > timedelta(
        seconds=settings.PROVIDER_MAX_RUNTIME_SECONDS
    )
    try:
        with backend_for(provider) as backend:
            state = backend.status(_ref(take, job))
            if overdue and not state.finished:
                backend.cancel(_ref(take, job))
    except (TransientBackendError, CredentialError) as exc:
        log.warning("take %s: %s did not answer a poll: %s", take.pk, provider, exc)
        if not overdue:
            _extend(take, provider)
            return
        state = JobState(job.external_id, RUNNING)
    except PermanentBackendError as exc:
        _end_job(job.pk, JobStatus.FAILED, str(exc))
        fail_take(take.pk, str(exc))
        return
    if overdue and not state.finished:
        _end_job(job.pk, JobStatus.FAILED_OVER, "ran past PROVIDER_MAX_RUNTIME_SECONDS")
        requeue(take.pk, None, f"{provider} took too long", provider_id=provider.pk)
        return
    apply_job_state(take.pk, state)


def _extend(take: Take, provider: Provider) -> None:
    Take.objects.dangerously_unscoped().filter(pk=take.pk, status__in=ACTIVE_ON_NODE).update(
        lease_expires_at=timezone.now() + _lease(provider)
    )


def cancel_job(provider_id: int, take_id: str) -> bool:
    """Stop a canceled take's job at its provider (best effort; Kling cannot)."""
    job = _jobs().filter(take_id=take_id, provider_id=provider_id).order_by("-attempt").first()
    if job is None or not job.external_id or job.status not in JOB_LIVE:
        return False
    take = Take.objects.dangerously_unscoped().get(pk=take_id)
    _end_job(job.pk, JobStatus.CANCELED, "canceled by the user")
    try:
        with backend_for(job.provider) as backend:
            return backend.cancel(_ref(take, job))
    except (BackendError, CredentialError):
        return False
