"""The moderation hook: refuse a prompt before anything is charged.

The default checks a configurable blocklist (MODERATION_BLOCKLIST, words or phrases,
case-insensitive). MODERATION_HOOK names any callable with the same signature, so a
classifier service can replace it without touching submission.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _


def blocklist(prompt: str, negative_prompt: str, workspace) -> str | None:
    """Return a reason to refuse, or None to allow."""
    text = prompt.casefold()
    for word in settings.MODERATION_BLOCKLIST:
        if word.casefold() in text:
            return _("The prompt contains blocked content (%(word)s).") % {"word": word}
    return None


def moderation_hook() -> Callable[[str, str, object], str | None]:
    return import_string(settings.MODERATION_HOOK)
