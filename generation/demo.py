"""Demo catalog: four open models, all served by the reference node `make run` starts.

Idempotent (update_or_create by natural keys). Inbox projects are made lazily per
workspace on first submission, not here.
"""

from __future__ import annotations

from django.conf import settings

from .catalog import register_node
from .models import Node, NodePool, Route, RouteKind, VideoModel

T2V = {"supports_text_to_video": True, "supports_image_to_video": False}
I2V = {"supports_text_to_video": False, "supports_image_to_video": True}
COMMON = {
    "durations": [1, 2, 3, 5],
    "fps_options": [16, 24],
    "aspect_ratios": ["16:9", "9:16", "1:1"],
    "draft_resolution": "480p",
    "is_active": True,
}

MODELS = {
    "wan2.1-t2v-1.3b": {
        "name": "Wan 2.1 T2V 1.3B",
        "family": "Wan 2.1",
        "resolutions": ["480p", "720p"],
        "size_multiple": 16,
        "native_sizes": ["832x480", "480x832"],
        **T2V,
    },
    "wan2.1-i2v-14b": {
        "name": "Wan 2.1 I2V 14B",
        "family": "Wan 2.1",
        "resolutions": ["480p", "720p"],
        "size_multiple": 16,
        "native_sizes": ["832x480", "480x832", "1280x720", "720x1280"],
        **I2V,
        "supports_first_last_frame": True,
    },
    "ltx-video-2b": {
        "name": "LTX-Video 2B",
        "family": "LTX-Video",
        "resolutions": ["480p", "720p"],
        "size_multiple": 32,
        **T2V,
    },
    "hunyuanvideo-i2v": {
        "name": "HunyuanVideo I2V",
        "family": "HunyuanVideo",
        "resolutions": ["480p", "720p", "1080p"],
        "size_multiple": 16,
        **I2V,
        "supports_text_to_video": True,
    },
}


def seed_catalog(*, base_url: str | None = None, token: str | None = None) -> Node:
    """The four demo models, the reference pool and node, and a route per model."""
    pool, _ = NodePool.objects.update_or_create(
        slug="reference", defaults={"name": "Reference (CPU)"}
    )
    for slug, fields in MODELS.items():
        video_model, _ = VideoModel.objects.update_or_create(
            slug=slug, defaults={**COMMON, **fields}
        )
        Route.objects.update_or_create(
            video_model=video_model,
            kind=RouteKind.NODE_POOL,
            pool=pool,
            defaults={"priority": 100, "is_active": True},
        )
    return register_node(
        "reference-1",
        base_url or f"http://127.0.0.1:{settings.REFERENCE_NODE_PORT}",
        token=token or settings.REFERENCE_NODE_TOKEN,
        pool_slug=pool.slug,
    )


def seed(stdout) -> None:
    node = seed_catalog()
    stdout.write(f"generation: {len(MODELS)} models served by {node.name} at {node.base_url}")
