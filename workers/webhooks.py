"""HTTP endpoints nodes and providers call: prediction webhooks, provider callbacks and
output uploads (ingest).

Webhooks carry the take's per-attempt secret in the path (Cog cannot sign them); uploads
carry the node's token in the path (Cog's uploader sends no credentials of its own, only
`X-Prediction-ID`, our take id). Both compare secrets in constant time, and an unknown,
stale or forged call gets a 404 and changes nothing.
"""

from __future__ import annotations

import json
import tempfile

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from generation.models import Take

from .backends.upstream import WebhookRejected, backend_for
from .callbacks import apply_prediction, nodes_for_token, secret_matches, store_upload
from .credentials import CredentialError
from .providers import apply_job_state

CHUNK = 1024 * 1024


@csrf_exempt
@require_http_methods(["POST"])
def cog_webhook(request: HttpRequest, take_id, secret: str) -> HttpResponse:
    try:
        payload = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"detail": "body must be a JSON prediction"}, status=400)
    if not isinstance(payload, dict):
        return JsonResponse({"detail": "body must be a JSON prediction"}, status=400)
    if not apply_prediction(take_id, payload, secret=secret):
        return JsonResponse({"detail": "not found"}, status=404)
    return JsonResponse({"ok": True})


@csrf_exempt
@require_http_methods(["POST"])
def provider_webhook(request: HttpRequest, take_id, secret: str) -> HttpResponse:
    """An upstream provider's callback for a take's current attempt (the secret in the
    path is per attempt; Replicate's Standard Webhooks signature is checked as well)."""
    take = (
        Take.objects.dangerously_unscoped()
        .select_related("provider")
        .filter(pk=take_id, provider__isnull=False)
        .first()
    )
    if take is None or not secret_matches(secret, take.webhook_secret):
        return JsonResponse({"detail": "not found"}, status=404)
    headers = {key.lower(): value for key, value in request.headers.items()}
    try:
        with backend_for(take.provider) as backend:
            state = backend.parse_webhook(headers, request.body)
    except (WebhookRejected, CredentialError) as exc:
        return JsonResponse({"detail": str(exc)}, status=400)
    if not apply_job_state(take.pk, state, secret=secret):
        return JsonResponse({"detail": "not found"}, status=404)
    return JsonResponse({"ok": True})


@csrf_exempt
@require_http_methods(["PUT"])
def ingest(request: HttpRequest, token: str, filename: str) -> HttpResponse:
    node_ids = nodes_for_token(token)
    take_id = request.headers.get("X-Prediction-ID", "")
    if not node_ids or not take_id:
        return JsonResponse({"detail": "not found"}, status=404)
    with tempfile.SpooledTemporaryFile(max_size=8 * CHUNK) as spool:
        size = 0
        while chunk := request.read(CHUNK):
            size += len(chunk)
            if size > settings.INGEST_MAX_BYTES:
                return JsonResponse({"detail": "file too large"}, status=413)
            spool.write(chunk)
        spool.seek(0)
        name = store_upload(node_ids, take_id, filename, spool)
    if name is None:
        return JsonResponse({"detail": "not found"}, status=404)
    response = HttpResponse(status=201)
    response["Location"] = f"{settings.PUBLIC_BASE_URL}/ingested/{take_id}/{filename}"
    return response
