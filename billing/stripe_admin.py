"""Admin for Stripe's rows: the event store (status, attempts, error, retry) and what
payments bought and lost to refunds. Everything is read-only; retry calls the action."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from . import webhooks
from .models import CreditRevocation, StripeCustomer, StripeEvent, StripePayment


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(StripeEvent)
class StripeEventAdmin(_ReadOnly):
    list_display = ["event_id", "type", "status", "attempts", "created", "received_at"]
    list_filter = ["status", "type"]
    search_fields = ["event_id", "type"]
    readonly_fields = [
        "event_id",
        "type",
        "status",
        "attempts",
        "last_error",
        "created",
        "received_at",
        "processed_at",
        "livemode",
        "payload",
    ]
    actions = ["retry"]

    @admin.action(description=_("Retry the selected events"))
    def retry(self, request, queryset) -> None:
        with transaction.atomic():
            retried = sum(1 for event in queryset if webhooks.retry_event(event))
        messages.info(request, _("%(n)d event(s) sent back to the worker.") % {"n": retried})


@admin.register(StripePayment)
class StripePaymentAdmin(_ReadOnly):
    list_display = [
        "reference",
        "workspace",
        "kind",
        "amount",
        "currency",
        "credits",
        "credits_revoked",
        "credits_shortfall",
        "created_at",
    ]
    list_filter = ["kind", "currency"]
    search_fields = ["reference", "payment_intent_id", "workspace__name"]


@admin.register(CreditRevocation)
class CreditRevocationAdmin(_ReadOnly):
    list_display = ["payment", "cause", "requested", "taken", "shortfall", "created_at"]
    list_filter = ["cause"]


@admin.register(StripeCustomer)
class StripeCustomerAdmin(_ReadOnly):
    list_display = ["customer_id", "workspace", "created_at"]
    search_fields = ["customer_id", "workspace__name"]
