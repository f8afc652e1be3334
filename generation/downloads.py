"""Readable names for what the studio sends people: `<project>-<shot>-take<N>-<seed>.mp4`.

The signed links carry these names in Content-Disposition; the rough cut's timeline points
at the same names, so an editor can relink the originals they downloaded.
"""

from __future__ import annotations

from django.utils.text import slugify

from .models import Take


def download_name(take: Take) -> str:
    """`<project>-<shot>-take<N>-<seed>.mp4`: N counts the shot's takes in drawing order."""
    number = (
        Take.objects.dangerously_unscoped()
        .filter(shot_id=take.shot_id, created_at__lt=take.created_at)
        .count()
        + 1
    )
    shot = take.shot
    parts = [
        slugify(shot.project.name, allow_unicode=True) or "project",
        slugify(str(shot), allow_unicode=True)[:60] or f"shot{shot.pk}",
        f"take{number}",
        str(take.seed),
    ]
    return "-".join(parts) + ".mp4"
