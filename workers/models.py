"""Upstream providers (Replicate, fal, Kling, Runway) and the jobs sent to them.

A `Provider` is one account at one upstream API: where it is, how to authenticate, how
many takes it may run at once, and what a clip costs the platform. A `ProviderJob` is one
attempt of a take at a provider: its id there, what came of it and what it cost, which is
what the operations page measures.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.tenancy import WorkspaceOwned
from generation.models import ATTEMPT_LIVE, AttemptStatus

from . import credentials


class ProviderKind(models.TextChoices):
    REPLICATE = "replicate", "Replicate"
    FAL = "fal", "fal"
    KLING = "kling", "Kling"
    RUNWAY = "runway", "Runway"
    COMFYUI = "comfyui", "ComfyUI"


class Provider(models.Model):
    """One account at an upstream video API."""

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=16, choices=ProviderKind.choices)
    base_url = models.URLField(blank=True, help_text=_("Empty: the provider's public API."))
    # Credentials: an environment variable's name, or the value stored encrypted.
    api_key_env = models.CharField(
        max_length=120, blank=True, help_text=_("Read the API key from this environment variable.")
    )
    api_key_encrypted = models.TextField(blank=True, editable=False)
    secret_env = models.CharField(
        max_length=120,
        blank=True,
        help_text=_("Kling: the secret key. Replicate: the webhook signing secret (whsec_…)."),
    )
    secret_encrypted = models.TextField(blank=True, editable=False)
    max_concurrency = models.PositiveSmallIntegerField(default=4)
    # What a clip costs the platform, in credits (margin reporting).
    cost_per_clip = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    cost_per_second = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def api_key(self) -> str:
        return credentials.resolve(self.api_key_env, self.api_key_encrypted)

    def secret(self) -> str:
        return credentials.resolve(self.secret_env, self.secret_encrypted)

    @property
    def backend_kind(self) -> str:
        """Which `workers.backends` client speaks to this provider."""
        return self.kind

    def cost_of(self, seconds: int) -> Decimal:
        """What one clip of `seconds` seconds costs the platform."""
        return self.cost_per_clip + self.cost_per_second * seconds


# The attempt vocabulary lives with the take, whose lifecycle ends attempts.
JobStatus = AttemptStatus
JOB_LIVE = ATTEMPT_LIVE


class ProviderJob(WorkspaceOwned):
    """One attempt of a take: on a GPU node (`node`) or at an upstream provider
    (`provider`); when it was sent, how it ended, what it cost. (Named for its first use;
    it records node attempts too.)"""

    workspace_field = "take__workspace"

    take = models.ForeignKey("generation.Take", on_delete=models.CASCADE, related_name="jobs")
    provider = models.ForeignKey(
        Provider, on_delete=models.PROTECT, related_name="jobs", null=True, blank=True
    )
    node = models.ForeignKey(
        "generation.Node", on_delete=models.SET_NULL, related_name="jobs", null=True, blank=True
    )
    attempt = models.PositiveSmallIntegerField()
    external_id = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.SUBMITTED)
    error = models.TextField(blank=True)
    output_url = models.URLField(max_length=2000, blank=True)
    cost = models.DecimalField(max_digits=12, decimal_places=4, default=0)
    submitted_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["submitted_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["take", "attempt"], name="provider_job_one_per_attempt"
            ),
            models.CheckConstraint(
                condition=models.Q(provider__isnull=True) | models.Q(node__isnull=True),
                name="provider_job_on_a_node_or_at_a_provider",
            ),
        ]
        indexes = [models.Index(fields=["provider", "submitted_at"], name="provider_job_by_time")]

    def __str__(self) -> str:
        return f"{self.provider or self.node} job {self.external_id or '?'} ({self.status})"
