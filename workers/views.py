"""HTTP edges of the workers app: expiring downloads of stored media, the operations page."""

from __future__ import annotations

import mimetypes
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import IO
from urllib.parse import quote

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.files.storage import default_storage
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseForbidden,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_safe

from config.media_links import LinkExpired, LinkInvalid, read_signed_grant

from . import ops
from .reporting import node_stats, provider_stats

BYTE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK = 256 * 1024


@require_safe
def signed_media(request: HttpRequest, token: str) -> HttpResponse | StreamingHttpResponse:
    """Serve a stored file to whoever holds a valid, unexpired link (no login).

    Behind nginx (`MEDIA_ACCEL_REDIRECT` set) the answer is an `X-Accel-Redirect` to its
    internal media location, and nginx streams the file and its byte ranges; otherwise the
    file is streamed from the storage here, honouring a single `Range` request so browsers
    can seek in a video they play from it.
    """
    try:
        name, download_name = read_signed_grant(token)
    except LinkExpired:
        return HttpResponseForbidden("This link has expired.")
    except LinkInvalid:
        return HttpResponseForbidden("This link is not valid.")
    return stream_stored_file(request, name, download_name=download_name)


def stream_stored_file(
    request: HttpRequest, name: str, content_type: str | None = None, *, download_name: str = ""
) -> HttpResponse | StreamingHttpResponse:
    """Stream a stored file, honouring a single `Range` request (206 / 416); with
    `download_name`, as an attachment under that name. Behind nginx
    (`MEDIA_ACCEL_REDIRECT`), hand it over with `X-Accel-Redirect` instead: nginx then
    serves the file and its ranges."""
    content_type = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    accel = settings.MEDIA_ACCEL_REDIRECT
    if accel and settings.STORAGE_BACKEND == "filesystem":
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = accel.rstrip("/") + "/" + quote(name)
        response["Cache-Control"] = "private, max-age=300"
        if download_name:
            response["Content-Disposition"] = content_disposition_header(
                as_attachment=True, filename=download_name
            )
        return response
    if not default_storage.exists(name):
        raise Http404("No such file.")
    handle = default_storage.open(name, "rb")
    size = handle.size
    wanted = BYTE_RANGE.match(request.headers.get("Range", "").strip())
    if wanted and wanted.group(1) + wanted.group(2):
        first, last = wanted.groups()
        if first:
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
        else:
            start, end = max(0, size - int(last)), size - 1
        if start > end:
            handle.close()
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        handle.seek(start)
        response = StreamingHttpResponse(
            _read(handle, end - start + 1),
            status=206,
            content_type=content_type,
        )
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        if download_name:
            response["Content-Disposition"] = content_disposition_header(
                as_attachment=True, filename=download_name
            )
        response["Content-Length"] = str(end - start + 1)
    else:
        response = FileResponse(
            handle,
            as_attachment=bool(download_name),
            filename=download_name or os.path.basename(name),
            content_type=content_type,
        )
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=300"
    return response


def _read(handle: IO[bytes], length: int) -> Iterator[bytes]:
    try:
        while length > 0:
            chunk = handle.read(min(CHUNK, length))
            if not chunk:
                break
            length -= len(chunk)
            yield chunk
    finally:
        handle.close()


@staff_member_required
@require_safe
def ops_page(request: HttpRequest) -> HttpResponse:
    """The operations view: queues per class, takes per state, nodes, the last day by hour,
    and each upstream provider's success, latency and cost over the last day."""
    hours = ops.last_day_by_hour()
    states = ops.takes_by_state()
    queues = ops.queue_depth_by_class()
    return render(
        request,
        "ops/ops.html",
        {
            "queues": queues,
            "queue_top": max([1, *(q["queued"] for q in queues)]),
            "states": states,
            "state_top": max([1, *(s["count"] for s in states)]),
            "nodes": ops.node_status(),
            "hours": hours,
            "chart": ops.hourly_chart(hours),
            "day_charged": sum(h.charged for h in hours),
            "day_gpu_cost": sum(h.gpu_cost for h in hours),
            "provider_stats": provider_stats(timezone.now() - timedelta(days=1)),
            "node_stats": node_stats(timezone.now() - timedelta(days=1)),
        },
    )
