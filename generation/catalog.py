"""Registering GPU nodes into pools: the demo data and `manage.py register_node` share it."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from .models import Node, NodePool, Route, RouteKind, VideoModel

MODEL_ROUTE_PRIORITY = 50


@transaction.atomic
def register_node(
    name: str,
    base_url: str,
    *,
    token: str,
    pool_slug: str = "reference",
    slots: int = 1,
    models: Iterable[str] = (),
) -> Node:
    """Create or update a node; it serves every model routed to its pool.

    `models` (catalog slugs) are routed to the pool first, e.g. the one model a diffusers
    node runs; an unknown slug raises VideoModel.DoesNotExist and nothing is written.
    """
    pool, _ = NodePool.objects.get_or_create(slug=pool_slug, defaults={"name": pool_slug})
    for slug in models:
        video_model = VideoModel.objects.get(slug=slug)
        # Ahead of the demo's reference pool (priority 100): a real model serves it first.
        Route.objects.get_or_create(
            video_model=video_model,
            kind=RouteKind.NODE_POOL,
            pool=pool,
            defaults={"priority": MODEL_ROUTE_PRIORITY},
        )
    node, _ = Node.objects.update_or_create(
        name=name,
        defaults={
            "pool": pool,
            "base_url": base_url.rstrip("/"),
            "auth_token": token,
            "slots": slots,
        },
    )
    routed = Route.objects.filter(pool=pool, is_active=True).values_list("video_model", flat=True)
    node.served_models.add(*routed)
    return node
