"""The platform's settings plus one bare DRF endpoint, for the studio load benchmark."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.studio.urls"

# Pages are measured, not their assets: no collected manifest needed.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
