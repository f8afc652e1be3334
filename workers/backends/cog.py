"""Client for GPU nodes speaking the Cog HTTP prediction protocol.

Submitting is quick (`Prefer: respond-async`); the node then POSTs the prediction to our
webhook as it progresses and PUTs the output file to the ingest endpoint. Facts about the
protocol as cog 0.16.12 implements it are in platform/nodes/reference/README.md; the ones
that shape this client:

- the same PUT again returns the prediction's current state only while it runs on a full
  node; a node that has finished (or restarted) starts it again, so `poll()` may re-run a
  take: the reference node answers that from its rendered file, a real node recomputes;
- 409 means every slot is busy, 422 means the input is invalid.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import httpx
from django.conf import settings

from generation.reports import CANCELED, FAILED, QUEUED, RUNNING, SUCCEEDED, State

from .base import (
    Backend,
    NodeAtCapacity,
    PermanentBackendError,
    Request,
    TransientBackendError,
    WebhookRejected,
)

if TYPE_CHECKING:
    from generation.models import Node

log = logging.getLogger(__name__)

DEFAULT_EVENTS = ("start", "output", "logs", "completed")
# What the dispatcher asks for: no "start", since the PUT's own answer already says the
# prediction is processing, and cog sends the start webhook from inside the PUT handler,
# so asking for it makes every submit wait for a round trip to our own webhook endpoint.
DISPATCH_EVENTS = ("output", "logs", "completed")
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
PROGRESS = re.compile(r"progress:\s*(\d{1,3})%")


class CogClient:
    """One GPU node. Every method raises a `workers.backends` error, never an httpx one."""

    def __init__(self, base_url: str, token: str = "", timeout: float = 10) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CogClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def submit(
        self,
        prediction_id: str,
        input: dict[str, Any],
        webhook_url: str,
        events: Iterable[str] = DEFAULT_EVENTS,
    ) -> dict[str, Any]:
        """Start the prediction (our take id as its id) and return the node's state of it."""
        body = {
            "id": prediction_id,
            "input": input,
            "webhook": webhook_url,
            "webhook_events_filter": list(events),
        }
        response = self._send(
            "PUT", f"/predictions/{prediction_id}", json=body, headers={"Prefer": "respond-async"}
        )
        return response.json()

    def poll(
        self,
        prediction_id: str,
        input: dict[str, Any],
        webhook_url: str,
        events: Iterable[str] = DEFAULT_EVENTS,
    ) -> dict[str, Any]:
        """Re-send the submit PUT: the running prediction's state, or a restart of it.

        Use it when webhooks went missing; the outcome still arrives by webhook.
        """
        return self.submit(prediction_id, input, webhook_url, events)

    def cancel(self, prediction_id: str) -> bool:
        """Ask the node to stop; False if it does not know the id (finished or never ran)."""
        response = self._send("POST", f"/predictions/{prediction_id}/cancel", allow=(404,))
        return response.status_code == 200

    def health(self) -> str:
        """READY, BUSY, STARTING, SETUP_FAILED, DEFUNCT or UNHEALTHY."""
        return str(self._send("GET", "/health-check").json()["status"])

    def _send(
        self, method: str, path: str, *, allow: tuple[int, ...] = (), **kwargs: Any
    ) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise TransientBackendError(f"{self.base_url}: timed out ({exc})") from exc
        except httpx.HTTPError as exc:
            raise TransientBackendError(f"{self.base_url}: unreachable ({exc})") from exc
        status = response.status_code
        if status < 400 or status in allow:
            return response
        detail = _detail(response)
        if status == 409:
            raise NodeAtCapacity(f"{self.base_url}: at capacity ({detail})")
        if status >= 500:
            raise TransientBackendError(f"{self.base_url}: {status} {detail}")
        # This message reaches the creator (take.error): say what was refused, not where.
        log.warning("node %s refused a request: %s %s", self.base_url, status, detail)
        raise PermanentBackendError(f"The GPU node refused the request ({status}): {detail}")


def _detail(response: httpx.Response) -> str:
    """A readable reason from a Cog/FastAPI error body (422s list the offending fields)."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return response.text[:500]
    if isinstance(detail, list):
        parts = []
        for item in detail:
            where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("body", "input"))
            parts.append(f"{where}: {item.get('msg', '')}" if where else item.get("msg", ""))
        return "; ".join(parts)
    return str(detail)[:500]


def prediction_id(take_id: object, secret: str) -> str:
    """The id a take's attempt runs under on a node: the take id and the attempt's secret.

    Cog's uploader sends no credentials, only `X-Prediction-ID`, so carrying the secret in
    the id is what lets the ingest endpoint tell the attempt's own upload from anyone
    holding the node's token. (Letters, digits, `-` and `_` only: the reference node names
    its files after the id.)
    """
    return f"{take_id}_{secret}"


def parse_prediction_id(value: str) -> tuple[str, str]:
    """(take id, secret) from a prediction id; ("", "") if it has no secret."""
    take_id, sep, secret = value.partition("_")
    if len(take_id) != 36 or not sep or not secret:
        return "", ""
    return take_id, secret


def parse_progress(logs: str | None) -> int | None:
    """The latest `progress: N%` the predictor printed (0-100), or None if none yet."""
    if not logs:
        return None
    found = PROGRESS.findall(logs)
    if not found:
        return None
    return max(0, min(100, int(found[-1])))


def decode_output(output: Any) -> bytes | None:
    """The bytes of a `data:` URL output; None for an http(s) URL (the caller fetches it).

    A prediction whose output is neither (missing, a list, a node-local path) is unusable.
    """
    if isinstance(output, str) and output.startswith(("http://", "https://")):
        return None
    if not isinstance(output, str) or not output.startswith("data:") or "," not in output:
        raise PermanentBackendError(f"unusable prediction output: {str(output)[:80]!r}")
    header, _, data = output.partition(",")
    if header.endswith(";base64"):
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise PermanentBackendError("output data URL is not valid base64") from exc
    return unquote_to_bytes(data)


_clients: dict[tuple[str, str, float], CogClient] = {}


def client_for(base_url: str, token: str) -> CogClient:
    """A kept-alive client per node and process (building one costs more than a PUT)."""
    key = (base_url, token, float(settings.NODE_TIMEOUT_SECONDS))
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = CogClient(base_url, token, timeout=key[2])
    return client


def prediction_input(request: Request) -> dict[str, Any]:
    """The Cog input for a request: its parameters, its reference frames as data URLs."""
    data: dict[str, Any] = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seed": request.seed,
        "width": request.width,
        "height": request.height,
        "fps": request.fps,
        "seconds": request.duration,
    }
    if request.image:
        data["image"] = request.image
    if request.last_frame:
        data["last_frame"] = request.last_frame
    data.update(request.extra)
    return data


def state_of(prediction: dict[str, Any]) -> State:
    """A Cog prediction (a webhook body or a PUT's answer) as a `State`."""
    external_id = str(prediction.get("id") or "")
    status = prediction.get("status")
    if status in ("starting", "processing"):
        return State(external_id, RUNNING, progress=parse_progress(prediction.get("logs")))
    if status == "succeeded":
        try:
            data = decode_output(prediction.get("output"))
        except PermanentBackendError as exc:
            return State(external_id, FAILED, error=str(exc))
        if data is None:  # an http(s) URL: the node PUT the file to our ingest endpoint
            return State(external_id, SUCCEEDED, output_stored=True)
        return State(external_id, SUCCEEDED, output_data=data)
    if status in ("failed", "canceled"):
        error = prediction.get("error") or f"The node reported the prediction {status}."
        return State(external_id, FAILED if status == "failed" else CANCELED, error=str(error))
    return State(external_id, QUEUED)


class CogBackend(Backend):
    """A GPU node: the prediction id is the take id and the attempt's secret
    (`prediction_id`), outcomes arrive by webhook."""

    kind = "cog"

    def __init__(self, node: Node) -> None:
        self.node = node
        self.client = client_for(node.base_url, node.auth_token)

    def submit(self, request: Request) -> State:
        prediction = prediction_id(request.take_id, request.secret)
        return state_of(
            self.client.submit(
                prediction, prediction_input(request), request.webhook_url, DISPATCH_EVENTS
            )
        )

    def status(self, request: Request, external_id: str) -> State:
        prediction = prediction_id(request.take_id, request.secret)
        return state_of(
            self.client.poll(
                prediction, prediction_input(request), request.webhook_url, DISPATCH_EVENTS
            )
        )

    def cancel(self, request: Request, external_id: str) -> bool:
        return self.client.cancel(prediction_id(request.take_id, request.secret))

    def health(self) -> str:
        return self.client.health()

    def parse_webhook(self, headers: dict[str, str], body: bytes) -> State:
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise WebhookRejected("body must be a JSON prediction") from exc
        if not isinstance(payload, dict):
            raise WebhookRejected("body must be a JSON prediction")
        return state_of(payload)
