"""Registering GPU nodes into pools: the demo data and `manage.py register_node` share it."""

from __future__ import annotations

from django.db import transaction

from .models import Node, NodePool, Route


@transaction.atomic
def register_node(
    name: str, base_url: str, *, token: str, pool_slug: str = "reference", slots: int = 1
) -> Node:
    """Create or update a node; it serves every model routed to its pool."""
    pool, _ = NodePool.objects.get_or_create(slug=pool_slug, defaults={"name": pool_slug})
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
