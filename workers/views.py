"""HTTP edges of the workers app: expiring downloads of stored media."""

from __future__ import annotations

import os

from django.core import signing
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponseForbidden
from django.views.decorators.http import require_safe

from .media import read_signed_token


@require_safe
def signed_media(request: HttpRequest, token: str) -> FileResponse | HttpResponseForbidden:
    """Stream a stored file to whoever holds a valid, unexpired signed link (no login)."""
    try:
        name = read_signed_token(token)
    except signing.SignatureExpired:
        return HttpResponseForbidden("This link has expired.")
    except signing.BadSignature:
        return HttpResponseForbidden("This link is not valid.")
    if not default_storage.exists(name):
        raise Http404("No such file.")
    response = FileResponse(default_storage.open(name, "rb"), filename=os.path.basename(name))
    response["Cache-Control"] = "private, max-age=300"
    return response
