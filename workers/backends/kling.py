"""Kling: text2video and image2video tasks, authenticated with a short-lived JWT.

The token is HS256 over `{iss: access key, exp, nbf}` signed with the secret key. Every
answer is an envelope `{code, message, request_id, data}`; `code` 0 is success, and the
documented codes decide what a failure means (1301: content refused by moderation;
1302/1303: rate or concurrency limit; 5xxx: Kling's side; 1000–1004 and 1100–1103: our
account). Tasks report `submitted`, `processing`, `succeed` or `failed`, with
`task_result.videos[{id, url, duration}]`; the `callback_url` receives the task's data.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt

from .base import (
    ModerationBlocked,
    PermanentBackendError,
    ProviderAtCapacity,
    TransientBackendError,
)
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
    raw_base64,
)

STATUSES = {"submitted": QUEUED, "processing": RUNNING}
TOKEN_SECONDS = 1800


def token(access_key: str, secret_key: str, now: float | None = None) -> str:
    now = int(now or time.time())
    claims = {"iss": access_key, "exp": now + TOKEN_SECONDS, "nbf": now - 5}
    return jwt.encode(claims, secret_key, algorithm="HS256", headers={"typ": "JWT"})


class KlingBackend(ProviderBackend):
    kind = "kling"
    default_base_url = "https://api-singapore.klingai.com"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(self.provider.api_key(), self.provider.secret())}"}

    def body_for(self, request: Request) -> dict[str, Any]:
        data: dict[str, Any] = {
            "model_name": request.model,
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt or None,
            "duration": str(request.duration),
            "aspect_ratio": None if request.image else request.aspect_ratio,
            "image": raw_base64(request.image) if request.image else None,
            "image_tail": raw_base64(request.last_frame) if request.last_frame else None,
            "callback_url": request.webhook_url or None,
            "external_task_id": request.attempt_id,
        }
        data.update(request.extra)
        return {k: v for k, v in data.items() if v is not None}

    def submit(self, request: Request) -> State:
        kind = "image2video" if request.image_to_video else "text2video"
        data = self.call("POST", f"/v1/videos/{kind}", json=self.body_for(request))
        return self.state_of(data)

    def status(self, request: Request, external_id: str) -> State:
        kind = "image2video" if request.image_to_video else "text2video"
        return self.state_of(self.call("GET", f"/v1/videos/{kind}/{external_id}"))

    def cancel(self, request: Request, external_id: str) -> bool:
        # Kling's API has no cancel: a task runs to its end and is not collected.
        return False

    def call(self, method: str, path: str, **kwargs: Any) -> dict:
        _, answer = self.send(method, path, **kwargs)
        answer = expect_dict(self.provider, answer, "code")
        if answer["code"] != 0:
            self.raise_for(200, str(answer.get("message", "")), answer)
        return expect_dict(self.provider, answer.get("data"), "task_id")

    def raise_for(self, status: int, detail: str, body: dict) -> None:
        code = body.get("code") if isinstance(body, dict) else None
        name = self.provider.name
        message = f"{name}: code {code} {body.get('message', detail) if body else detail}"
        if code == 1301:
            raise ModerationBlocked(str(body.get("message") or detail))
        if code in (1302, 1303) or status == 429:
            raise ProviderAtCapacity(message)
        if isinstance(code, int) and (code >= 5000 or 1000 <= code < 1200):
            raise TransientBackendError(message)
        if isinstance(code, int):
            raise PermanentBackendError(message)
        super().raise_for(status, detail, body)

    def state_of(self, data: Any) -> State:
        data = expect_dict(self.provider, data, "task_id", "task_status")
        external_id = str(data["task_id"])
        status = data["task_status"]
        if status == "succeed":
            videos = (data.get("task_result") or {}).get("videos") or []
            url = videos[0].get("url", "") if videos and isinstance(videos[0], dict) else ""
            if not url:
                return failure(external_id, "Kling reported success without an output.")
            return State(external_id, SUCCEEDED, output_url=url)
        if status == "failed":
            return failure(external_id, str(data.get("task_status_msg") or ""))
        return State(external_id, STATUSES.get(status, RUNNING))

    def parse_webhook(self, headers: dict[str, str], body: bytes) -> State:
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise WebhookRejected("callback body is not JSON") from exc
        if isinstance(data, dict) and "data" in data and "task_id" not in data:
            data = data["data"]
        if not isinstance(data, dict) or "task_id" not in data or "task_status" not in data:
            raise WebhookRejected("callback body is not a Kling task")
        return self.state_of(data)
