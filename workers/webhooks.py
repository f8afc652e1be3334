"""HTTP endpoints backends call: one webhook endpoint for every backend, and the node
output upload (ingest).

Webhooks carry the take's per-attempt secret in the path (Cog cannot sign them; providers'
own signatures, like Replicate's, are checked as well by their backend's `parse_webhook`).
Uploads carry the node's token in the path and the attempt's secret in `X-Prediction-ID`
(Cog's uploader sends no credentials of its own; the prediction id is ours to choose). Both
compare secrets in constant time, and an unknown, stale or forged call gets a 404 and
changes nothing.
"""

from __future__ import annotations

import os
import tempfile
import uuid

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.text import get_valid_filename
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from config.startup import DOCUMENTED_NODE_TOKEN
from generation import lifecycle
from generation.models import IN_FLIGHT, Node, Take

from .backends import WebhookRejected, backend_for
from .backends.cog import parse_prediction_id
from .credentials import CredentialError
from .dispatch import target_of

CHUNK = 1024 * 1024
# Live previews (`<take>.preview.webp`, from diffusers nodes) are a few KB of WebP.
PREVIEW_SUFFIX = ".preview.webp"
PREVIEW_MAX_BYTES = 512 * 1024


@csrf_exempt
@require_http_methods(["POST"])
def take_webhook(request: HttpRequest, take_id, secret: str) -> HttpResponse:
    """A backend's callback for a take's current attempt, whichever backend it is."""
    take = (
        Take.objects.dangerously_unscoped()
        .select_related("node", "provider")
        .filter(pk=take_id)
        .first()
    )
    target = take and target_of(take)
    if target is None or not lifecycle.secret_matches(secret, take.webhook_secret):
        return JsonResponse({"detail": "not found"}, status=404)
    headers = {key.lower(): value for key, value in request.headers.items()}
    try:
        with backend_for(target) as backend:
            state = backend.parse_webhook(headers, request.body)
    except (WebhookRejected, CredentialError) as exc:
        return JsonResponse({"detail": str(exc)}, status=400)
    if not lifecycle.apply_state(take.pk, state, secret=secret, calls_back=backend.calls_back):
        return JsonResponse({"detail": "not found"}, status=404)
    return JsonResponse({"ok": True})


def nodes_for_token(token: str) -> list[int]:
    """Ids of the nodes holding this upload token (constant-time compare against each)."""
    return [
        node.pk
        for node in Node.objects.exclude(auth_token="").only("pk", "auth_token")
        if lifecycle.secret_matches(token, node.auth_token)
    ]


@csrf_exempt
@require_http_methods(["PUT"])
def ingest(request: HttpRequest, token: str, filename: str) -> HttpResponse:
    """A node's output upload: the node's token in the path, and in `X-Prediction-ID` the
    take id with its attempt's secret (`backends.cog.prediction_id`), so a node token alone
    cannot write into any take. The demo token the README prints works only with DEBUG."""
    if not settings.DEBUG and token == DOCUMENTED_NODE_TOKEN:
        return JsonResponse({"detail": "not found"}, status=404)
    take_id, secret = parse_prediction_id(request.headers.get("X-Prediction-ID", ""))
    try:
        take_uuid = uuid.UUID(take_id)
    except ValueError:
        return JsonResponse({"detail": "not found"}, status=404)
    node_ids = nodes_for_token(token)
    live = Take.objects.dangerously_unscoped().filter(
        pk=take_uuid, node_id__in=node_ids, status__in=IN_FLIGHT
    )
    take = live.only("webhook_secret").first()
    if not node_ids or take is None or not lifecycle.secret_matches(secret, take.webhook_secret):
        return JsonResponse({"detail": "not found"}, status=404)
    if filename.endswith(PREVIEW_SUFFIX):
        return _ingest_preview(request, take_uuid, node_ids)
    with tempfile.SpooledTemporaryFile(max_size=8 * CHUNK) as spool:
        size = 0
        while chunk := request.read(CHUNK):
            size += len(chunk)
            if size > settings.INGEST_MAX_BYTES:
                return JsonResponse({"detail": "file too large"}, status=413)
            spool.write(chunk)
        spool.seek(0)
        # Named by us: the uploaded file's name carries the attempt's secret.
        extension = os.path.splitext(get_valid_filename(filename) or "")[1][:8] or ".mp4"
        name = default_storage.save(
            f"takes/{take_uuid}/{uuid.uuid4().hex[:8]}-output{extension}", File(spool)
        )
    if not lifecycle.attach_upload(take_uuid, node_ids, name, secret=secret):
        return JsonResponse({"detail": "not found"}, status=404)
    response = HttpResponse(status=201)
    response["Location"] = f"{settings.PUBLIC_BASE_URL}/ingested/{take_id}/"
    return response


def _ingest_preview(request: HttpRequest, take_id: uuid.UUID, node_ids: list[int]) -> HttpResponse:
    """Keep a node's live preview of a take it runs as the take's latest."""
    body = request.read(PREVIEW_MAX_BYTES + 1)
    if len(body) > PREVIEW_MAX_BYTES:
        return JsonResponse({"detail": "preview too large"}, status=413)
    if not body.startswith(b"RIFF") or body[8:12] != b"WEBP":
        return JsonResponse({"detail": "a preview is a WebP image"}, status=415)
    name = default_storage.save(
        f"takes/{take_id}/live-{uuid.uuid4().hex[:8]}.webp", ContentFile(body)
    )
    if not lifecycle.attach_preview(take_id, node_ids, name):
        return JsonResponse({"detail": "not found"}, status=404)
    return HttpResponse(status=204)
