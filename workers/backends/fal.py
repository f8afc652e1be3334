"""fal: the queue API at queue.fal.run.

`POST /{app}` submits (with `?fal_webhook=` for the callback) and answers `request_id`,
`status_url`, `response_url`, `cancel_url`; `GET /{app base}/requests/{id}/status` answers
IN_QUEUE, IN_PROGRESS or COMPLETED; `GET /{app base}/requests/{id}` is the result (an
error answer there is the job's failure); `PUT …/requests/{id}/cancel` cancels. The app
base is the app id's first two segments (`fal-ai/kling-video/v2/master/text-to-video` →
`fal-ai/kling-video`). fal's webhook body is `{request_id, status: OK|ERROR, payload,
error}`; it is authenticated here by the per-attempt secret in its URL.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from .base import ModerationBlocked, PermanentBackendError
from .upstream import (
    QUEUED,
    RUNNING,
    SUCCEEDED,
    ProviderBackend,
    Request,
    State,
    WebhookRejected,
    expect_dict,
    failure,
)


def app_base(app_id: str) -> str:
    return "/".join(app_id.strip("/").split("/")[:2])


def video_url(payload: Any) -> str:
    if isinstance(payload, dict):
        video = payload.get("video")
        if isinstance(video, dict) and isinstance(video.get("url"), str):
            return video["url"]
        if isinstance(video, str):
            return video
        videos = payload.get("videos")
        if isinstance(videos, list) and videos:
            return video_url({"video": videos[0]})
    return ""


class FalBackend(ProviderBackend):
    kind = "fal"
    default_base_url = "https://queue.fal.run"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self.provider.api_key()}"}

    def input_for(self, request: Request) -> dict[str, Any]:
        data: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt or None,
            "seed": request.seed,
            "aspect_ratio": request.aspect_ratio,
            "resolution": request.resolution,
            "duration": str(request.duration),
            "image_url": request.image,
            "end_image_url": request.last_frame,
        }
        data.update(request.extra)
        return {k: v for k, v in data.items() if v is not None}

    def submit(self, request: Request) -> State:
        params = {"fal_webhook": request.webhook_url} if request.webhook_url else None
        _, answer = self.send(
            "POST", f"/{request.model.strip('/')}", json=self.input_for(request), params=params
        )
        answer = expect_dict(self.provider, answer, "request_id")
        return State(str(answer["request_id"]), QUEUED)

    def status(self, request: Request, external_id: str) -> State:
        base = f"/{app_base(request.model)}/requests/{quote(external_id)}"
        _, answer = self.send("GET", f"{base}/status")
        answer = expect_dict(self.provider, answer, "status")
        if answer["status"] == "IN_QUEUE":
            return State(external_id, QUEUED)
        if answer["status"] != "COMPLETED":
            return State(external_id, RUNNING)
        try:
            _, result = self.send("GET", base)
        except PermanentBackendError as exc:
            return failure(external_id, str(exc))
        return self.result_state(external_id, result)

    def cancel(self, request: Request, external_id: str) -> bool:
        base = f"/{app_base(request.model)}/requests/{quote(external_id)}"
        status, _ = self.send("PUT", f"{base}/cancel", allow=(400, 404))
        return status < 300

    def result_state(self, external_id: str, payload: Any) -> State:
        url = video_url(payload)
        if not url:
            return failure(external_id, f"fal returned no video: {str(payload)[:200]}")
        return State(external_id, SUCCEEDED, output_url=url)

    def parse_webhook(self, headers: dict[str, str], body: bytes) -> State:
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise WebhookRejected("webhook body is not JSON") from exc
        if not isinstance(data, dict) or not data.get("request_id"):
            raise WebhookRejected("webhook body has no request_id")
        external_id = str(data["request_id"])
        if data.get("status") == "OK":
            return self.result_state(external_id, data.get("payload"))
        detail = data.get("payload") or {}
        reason = self.error_detail(detail) if isinstance(detail, dict) else ""
        return failure(external_id, reason or str(data.get("error") or "fal reported an error"))

    def error_detail(self, body: Any) -> str:
        # fal validation errors: {"detail": [{"type": "content_policy_violation", "msg": …}]}
        if isinstance(body, dict) and isinstance(body.get("detail"), list):
            parts = []
            for item in body["detail"]:
                if isinstance(item, dict):
                    parts.append(f"{item.get('type', '')}: {item.get('msg', '')}".strip(": "))
            return "; ".join(parts)
        return super().error_detail(body)

    def raise_for(self, status: int, detail: str, body: dict) -> None:
        if status == 422 and "content_policy" in detail:
            raise ModerationBlocked(detail)
        super().raise_for(status, detail, body)
