"""Running the diffusers node (platform/nodes/diffusers) in tiny mode for tests.

The node has its own virtualenv (`.venv-diffusers`, built by `make test` from the node's
requirements.txt: torch, diffusers, transformers, cog); the platform's tests talk to it
over HTTP only, exactly as the platform does, so they run in the platform's venv.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from django.conf import settings

from .conftest import start_node, stop_node, wait_started

DIFFUSERS_DIR = Path(settings.BASE_DIR) / "platform" / "nodes" / "diffusers"
DIFFUSERS_PYTHON = Path(settings.BASE_DIR) / ".venv-diffusers" / "bin" / "python"
MODELS = ("wan2.1-t2v-1.3b", "wan2.1-i2v-14b", "wan2.2-ti2v-5b", "ltx-video")
# Tiny nodes start in 10-30 s on an idle 2-core machine (torch and diffusers imports),
# minutes when many test runs share it.
START_TIMEOUT = 600


def node_python() -> str:
    if not DIFFUSERS_PYTHON.exists():
        raise RuntimeError(
            f"{DIFFUSERS_PYTHON} is missing: `make test` builds the diffusers node's "
            "virtualenv from platform/nodes/diffusers/requirements.txt"
        )
    return str(DIFFUSERS_PYTHON)


def start_diffusers_nodes(
    models: tuple[str, ...], *, upload_url: str, preview_every: int = 1
) -> dict[str, tuple[str, subprocess.Popen]]:
    """Start one tiny node per model, all at once, and wait until every one is READY."""
    started = {
        model: start_node(
            upload_url=upload_url,
            node_dir=DIFFUSERS_DIR,
            python=node_python(),
            env={
                "RETAKE_NODE_TINY": "1",
                "RETAKE_NODE_MODEL": model,
                "RETAKE_PREVIEW_URL": upload_url,
                "RETAKE_PREVIEW_EVERY": str(preview_every),
                "HF_HUB_OFFLINE": "1",
            },
            wait=False,
        )
        for model in models
    }
    try:
        for base_url, proc in started.values():
            wait_started(base_url, proc, timeout=START_TIMEOUT)
    except BaseException:
        for _, proc in started.values():
            stop_node(proc)
        raise
    return started
