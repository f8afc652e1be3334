"""`Idempotency-Key` on creating calls: the same key and body replay the first response
byte for byte; the same key with another body is refused with 409.

The take itself is made idempotent by `submit_takes` (one submission per key, unique in
the database), so racing requests make one take and one hold. A rough cut has no such key
of its own: its view `store`s the response in the transaction that creates the cut, so a
racer waits on the unique key and rolls its cut back (one cut, one render). This module
keeps the first response so every racer, and every later retry, answers the same body, for
`API_IDEMPOTENCY_RETENTION_HOURS` (24 h, as Stripe keeps keys); `purge_expired` (beat)
deletes older responses. A key reused after that still makes no second take (the
submission remembers its key for good): the takes it made are answered as they are now.
A rough cut's key lasts only the retention: after it, the same key starts a new export.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from .errors import ApiError
from .models import IdempotentResponse

MAX_KEY_CHARS = 200
PURGE_BATCH = 1000


def fingerprint(request, data: dict) -> str:
    """Method, path and the request's content (files by their bytes' digest)."""
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    plain, files = {}, {}
    for name, value in data.items():
        if hasattr(value, "read"):
            value.seek(0)
            files[name] = hashlib.sha256(value.read()).hexdigest()
            value.seek(0)
        else:
            plain[name] = value
    digest.update(json.dumps([plain, files], sort_keys=True, default=str).encode())
    return digest.hexdigest()


def header_key(request) -> str:
    key = (request.headers.get("Idempotency-Key") or "").strip()
    if len(key) > MAX_KEY_CHARS or "\x00" in key:
        raise ApiError(
            _("An Idempotency-Key is at most %(n)d characters.") % {"n": MAX_KEY_CHARS},
            "Idempotency-Key",
        )
    return key


def begin(request, workspace) -> tuple[str, str, HttpResponse | None]:
    """(key, fingerprint, the stored answer to replay or None) for a create: the key of the
    request's Idempotency-Key header ("" without one) and its body's fingerprint."""
    key = header_key(request)
    if not key:
        return "", "", None
    print_ = fingerprint(request, request.data)
    return key, print_, replay(workspace, key, print_)


def replay(workspace, key: str, print_: str) -> Response | None:
    stored = IdempotentResponse.objects.for_workspace(workspace).filter(key=key).first()
    if stored is None:
        return None
    if stored.fingerprint != print_:
        raise ApiError(
            _("This Idempotency-Key was already used with a different request."),
            "Idempotency-Key",
            status_code=409,
            code="idempotency_conflict",
        )
    response = _as_http(stored.body, stored.status_code)
    response["Idempotent-Replayed"] = "true"
    return response


def _as_http(body: str, status: int) -> HttpResponse:
    return HttpResponse(body, status=status, content_type="application/json")


def store(workspace, key: str, print_: str, response: Response) -> HttpResponse:
    """Store the first response in the caller's transaction; raises IntegrityError when a
    racer stored one first (after it commits), so the caller's work rolls back with it."""
    body = JSONRenderer().render(response.data).decode()
    IdempotentResponse.objects.for_workspace(workspace).create(
        workspace=workspace,
        key=key,
        fingerprint=print_,
        status_code=response.status_code,
        body=body,
    )
    return _as_http(body, response.status_code)


def remember(workspace, key: str, print_: str, response: Response) -> HttpResponse:
    """Store the first response; a racer that stored first wins and its body is returned."""
    try:
        with transaction.atomic():
            return store(workspace, key, print_, response)
    except IntegrityError:
        body = JSONRenderer().render(response.data).decode()
        return replay(workspace, key, print_) or _as_http(body, response.status_code)


def purge_expired(now: datetime | None = None, batch: int = PURGE_BATCH) -> int:
    """Delete stored responses older than the retention, `batch` rows per statement (short
    transactions, no long lock on the table); returns how many went."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.API_IDEMPOTENCY_RETENTION_HOURS)
    stored = IdempotentResponse.objects.dangerously_unscoped()
    deleted = 0
    while True:
        ids = list(stored.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        deleted += stored.filter(pk__in=ids).delete()[0]
