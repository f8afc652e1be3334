"""Replicate: predictions on an official model (`owner/name`) or a version (`owner/name:id`).

Create with `POST /v1/models/{owner}/{name}/predictions` or `POST /v1/predictions` with a
version; webhooks carry a Standard Webhooks signature (`webhook-id`, `webhook-timestamp`,
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the
base64 part of the account's `whsec_…` secret); `GET /v1/predictions/{id}` is the poll
fallback and `POST /v1/predictions/{id}/cancel` cancels.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any

from django.conf import settings

from .upstream import (
    CANCELED,
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

STATUSES = {"starting": QUEUED, "processing": RUNNING, "succeeded": SUCCEEDED, "canceled": CANCELED}


def sign(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The `v1,…` signature Replicate sends for this body (also used by the tests' fake)."""
    key = base64.b64decode(secret.split("_", 1)[-1])
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def first_url(output: Any) -> str:
    if isinstance(output, list):
        output = output[0] if output else ""
    if isinstance(output, dict):
        output = output.get("video") or output.get("url") or ""
    return output if isinstance(output, str) else ""


class ReplicateBackend(ProviderBackend):
    kind = "replicate"
    default_base_url = "https://api.replicate.com"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.provider.api_key()}"}

    def input_for(self, request: Request) -> dict[str, Any]:
        data: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt or None,
            "seed": request.seed,
            "aspect_ratio": request.aspect_ratio,
            "resolution": request.resolution,
            "duration": request.duration,
            "fps": request.fps,
            "image": request.image,
            "last_image": request.last_frame,
        }
        data.update(request.extra)
        return {k: v for k, v in data.items() if v is not None}

    def submit(self, request: Request) -> State:
        body: dict[str, Any] = {"input": self.input_for(request)}
        if request.webhook_url:
            body["webhook"] = request.webhook_url
            body["webhook_events_filter"] = ["start", "completed"]
        model, _, version = request.model.partition(":")
        if version:
            body["version"] = version
            _, answer = self.send("POST", "/v1/predictions", json=body)
        else:
            _, answer = self.send("POST", f"/v1/models/{model}/predictions", json=body)
        return self.state_of(answer)

    def status(self, request: Request, external_id: str) -> State:
        _, answer = self.send("GET", f"/v1/predictions/{external_id}")
        return self.state_of(answer)

    def cancel(self, request: Request, external_id: str) -> bool:
        status, _ = self.send(
            "POST", f"/v1/predictions/{external_id}/cancel", allow=(404, 409, 422)
        )
        return status < 300

    def state_of(self, prediction: Any) -> State:
        prediction = expect_dict(self.provider, prediction, "id", "status")
        external_id = str(prediction["id"])
        status = prediction["status"]
        if status == "failed":
            return failure(external_id, str(prediction.get("error") or ""))
        if status not in STATUSES:
            return State(external_id, RUNNING)
        if STATUSES[status] == SUCCEEDED:
            url = first_url(prediction.get("output"))
            if not url:
                return failure(external_id, "Replicate reported success without an output.")
            return State(external_id, SUCCEEDED, output_url=url)
        return State(external_id, STATUSES[status])

    def parse_webhook(self, headers: dict[str, str], body: bytes) -> State:
        webhook_id = headers.get("webhook-id", "")
        timestamp = headers.get("webhook-timestamp", "")
        signatures = headers.get("webhook-signature", "").split()
        secret = self.provider.secret()
        if not (webhook_id and timestamp and signatures and secret):
            raise WebhookRejected("missing webhook signature headers or signing secret")
        try:
            age = abs(time.time() - int(timestamp))
            expected = sign(secret, webhook_id, timestamp, body)
        except (ValueError, binascii.Error) as exc:
            raise WebhookRejected(f"unreadable signature input ({exc})") from exc
        if age > settings.PROVIDER_WEBHOOK_TOLERANCE_SECONDS:
            raise WebhookRejected("webhook timestamp outside the tolerance")
        if not any(hmac.compare_digest(expected, given) for given in signatures):
            raise WebhookRejected("bad webhook signature")
        try:
            return self.state_of(json.loads(body))
        except ValueError as exc:
            raise WebhookRejected("webhook body is not JSON") from exc
