"""Copying a provider's delivered output into storage (provider URLs expire).

Runs on the media queue (`collect_provider_output`) once the lifecycle has recorded a
provider job as succeeded; the copy is then handed back to the lifecycle
(`output_collected`), which finalizes the take for the same settlement as node outputs: on
the platform's own measurement.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid

import httpx
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

from generation import lifecycle
from generation.models import IN_FLIGHT, Take

from . import outbound
from .backends import PermanentBackendError, TransientBackendError
from .models import JobStatus, ProviderJob

log = logging.getLogger(__name__)
CHUNK = 1024 * 1024


def _download(url: str, name: str) -> str:
    """Stream a provider's output into storage; raises a backend error if it cannot."""
    limit = settings.PROVIDER_OUTPUT_MAX_BYTES
    deadline = time.monotonic() + settings.PROVIDER_OUTPUT_MAX_SECONDS
    with tempfile.TemporaryFile() as spool:
        size = 0
        try:
            with outbound.stream_get(url, timeout=settings.PROVIDER_TIMEOUT_SECONDS) as response:
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
                    if time.monotonic() > deadline:
                        raise TransientBackendError("output download took too long")
                    spool.write(chunk)
        except outbound.UnsafeURL as exc:
            raise PermanentBackendError(f"the provider's output URL is refused: {exc}") from exc
        except httpx.HTTPError as exc:
            raise TransientBackendError(f"output download failed ({exc})") from exc
        spool.seek(0)
        return default_storage.save(name, File(spool))


def collect_output(take_id: uuid.UUID | str) -> bool:
    """Copy a delivered job's output into storage and hand the take to settlement."""
    take = Take.objects.dangerously_unscoped().select_related("provider").filter(pk=take_id).first()
    if take is None or take.status not in IN_FLIGHT or take.provider_id is None:
        return False
    job = (
        ProviderJob.objects.dangerously_unscoped()
        .filter(take=take, attempt=take.attempts, provider_id=take.provider_id)
        .filter(status=JobStatus.SUCCEEDED)
        .first()
    )
    if job is None:
        return False
    try:
        name = _download(job.output_url, f"takes/{take.pk}/original.mp4")
    except PermanentBackendError as exc:
        lifecycle.fail_take(
            take.pk,
            f"Could not copy the output from {take.provider}: {exc}",
            secret=take.webhook_secret,
        )
        return False
    except TransientBackendError as exc:
        log.warning("take %s: output not collected yet: %s", take.pk, exc)
        return False
    return lifecycle.output_collected(take.pk, take.webhook_secret, name)
