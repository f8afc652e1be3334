"""Provider credentials at rest: encrypted with Fernet, or read from the environment by name.

The key comes from PROVIDER_CREDENTIALS_KEY (a Fernet key) or, when that is empty, is
derived from SECRET_KEY, so rotating SECRET_KEY without setting the key makes stored
credentials unreadable (they must be entered again); environment-variable credentials
are unaffected.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class CredentialError(Exception):
    """A provider's credential is missing or cannot be decrypted."""


def _fernet() -> Fernet:
    key = settings.PROVIDER_CREDENTIALS_KEY
    if not key:
        digest = hashlib.sha256(f"retake.provider-credentials:{settings.SECRET_KEY}".encode())
        key = base64.urlsafe_b64encode(digest.digest()).decode()
    return Fernet(key.encode() if isinstance(key, str) else key)


def encrypt(plaintext: str) -> str:
    """The ciphertext stored in the database for a credential typed into the admin."""
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise CredentialError("stored credential cannot be decrypted with the current key") from exc


def resolve(env_name: str, ciphertext: str) -> str:
    """The credential's value: the named environment variable wins over the stored one."""
    if env_name:
        value = os.environ.get(env_name, "")
        if not value:
            raise CredentialError(f"environment variable {env_name} is not set")
        return value
    if ciphertext:
        return decrypt(ciphertext)
    return ""
