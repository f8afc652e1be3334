"""What the public API keeps: idempotent responses, hidden videos, webhook endpoints and
their deliveries."""

from __future__ import annotations

import secrets
import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.tenancy import WorkspaceOwned


class IdempotentResponse(WorkspaceOwned):
    """The first response to an `Idempotency-Key`, replayed byte for byte."""

    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE)
    key = models.CharField(max_length=200)
    # The method, path and body the key was first used with (SHA-256).
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    # The rendered JSON as sent (text, so a replay is the same bytes, key order included).
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "key"], name="idempotent_response_key"),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotent_response_age")]


class HiddenTake(WorkspaceOwned):
    """A take deleted through `DELETE /v1/videos/{id}`: gone from lists and lookups there."""

    workspace_field = "take__workspace"

    take = models.OneToOneField("generation.Take", on_delete=models.CASCADE, related_name="+")
    hidden_at = models.DateTimeField(auto_now_add=True)


class EventType(models.TextChoices):
    TAKE_SUCCEEDED = "take.succeeded", "take.succeeded"
    TAKE_FAILED = "take.failed", "take.failed"
    TAKE_CANCELED = "take.canceled", "take.canceled"
    TAKE_EXPIRED = "take.expired", "take.expired"
    VIDEO_COMPLETED = "video.completed", "video.completed"
    VIDEO_FAILED = "video.failed", "video.failed"
    WALLET_LOW_BALANCE = "wallet.low_balance", "wallet.low_balance"
    ROUGH_CUT_SUCCEEDED = "rough_cut.succeeded", "rough_cut.succeeded"
    ROUGH_CUT_FAILED = "rough_cut.failed", "rough_cut.failed"


def _webhook_secret() -> str:
    # Standard Webhooks secrets are base64 with a `whsec_` prefix.
    import base64

    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class WebhookEndpoint(WorkspaceOwned):
    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    event_types = models.JSONField(default=list)
    secret = models.CharField(max_length=80, default=_webhook_secret)
    is_active = models.BooleanField(default=True)
    # Set when the endpoint was switched off after failing for WEBHOOK_DISABLE_AFTER_HOURS.
    disabled_at = models.DateTimeField(null=True, blank=True)
    # The first failure of the current run of failures (cleared by a success).
    failing_since = models.DateTimeField(null=True, blank=True)
    # Threshold of low balance alerts; null means the endpoint sends none.
    low_balance_threshold = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.url


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")


class WebhookDelivery(WorkspaceOwned):
    """One event for one endpoint, with every attempt's outcome summed up."""

    workspace_field = "endpoint__workspace"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    # The Standard Webhooks `webhook-id`: the same for every attempt of this event.
    message_id = models.CharField(max_length=64, unique=True)
    event_type = models.CharField(max_length=40, choices=EventType.choices)
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.CharField(max_length=1000, blank=True)
    response_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="webhook_delivery_due",
            ),
        ]


class DeliveryAttempt(WorkspaceOwned):
    """One HTTP try of a delivery: the log the settings page and the API show."""

    workspace_field = "delivery__endpoint__workspace"

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.CharField(max_length=1000, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["at"]
