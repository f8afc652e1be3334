"""The video model catalog, projects, shots and takes."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Resolution(models.TextChoices):
    R480P = "480p", "480p"
    R540P = "540p", "540p"
    R720P = "720p", "720p"
    R1080P = "1080p", "1080p"


# Short side in pixels for each resolution; the aspect ratio sets the long side.
RESOLUTION_SHORT_SIDE = {"480p": 480, "540p": 540, "720p": 720, "1080p": 1080}


class VideoModel(models.Model):
    """A catalog entry, e.g. `wan2.1-t2v-1.3b`, and what it can do."""

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=120)
    family = models.CharField(max_length=60, help_text=_("e.g. Wan 2.1, HunyuanVideo, LTX-Video"))
    supports_text_to_video = models.BooleanField(default=True)
    supports_image_to_video = models.BooleanField(default=False)
    supports_first_last_frame = models.BooleanField(default=False)
    resolutions = models.JSONField(default=list, help_text=_('e.g. ["480p", "720p"]'))
    durations = models.JSONField(default=list, help_text=_("allowed seconds, e.g. [3, 5, 10]"))
    fps_options = models.JSONField(default=list, help_text=_("e.g. [16, 24]"))
    aspect_ratios = models.JSONField(default=list, help_text=_('e.g. ["16:9", "9:16", "1:1"]'))
    max_prompt_length = models.PositiveIntegerField(default=2000)
    draft_resolution = models.CharField(max_length=8, choices=Resolution.choices, default="480p")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
