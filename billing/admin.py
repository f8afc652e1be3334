"""Billing admin: plans, packages, subscriptions, rate cards and schedules are editable;
the ledger is read-only and changes only through actions (adjust credits)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from config.admin import ReadOnlyAdmin

from . import ledger
from .models import (
    Consumption,
    CreditLot,
    CreditPackage,
    HoldAllocation,
    HolidayOverride,
    LedgerEntry,
    Plan,
    PricingSchedule,
    PricingWindow,
    RateCard,
    Subscription,
    Wallet,
)
from .models import Hold as HoldModel
from .plans import grant_period_credits
from .pricing import WEEKDAYS, WindowSpec, schedule_spec, validate_windows, week_grid


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "monthly_credits",
        "daily_free_credits",
        "queue_priority",
        "max_resolution",
        "off_peak_allowed",
        "off_peak_free",
        "prices",
        "is_active",
    ]
    list_filter = ["is_active", "off_peak_allowed", "off_peak_free"]
    search_fields = ["name", "slug"]


@admin.register(CreditPackage)
class CreditPackageAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "credits", "validity_days", "prices", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = [
        "workspace",
        "plan",
        "status",
        "source",
        "current_period_start",
        "current_period_end",
        "cancel_at_period_end",
    ]
    list_filter = ["status", "source", "plan"]
    search_fields = ["workspace__name", "workspace__slug", "external_id"]
    raw_id_fields = ["workspace"]

    def save_model(self, request, obj, form, change) -> None:
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            if grant_period_credits(obj) is not None:
                messages.info(request, _("The plan's credits for this period were granted."))


# --- the ledger, read-only ---------------------------------------------------------------


class AdjustCreditsForm(forms.Form):
    delta = forms.IntegerField(
        label=_("Credits"), help_text=_("Positive adds credits, negative removes them.")
    )
    reason = forms.CharField(
        max_length=500, widget=forms.Textarea(attrs={"rows": 3}), label=_("Reason")
    )
    token = forms.CharField(widget=forms.HiddenInput)

    def clean_delta(self) -> int:
        delta = self.cleaned_data["delta"]
        if delta == 0:
            raise ValidationError(_("An adjustment must be non-zero."))
        return delta


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdmin):
    list_display = ["workspace", "balance", "held", "updated_at"]
    search_fields = ["workspace__name", "workspace__slug"]
    readonly_fields = ["workspace", "balance", "held", "created_at", "updated_at"]
    actions = ["adjust_credits"]

    def get_queryset(self, request):
        return Wallet.objects.dangerously_unscoped().select_related("workspace")

    @admin.action(description=_("Adjust credits…"))
    def adjust_credits(self, request: HttpRequest, queryset) -> HttpResponse | None:
        if "apply" in request.POST:
            form = AdjustCreditsForm(request.POST)
            if form.is_valid():
                data = form.cleaned_data
                done = 0
                for wallet in queryset:
                    try:
                        ledger.adjust_credits(
                            wallet.workspace,
                            data["delta"],
                            actor=request.user,
                            reason=data["reason"],
                            idempotency_key=f"admin:{data['token']}:{wallet.pk}",
                        )
                        done += 1
                    except ledger.LedgerError as exc:
                        self.message_user(
                            request, f"{wallet.workspace}: {exc}", level=messages.ERROR
                        )
                if done:
                    self.message_user(
                        request,
                        _("Adjusted %(n)d wallet(s) by %(delta)+d credits.")
                        % {"n": done, "delta": data["delta"]},
                    )
                return None
        else:
            form = AdjustCreditsForm(initial={"token": uuid.uuid4().hex})
        return TemplateResponse(
            request,
            "admin/billing/adjust_credits.html",
            {
                **self.admin_site.each_context(request),
                "title": _("Adjust credits"),
                "opts": self.model._meta,
                "wallets": queryset,
                "form": form,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )

    def has_change_permission(self, request, obj=None) -> bool:
        # The changelist must accept the action POST; fields stay read-only.
        return obj is None and request.user.is_staff


@admin.register(CreditLot)
class CreditLotAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "workspace",
        "source",
        "amount",
        "remaining",
        "priority",
        "effective_at",
        "expires_at",
        "expired_at",
    ]
    list_filter = ["source"]
    search_fields = ["workspace__name", "idempotency_key", "reason"]

    def get_queryset(self, request):
        return CreditLot.objects.dangerously_unscoped().select_related("workspace")


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "workspace",
        "kind",
        "amount",
        "held_delta",
        "balance_after",
        "actor",
        "reason",
    ]
    list_filter = ["kind"]
    search_fields = ["workspace__name", "idempotency_key", "reason"]

    def get_queryset(self, request):
        return LedgerEntry.objects.dangerously_unscoped().select_related("workspace", "actor")


class HoldAllocationInline(admin.TabularInline):
    model = HoldAllocation
    fields = ["lot", "amount", "charged", "returned"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(HoldModel)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "workspace", "amount", "charged", "status", "member"]
    list_filter = ["status"]
    search_fields = ["workspace__name", "idempotency_key"]
    inlines = [HoldAllocationInline]

    def get_queryset(self, request):
        return HoldModel.objects.dangerously_unscoped().select_related("workspace", "member")


@admin.register(Consumption)
class ConsumptionAdmin(ReadOnlyAdmin):
    list_display = ["id", "entry", "lot", "hold", "amount"]

    def get_queryset(self, request):
        return Consumption.objects.dangerously_unscoped()


# --- pricing -----------------------------------------------------------------------------


@admin.register(RateCard)
class RateCardAdmin(admin.ModelAdmin):
    list_display = ["video_model", "rates", "draft_rate", "is_active", "updated_at"]
    list_filter = ["is_active"]


class PricingWindowForm(forms.ModelForm):
    days = forms.TypedMultipleChoiceField(
        choices=list(enumerate(WEEKDAYS)), coerce=int, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = PricingWindow
        fields = ["days", "start", "end", "kind", "multiplier"]


class PricingWindowFormSet(forms.BaseInlineFormSet):
    """Refuses overlapping windows and gaps, naming where, before anything is saved."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        windows = [
            WindowSpec(
                tuple(form.cleaned_data["days"]),
                form.cleaned_data["start"],
                form.cleaned_data["end"],
                form.cleaned_data["kind"],
                Decimal(form.cleaned_data["multiplier"]),
            )
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        if windows or self.instance.is_active:
            validate_windows(windows)


class PricingWindowInline(admin.TabularInline):
    model = PricingWindow
    form = PricingWindowForm
    formset = PricingWindowFormSet
    extra = 0


class HolidayOverrideInline(admin.TabularInline):
    model = HolidayOverride
    extra = 0


@admin.register(PricingSchedule)
class PricingScheduleAdmin(admin.ModelAdmin):
    list_display = ["name", "time_zone", "is_active", "updated_at", "week_link"]
    readonly_fields = ["week_link"]
    inlines = [PricingWindowInline, HolidayOverrideInline]

    @admin.display(description=_("Week at a glance"))
    def week_link(self, obj: PricingSchedule) -> str:
        if not obj.pk:
            return "—"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:billing_pricingschedule_week", args=[obj.pk]),
            _("See the week's pricing"),
        )

    def get_urls(self):
        return [
            path(
                "<int:schedule_id>/week/",
                self.admin_site.admin_view(self.week_view),
                name="billing_pricingschedule_week",
            ),
            *super().get_urls(),
        ]

    def week_view(self, request: HttpRequest, schedule_id: int) -> HttpResponse:
        """The week as a 7×24 grid coloured by multiplier, rendered from the database."""
        schedule = get_object_or_404(
            PricingSchedule.objects.prefetch_related("windows", "holidays"), pk=schedule_id
        )
        spec = schedule_spec(schedule)
        error = ""
        rows: list = []
        try:
            rows = week_grid(spec)
        except ValidationError as exc:
            error = " ".join(exc.messages)
        multipliers = sorted({c["multiplier"] for row in rows for c in row["cells"]})
        top = max(multipliers, default=Decimal(1)) or Decimal(1)
        for row in rows:
            for cell in row["cells"]:
                cell["hue"] = int(120 * (1 - min(cell["multiplier"] / top, Decimal(1))))
        return TemplateResponse(
            request,
            "admin/billing/pricing_week.html",
            {
                **self.admin_site.each_context(request),
                "title": _("Pricing week: %(name)s") % {"name": schedule.name},
                "opts": PricingSchedule._meta,
                "original": schedule,
                "schedule": schedule,
                "rows": rows,
                "hours": range(24),
                "legend": multipliers,
                "holidays": schedule.holidays.all(),
                "error": error,
            },
        )
