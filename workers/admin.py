"""Provider admin: where each upstream account is, its credentials (read from an environment
variable by name, or typed once and stored encrypted, never shown again), its concurrency
limit and cost, and the routes that send models to it. Provider jobs are read-only."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from config.admin import ReadOnlyAdmin
from generation.admin import URL_FIELDS, https_url_formfield
from generation.models import Route, RouteKind

from . import credentials
from .models import Provider, ProviderJob

KEEP = _("Stored encrypted and never shown again; leave empty to keep the stored value.")


class ProviderForm(forms.ModelForm):
    api_key = forms.CharField(
        label=_("API key"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=KEEP,
    )
    secret = forms.CharField(
        label=_("Secret"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_("Kling: the secret key. Replicate: the webhook signing secret. ") + KEEP,
    )
    forget_stored = forms.BooleanField(label=_("Forget the stored credentials"), required=False)

    class Meta:
        model = Provider
        fields = [
            "name",
            "slug",
            "kind",
            "base_url",
            "api_key_env",
            "secret_env",
            "max_concurrency",
            "cost_per_clip",
            "cost_per_second",
            "is_active",
        ]
        # Built at import, before the admin's formfield overrides apply.
        formfield_callback = staticmethod(https_url_formfield)

    def clean(self) -> dict:
        data = super().clean()
        if data.get("kind") == "kling" and not (
            data.get("secret") or data.get("secret_env") or self.instance.secret_encrypted
        ):
            self.add_error("secret", _("Kling needs the secret key as well as the access key."))
        return data

    def save(self, commit: bool = True) -> Provider:
        provider = super().save(commit=False)
        if self.cleaned_data.get("forget_stored"):
            provider.api_key_encrypted = ""
            provider.secret_encrypted = ""
        if self.cleaned_data.get("api_key"):
            provider.api_key_encrypted = credentials.encrypt(self.cleaned_data["api_key"])
        if self.cleaned_data.get("secret"):
            provider.secret_encrypted = credentials.encrypt(self.cleaned_data["secret"])
        if commit:
            provider.save()
        return provider


class ProviderRouteForm(forms.ModelForm):
    """A route to this provider (its kind is fixed before validation checks constraints)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.instance.kind = RouteKind.PROVIDER
        self.instance.pool = None


class RouteInline(admin.TabularInline):
    model = Route
    form = ProviderRouteForm
    fk_name = "provider"
    extra = 0
    fields = ["video_model", "provider_model", "priority", "extra_input", "is_active"]


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["name", "kind", "credential_source", "max_concurrency", "cost_per_clip",
                    "cost_per_second", "is_active"]  # fmt: skip
    list_filter = ["kind", "is_active"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [RouteInline]
    formfield_overrides = URL_FIELDS

    @admin.display(description=_("Credentials"))
    def credential_source(self, provider: Provider) -> str:
        if provider.api_key_env:
            return _("environment: %(name)s") % {"name": provider.api_key_env}
        return _("stored (encrypted)") if provider.api_key_encrypted else _("missing")


@admin.register(ProviderJob)
class ProviderJobAdmin(ReadOnlyAdmin):
    list_display = ["take", "provider", "attempt", "external_id", "status", "cost",
                    "submitted_at", "finished_at"]  # fmt: skip
    list_filter = ["provider", "status"]
    search_fields = ["external_id", "take__id"]

    def get_queryset(self, request):
        return ProviderJob.objects.dangerously_unscoped().select_related("provider")
