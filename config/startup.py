"""Start-up refuses the embedded secrets outside DEBUG.

The README prints the embedded `SECRET_KEY` and the demo node token; a platform running
with either in production signs its links and accepts uploads with secrets anyone can read.
`refuse_embedded_secrets()` runs where each process starts: gunicorn (config/wsgi.py,
config/asgi.py), Celery workers and beat (config/celery.py), and every `manage.py` command
through the system check below.
"""

from __future__ import annotations

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

EMBEDDED_SECRET_KEY = "embedded-insecure-key-change-me-in-production-0123456789"
DOCUMENTED_NODE_TOKEN = "reference-node-token"


def embedded_secrets_in_use() -> list[str]:
    """The names of the settings still at their published, embedded values."""
    found = []
    if settings.SECRET_KEY == EMBEDDED_SECRET_KEY:
        found.append("SECRET_KEY")
    if settings.REFERENCE_NODE_TOKEN == DOCUMENTED_NODE_TOKEN:
        found.append("REFERENCE_NODE_TOKEN")
    return found


def _message(names: list[str]) -> str:
    return (
        f"{' and '.join(names)} still hold the embedded defaults printed in the README; "
        "set your own (or DEBUG=1 for the embedded mode)."
    )


def refuse_embedded_secrets() -> None:
    names = embedded_secrets_in_use()
    if names and not settings.DEBUG:
        raise ImproperlyConfigured(_message(names))


@checks.register(checks.Tags.security)
def check_embedded_secrets(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    names = embedded_secrets_in_use()
    if names and not settings.DEBUG:
        return [checks.Error(_message(names), id="retake.E001")]
    return []
