"""Provider rows pointing at the fake servers, and routes for the demo models."""

from __future__ import annotations

from decimal import Decimal

from generation.models import Route, RouteKind, VideoModel
from workers import credentials
from workers.models import Provider

from .fake_providers import API_KEY, REPLICATE_WEBHOOK_SECRET, SECRET_KEY

PROVIDER_MODELS = {
    "replicate": "wan-video/wan-2.1-t2v-480p",
    "fal": "fal-ai/kling-video/v2/master/text-to-video",
    "kling": "kling-v1-6",
    "runway": "gen4_turbo",
}


def make_provider(fake, *, slug: str | None = None, **fields) -> Provider:
    """A provider of the fake's kind, its credentials stored encrypted."""
    secret = {"replicate": REPLICATE_WEBHOOK_SECRET, "kling": SECRET_KEY}.get(fake.kind, "")
    defaults = {
        "name": (slug or fake.kind).title(),
        "kind": fake.kind,
        "base_url": fake.url,
        "api_key_encrypted": credentials.encrypt(API_KEY),
        "secret_encrypted": credentials.encrypt(secret) if secret else "",
        "max_concurrency": 4,
        "cost_per_clip": Decimal("1.5"),
        "cost_per_second": Decimal("0.25"),
    }
    defaults.update(fields)
    return Provider.objects.create(slug=slug or fake.kind, **defaults)


def route(model_slug: str, provider: Provider, priority: int, **fields) -> Route:
    return Route.objects.create(
        video_model=VideoModel.objects.get(slug=model_slug),
        kind=RouteKind.PROVIDER,
        provider=provider,
        provider_model=fields.pop("provider_model", PROVIDER_MODELS[provider.kind]),
        priority=priority,
        **fields,
    )


def only_upstream(model_slug: str) -> None:
    """Take the model off the reference node pool, so only provider routes serve it."""
    Route.objects.filter(video_model__slug=model_slug, kind=RouteKind.NODE_POOL).update(
        is_active=False
    )
