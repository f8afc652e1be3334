"""What a backend reports about one attempt of a take, in the platform's words.

Every backend (a Cog node, an upstream provider, a ComfyUI server) maps what it says onto
a `State`; `generation.lifecycle.apply_state` is the one place that turns a state into a
change of the take. This module imports nothing, so backends and the lifecycle can share
it without depending on each other.
"""

from __future__ import annotations

from dataclasses import dataclass

QUEUED, RUNNING, SUCCEEDED, FAILED, BLOCKED, CANCELED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "blocked",
    "canceled",
)
FINISHED = frozenset({SUCCEEDED, FAILED, BLOCKED, CANCELED})


@dataclass(frozen=True)
class State:
    """One report: the backend's id of the job and where it stands.

    A succeeded state carries its output one of three ways: `output_data` (the bytes, e.g.
    a Cog data URL), `output_url` (a provider's URL to copy from before it expires), or
    `output_stored` (the backend already uploaded it to the platform's ingest endpoint).
    """

    external_id: str
    status: str
    output_url: str = ""
    output_data: bytes | None = None
    output_stored: bool = False
    error: str = ""
    progress: int | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED
