"""Admin for Stripe's rows: the event store (status, attempts, error, retry) and what
payments bought and lost to refunds. Everything is read-only; retry calls the action."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from config.admin import ReadOnlyAdmin

from . import stripe_events
from .models import CreditRevocation, StripeCustomer, StripeEvent, StripePayment


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
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
            retried = sum(1 for event in queryset if stripe_events.retry_event(event))
        messages.info(request, _("%(n)d event(s) sent back to the worker.") % {"n": retried})


@admin.register(StripePayment)
class StripePaymentAdmin(ReadOnlyAdmin):
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
class CreditRevocationAdmin(ReadOnlyAdmin):
    list_display = ["payment", "cause", "requested", "taken", "shortfall", "created_at"]
    list_filter = ["cause"]


@admin.register(StripeCustomer)
class StripeCustomerAdmin(ReadOnlyAdmin):
    list_display = ["customer_id", "workspace", "created_at"]
    search_fields = ["customer_id", "workspace__name"]
