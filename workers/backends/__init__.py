"""Backends run takes somewhere else: GPU nodes (`cog`), upstream providers (`replicate`,
`fal`, `kling`, `runway`) or ComfyUI servers (`comfyui`), all behind the interface in
`base`. `backend_for(target)` gives the client for a `Node` or a `Provider` row."""

from __future__ import annotations

from typing import Any

from .base import (
    Backend,
    BackendError,
    ModerationBlocked,
    NodeAtCapacity,
    PermanentBackendError,
    ProviderAtCapacity,
    Request,
    TransientBackendError,
    WebhookRejected,
)
from .cog import CogBackend
from .comfyui import ComfyUIBackend
from .fal import FalBackend
from .kling import KlingBackend
from .replicate import ReplicateBackend
from .runway import RunwayBackend

BACKENDS: dict[str, type[Backend]] = {
    backend.kind: backend
    for backend in (
        CogBackend,
        ReplicateBackend,
        FalBackend,
        KlingBackend,
        RunwayBackend,
        ComfyUIBackend,
    )
}


def backend_class(kind: str) -> type[Backend]:
    return BACKENDS[kind]


def backend_for(target: Any, **options: Any) -> Backend:
    """The client for a `Node` or `Provider` row (close it, or use it in a `with` block)."""
    return backend_class(target.backend_kind)(target, **options)


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "ModerationBlocked",
    "NodeAtCapacity",
    "PermanentBackendError",
    "ProviderAtCapacity",
    "Request",
    "TransientBackendError",
    "WebhookRejected",
    "backend_class",
    "backend_for",
]
