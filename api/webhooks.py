"""Customer webhooks: which events go where, signed with Standard Webhooks, delivered safely.

`emit()` records one delivery per subscribed, active endpoint and enqueues it on commit.
`attempt()` (the Celery task `api.tasks.deliver_webhook`) sends it once: the host is
resolved and every address checked (no private, loopback, link-local, reserved or
multicast targets unless `WEBHOOK_ALLOW_LOOPBACK` lets loopback through for local work),
the request goes to the checked address (`workers.outbound.pinned_request`: a second DNS
answer cannot redirect it), and redirects are not followed. A failure is retried after
`WEBHOOK_RETRY_DELAYS` (about a day in all); an endpoint failing for
`WEBHOOK_DISABLE_AFTER_HOURS` is disabled and its workspace's owners are told by e-mail.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import time
import uuid
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from celery import current_app
from django.conf import settings
from django.core.mail import send_mail
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from standardwebhooks.webhooks import Webhook

from accounts.models import Membership, Role
from workers import outbound

from .models import DeliveryAttempt, DeliveryStatus, WebhookDelivery, WebhookEndpoint

log = logging.getLogger(__name__)
RESPONSE_KEEP_CHARS = 1000


class UnsafeURL(Exception):
    """The webhook URL may not be called; the message says why."""


def check_url_shape(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of an acceptable webhook URL (no resolving); else UnsafeURL."""
    parts = urlsplit(url)
    allowed = {"https", "http"} if settings.WEBHOOK_ALLOW_LOOPBACK else {"https"}
    if parts.scheme not in allowed:
        raise UnsafeURL(_("Webhook URLs must use https."))
    if parts.username or parts.password:
        raise UnsafeURL(_("Webhook URLs may not carry a user name or password."))
    if not parts.hostname:
        raise UnsafeURL(_("The webhook URL has no host."))
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeURL(_("The webhook URL's port is not valid.")) from exc
    return parts.scheme, parts.hostname, port


def _address_allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return settings.WEBHOOK_ALLOW_LOOPBACK
    return not (
        ip.is_private
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
        or not ip.is_global
    )


def resolve_safe(url: str) -> str:
    """The checked address to connect to for `url` (every address the host resolves to is
    checked); else UnsafeURL."""
    _scheme, host, port = check_url_shape(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeURL(_("The webhook host %(host)s does not resolve.") % {"host": host}) from exc
    addresses = sorted({info[4][0] for info in infos})
    refused = [a for a in addresses if not _address_allowed(a)]
    if refused or not addresses:
        raise UnsafeURL(
            _("The webhook host %(host)s resolves to a private or reserved address (%(ip)s).")
            % {"host": host, "ip": ", ".join(refused)}
        )
    return addresses[0]


# --- recording events ------------------------------------------------------------------


def emit(workspace_id: int, event_type: str, data: dict) -> list[WebhookDelivery]:
    """Record `event_type` for every active endpoint of the workspace that wants it."""
    endpoints = WebhookEndpoint.objects.dangerously_unscoped().filter(
        workspace_id=workspace_id, is_active=True, disabled_at__isnull=True
    )
    return [emit_to(e, event_type, data) for e in endpoints if event_type in e.event_types]


def emit_to(endpoint: WebhookEndpoint, event_type: str, data: dict) -> WebhookDelivery:
    """Record one event for one endpoint and enqueue its delivery on commit."""
    payload = json.loads(
        json.dumps(
            {"type": event_type, "timestamp": timezone.now(), "data": data},
            cls=DjangoJSONEncoder,
        )
    )
    delivery = WebhookDelivery.objects.dangerously_unscoped().create(
        endpoint=endpoint,
        message_id=f"msg_{uuid.uuid4().hex}",
        event_type=event_type,
        payload=payload,
        next_attempt_at=timezone.now(),
    )
    delivery_id = str(delivery.pk)
    transaction.on_commit(lambda: _enqueue([delivery_id]))
    return delivery


DELIVER = "api.tasks.deliver_webhook"


def _enqueue(ids: list[str], countdown: float = 0) -> None:
    for delivery_id in ids:
        current_app.send_task(DELIVER, args=(delivery_id,), countdown=countdown)


def redeliver(delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again now, whatever its state (from the page or the API)."""
    WebhookDelivery.objects.dangerously_unscoped().filter(pk=delivery.pk).update(
        status=DeliveryStatus.PENDING, next_attempt_at=timezone.now()
    )
    transaction.on_commit(lambda: _enqueue([str(delivery.pk)]))
    delivery.refresh_from_db()
    return delivery


# --- sending ----------------------------------------------------------------------------


def sign_headers(endpoint: WebhookEndpoint, message_id: str, body: str, at: datetime) -> dict:
    signature = Webhook(endpoint.secret).sign(message_id, at, body)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": "Retake-Webhooks/1",
    }


def _post(url: str, body: str, headers: dict) -> httpx.Response:
    address = resolve_safe(url)
    with httpx.Client(timeout=settings.WEBHOOK_TIMEOUT_SECONDS, follow_redirects=False) as client:
        request = outbound.pinned_request(
            client, "POST", url, address, content=body.encode(), headers=headers
        )
        return client.send(request)


def attempt(delivery_id: str, *, now: datetime | None = None) -> WebhookDelivery | None:
    """Send one pending delivery once and record how it went; schedule the retry."""
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.dangerously_unscoped()
            # Lock the delivery row only: with the joined endpoint locked too, a worker
            # sending one of an endpoint's deliveries made another worker skip the next
            # one (two events of one take), which then waited for `requeue_due`.
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(pk=delivery_id, status=DeliveryStatus.PENDING)
            .first()
        )
        if delivery is None:
            return None
        # Claim it: a duplicate message finds it not due yet.
        claim_until = timezone.now() + timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS + 30)
        if delivery.next_attempt_at and delivery.next_attempt_at > timezone.now():
            return None
        delivery.next_attempt_at = claim_until
        delivery.save(update_fields=["next_attempt_at"])
    endpoint = delivery.endpoint
    body = json.dumps(delivery.payload, separators=(",", ":"))
    sent_at = now or timezone.now()
    started = time.monotonic()
    status_code, text, error = None, "", ""
    try:
        response = _post(
            endpoint.url, body, sign_headers(endpoint, delivery.message_id, body, sent_at)
        )
        status_code, text = response.status_code, response.text[:RESPONSE_KEEP_CHARS]
    except UnsafeURL as exc:
        error = str(exc)
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    duration_ms = int((time.monotonic() - started) * 1000)
    ok = status_code is not None and 200 <= status_code < 300
    return _record(delivery, sent_at, status_code, text, error, duration_ms, ok)


def _record(delivery, sent_at, status_code, text, error, duration_ms, ok) -> WebhookDelivery:
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.dangerously_unscoped()
            .select_for_update(of=("self",))
            .select_related("endpoint")
            .get(pk=delivery.pk)
        )
        DeliveryAttempt.objects.dangerously_unscoped().create(
            delivery=delivery,
            at=sent_at,
            status_code=status_code,
            response_body=text,
            duration_ms=duration_ms,
            error=error,
        )
        delivery.attempts += 1
        delivery.last_attempt_at = sent_at
        delivery.response_status = status_code
        delivery.response_body = text
        delivery.response_ms = duration_ms
        delivery.error = error
        delays = settings.WEBHOOK_RETRY_DELAYS
        retry_in = None
        if ok:
            delivery.status = DeliveryStatus.SUCCEEDED
            delivery.next_attempt_at = None
        elif delivery.attempts > len(delays):
            delivery.status = DeliveryStatus.FAILED
            delivery.next_attempt_at = None
        else:
            retry_in = delays[delivery.attempts - 1]
            delivery.next_attempt_at = timezone.now() + timedelta(seconds=retry_in)
        delivery.save()
        _note_endpoint_health(delivery.endpoint, ok)
        if retry_in is not None:
            delivery_id = str(delivery.pk)
            transaction.on_commit(lambda: _enqueue([delivery_id], countdown=retry_in))
    return delivery


def _note_endpoint_health(endpoint: WebhookEndpoint, ok: bool) -> None:
    endpoint = (
        WebhookEndpoint.objects.dangerously_unscoped().select_for_update().get(pk=endpoint.pk)
    )
    now = timezone.now()
    if ok:
        if endpoint.failing_since is not None:
            endpoint.failing_since = None
            endpoint.save(update_fields=["failing_since"])
        return
    if endpoint.failing_since is None:
        endpoint.failing_since = now
        endpoint.save(update_fields=["failing_since"])
        return
    limit = timedelta(hours=settings.WEBHOOK_DISABLE_AFTER_HOURS)
    if endpoint.disabled_at is None and now - endpoint.failing_since >= limit:
        endpoint.disabled_at = now
        endpoint.is_active = False
        endpoint.save(update_fields=["disabled_at", "is_active"])
        transaction.on_commit(lambda: _tell_owners(endpoint.pk))


def _tell_owners(endpoint_id: int) -> None:
    endpoint = (
        WebhookEndpoint.objects.dangerously_unscoped()
        .select_related("workspace")
        .get(pk=endpoint_id)
    )
    owners = Membership.objects.filter(
        workspace=endpoint.workspace, role=Role.OWNER
    ).select_related("user")
    send_mail(
        _("Retake disabled a failing webhook endpoint"),
        _(
            "The webhook endpoint %(url)s of %(workspace)s has failed every delivery for "
            "%(hours)d hours, so it was disabled. Fix it, then enable it again on the API "
            "settings page."
        )
        % {
            "url": endpoint.url,
            "workspace": endpoint.workspace.name,
            "hours": settings.WEBHOOK_DISABLE_AFTER_HOURS,
        },
        settings.DEFAULT_FROM_EMAIL,
        [m.user.email for m in owners],
    )


def requeue_due(now: datetime | None = None) -> int:
    """Re-enqueue pending deliveries whose time came and went (a lost broker message)."""
    now = now or timezone.now()
    ids = [
        str(pk)
        for pk in WebhookDelivery.objects.dangerously_unscoped()
        .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now - timedelta(seconds=60))
        .values_list("pk", flat=True)[:500]
    ]
    _enqueue(ids)
    return len(ids)
