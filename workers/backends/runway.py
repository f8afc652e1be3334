"""Runway: `image_to_video` and `text_to_video` tasks, polled with `GET /v1/tasks/{id}`.

Every call carries `X-Runway-Version: 2024-11-06`. Tasks report PENDING, THROTTLED,
RUNNING, SUCCEEDED (with `output`, a list of URLs), FAILED (with `failure` and
`failureCode`; codes starting with SAFETY are moderation) or CANCELLED; `DELETE
/v1/tasks/{id}` cancels a running task. Runway sends no webhooks, so these takes are
polled.
"""

from __future__ import annotations

from typing import Any

from .upstream import (
    BLOCKED,
    CANCELED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    ProviderBackend,
    Request,
    State,
    expect_dict,
    failure,
)

API_VERSION = "2024-11-06"
# Runway names output sizes by pixels; these are its ratios for each aspect ratio.
RATIOS = {
    "16:9": "1280:720",
    "9:16": "720:1280",
    "1:1": "960:960",
    "4:3": "1104:832",
    "3:4": "832:1104",
    "21:9": "1584:672",
}


class RunwayBackend(ProviderBackend):
    kind = "runway"
    default_base_url = "https://api.dev.runwayml.com"
    calls_back = False

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.provider.api_key()}",
            "X-Runway-Version": API_VERSION,
        }

    def body_for(self, request: Request) -> dict[str, Any]:
        data: dict[str, Any] = {
            "model": request.model,
            "promptText": request.prompt,
            "ratio": RATIOS.get(request.aspect_ratio, f"{request.width}:{request.height}"),
            "duration": request.duration,
            "seed": request.seed,
        }
        if request.image and request.last_frame:
            data["promptImage"] = [
                {"uri": request.image, "position": "first"},
                {"uri": request.last_frame, "position": "last"},
            ]
        elif request.image:
            data["promptImage"] = request.image
        data.update(request.extra)
        return {k: v for k, v in data.items() if v is not None}

    def submit(self, request: Request) -> State:
        path = "/v1/image_to_video" if request.image_to_video else "/v1/text_to_video"
        _, answer = self.send("POST", path, json=self.body_for(request))
        answer = expect_dict(self.provider, answer, "id")
        return State(str(answer["id"]), QUEUED)

    def status(self, request: Request, external_id: str) -> State:
        _, task = self.send("GET", f"/v1/tasks/{external_id}")
        task = expect_dict(self.provider, task, "id", "status")
        status = task["status"]
        if status == "SUCCEEDED":
            output = task.get("output") or []
            url = output[0] if isinstance(output, list) and output else ""
            if not isinstance(url, str) or not url:
                return failure(external_id, "Runway reported success without an output.")
            return State(external_id, SUCCEEDED, output_url=url)
        if status == "FAILED":
            reason = str(task.get("failure") or "Runway reported a failure.")
            code = str(task.get("failureCode") or "")
            if code.startswith("SAFETY"):
                return State(external_id, BLOCKED, error=reason)
            return failure(external_id, f"{reason} ({code})" if code else reason)
        if status == "CANCELLED":
            return State(external_id, CANCELED)
        if status == "RUNNING":
            progress = task.get("progress")
            percent = int(progress * 100) if isinstance(progress, int | float) else None
            return State(external_id, RUNNING, progress=percent)
        return State(external_id, QUEUED)

    def cancel(self, request: Request, external_id: str) -> bool:
        status, _ = self.send("DELETE", f"/v1/tasks/{external_id}", allow=(404,))
        return status < 300
