"""Admin for the catalog (models, node pools, nodes, node-pool routes) and a read-only view
of projects, shots and takes. Takes change only through their actions: the one admin
action here cancels through `lifecycle.cancel_take`, which releases the hold."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from config.admin import ReadOnlyAdmin

from .lifecycle import TakeActionError, cancel_take
from .models import Node, NodePool, Project, Route, RouteKind, Shot, Take, VideoModel

URL_FIELDS = {models.URLField: {"assume_scheme": "https"}}


def https_url_formfield(field: models.Field, **kwargs) -> forms.Field | None:
    """A model field's form field, URLs assuming https (Django 6's default) like URL_FIELDS."""
    if isinstance(field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return field.formfield(**kwargs)


class NodePoolRouteForm(forms.ModelForm):
    """A route to a pool of GPU nodes (provider routes are edited on the provider)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.instance.kind = RouteKind.NODE_POOL
        self.instance.provider = None


class NodePoolRouteInline(admin.TabularInline):
    model = Route
    form = NodePoolRouteForm
    extra = 0
    fields = ["pool", "priority", "is_active"]
    verbose_name = _("route to a node pool")
    verbose_name_plural = _("routes to node pools")

    def get_queryset(self, request):
        return super().get_queryset(request).filter(kind=RouteKind.NODE_POOL)


@admin.register(VideoModel)
class VideoModelAdmin(admin.ModelAdmin):
    list_display = [
        "slug",
        "name",
        "family",
        "supports_text_to_video",
        "supports_image_to_video",
        "supports_first_last_frame",
        "is_active",
    ]
    list_filter = ["family", "is_active"]
    search_fields = ["slug", "name", "family"]
    inlines = [NodePoolRouteInline]


@admin.register(NodePool)
class NodePoolAdmin(admin.ModelAdmin):
    list_display = ["slug", "name"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["name", "pool", "base_url", "state", "slots", "last_health",
                    "last_health_at", "consecutive_failures", "cost_per_gpu_second"]  # fmt: skip
    list_filter = ["state", "pool"]
    search_fields = ["name", "base_url"]
    filter_horizontal = ["served_models"]
    readonly_fields = ["last_health", "last_health_at", "consecutive_failures"]
    formfield_overrides = URL_FIELDS


@admin.register(Project)
class ProjectAdmin(ReadOnlyAdmin):
    list_display = ["name", "workspace", "is_inbox", "created_at"]
    search_fields = ["name", "workspace__name"]


@admin.register(Shot)
class ShotAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "project", "created_at"]
    search_fields = ["prompt", "project__name"]


@admin.register(Take)
class TakeAdmin(ReadOnlyAdmin):
    list_display = ["id", "workspace", "video_model", "mode", "resolution", "duration_seconds",
                    "status", "progress", "charged", "node", "provider", "created_at"]  # fmt: skip
    list_filter = ["status", "mode", "video_model", "node", "provider"]
    search_fields = ["id", "workspace__name", "shot__prompt"]
    date_hierarchy = "created_at"
    actions = ["cancel_takes"]

    @admin.action(description=_("Cancel the selected takes (their holds are released)"))
    def cancel_takes(self, request, queryset) -> None:
        canceled = 0
        for take in queryset:
            try:
                cancel_take(take)
            except TakeActionError as exc:
                self.message_user(request, f"{take.pk}: {exc}", messages.WARNING)
            else:
                canceled += 1
        self.message_user(
            request,
            ngettext("%(n)d take canceled.", "%(n)d takes canceled.", canceled) % {"n": canceled},
        )
