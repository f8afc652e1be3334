"""Expiring download links to stored files, for anyone holding the link.

On S3 a link is the bucket's own presigned URL. Otherwise it is an opaque token for the
`signed_media` view (workers/views.py): the storage name, the download name and the expiry,
encrypted with Fernet (AES with an HMAC) under a key derived from SECRET_KEY, so a link
shows no path, and a tampered or expired one serves nothing. The studio pages, the API and
the media view all use this module; it imports nothing from the apps.
"""

from __future__ import annotations

import base64
import json
import time

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils.crypto import salted_hmac
from django.utils.http import content_disposition_header

# The salt keeps its first home's name: links handed out before the move stay valid.
SIGNED_URL_SALT = "workers.media.signed-url"


def _link_cipher() -> Fernet:
    """The key of download links: derived from SECRET_KEY, so rotating it ends every link."""
    key = salted_hmac(SIGNED_URL_SALT, "fernet-key", algorithm="sha256").digest()
    return Fernet(base64.urlsafe_b64encode(key))


def signed_media_url(name: str, ttl: int | None = None, *, download_name: str = "") -> str:
    """An absolute URL that serves the stored file `name` for `ttl` seconds, no login needed.

    On S3 it is the bucket's own presigned URL; otherwise an opaque token for the
    `signed_media` view: the storage name, download name and expiry encrypted (Fernet: AES
    with an HMAC), so the link reveals no path, and a tampered or expired one serves
    nothing. With `download_name` the file is sent as an attachment under that name.
    """
    ttl = ttl or settings.SIGNED_URL_TTL_SECONDS
    if settings.STORAGE_BACKEND == "s3":
        parameters = {}
        if download_name:
            parameters["ResponseContentDisposition"] = content_disposition_header(
                as_attachment=True, filename=download_name
            )
        return default_storage.url(name, parameters=parameters or None, expire=ttl)
    grant = {"n": name, "x": int(time.time()) + int(ttl)}
    if download_name:
        grant["as"] = download_name
    raw = json.dumps(grant, separators=(",", ":")).encode()
    token = _link_cipher().encrypt(raw).decode().rstrip("=")
    return settings.PUBLIC_BASE_URL + reverse("signed_media", args=[token])


class LinkExpired(Exception):
    """A genuine download link whose time ran out."""


class LinkInvalid(Exception):
    """Not a download link this platform made (forged, tampered, truncated)."""


def read_signed_grant(token: str) -> tuple[str, str]:
    """(storage name, download name or "") a link grants; raises LinkInvalid or LinkExpired."""
    if not token or len(token) > 2048:
        raise LinkInvalid
    try:
        raw = _link_cipher().decrypt(token + "=" * (-len(token) % 4))
        grant = json.loads(raw)
        name, expires = str(grant["n"]), int(grant["x"])
        download_name = str(grant.get("as", ""))
    except (InvalidToken, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise LinkInvalid from exc
    if time.time() >= expires:
        raise LinkExpired
    return name, download_name
