"""The Site record allauth puts in e-mails ("[Retake] Please confirm…", the link's host),
kept equal to SITE_NAME and PUBLIC_BASE_URL instead of Django's "example.com"."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.sites.models import Site


def sync_site(**kwargs) -> None:
    """post_migrate: write SITE_NAME and the PUBLIC_BASE_URL host into the current Site."""
    host = urlsplit(settings.PUBLIC_BASE_URL).netloc or "localhost"
    Site.objects.update_or_create(
        pk=settings.SITE_ID, defaults={"domain": host, "name": settings.SITE_NAME}
    )
