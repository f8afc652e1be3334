"""Routes of the public API: `/api/v1/` (REST, OpenAPI) and `/v1/` (OpenAI-compatible)."""

from csp.decorators import csp_update
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from . import openai_compat as oa
from . import v1, views

takes = v1.TakeViewSet
hooks = v1.WebhookEndpointViewSet
wallet = v1.WalletViewSet
cuts = v1.RoughCutViewSet

urlpatterns = [
    # The settings page (keys, webhook endpoints, deliveries).
    path("team/api/", views.api_settings, name="api_settings"),
    path("team/api/keys/<int:key_id>/revoke/", views.revoke_key, name="api_key_revoke"),
    path("team/api/webhooks/", views.add_endpoint, name="api_webhook_add"),
    path(
        "team/api/webhooks/<int:endpoint_id>/",
        views.endpoint_detail,
        name="api_webhook_endpoint",
    ),
    path(
        "team/api/deliveries/<uuid:delivery_id>/redeliver/",
        views.redeliver,
        name="api_webhook_redeliver",
    ),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    # Redoc (vendored) styles itself with <style> elements it injects: the one page whose
    # policy allows inline styles. Scripts stay 'self' only (no inline script here).
    path(
        "api/v1/docs/",
        csp_update({"style-src": ["'unsafe-inline'"]})(
            SpectacularRedocView.as_view(url_name="api_schema")
        ),
        name="api_docs",
    ),
    path("api/v1/models/", v1.ModelViewSet.as_view({"get": "list"}), name="api_models"),
    path("api/v1/quotes/", v1.QuoteViewSet.as_view({"post": "create"}), name="api_quotes"),
    path("api/v1/takes/", takes.as_view({"get": "list", "post": "create"}), name="api_v1_takes"),
    path("api/v1/takes/<uuid:take_id>/", takes.as_view({"get": "retrieve"}), name="api_v1_take"),
    path(
        "api/v1/takes/<uuid:take_id>/cancel/",
        takes.as_view({"post": "cancel"}),
        name="api_v1_take_cancel",
    ),
    path(
        "api/v1/takes/<uuid:take_id>/finalize/",
        takes.as_view({"post": "finalize"}),
        name="api_v1_take_finalize",
    ),
    path(
        "api/v1/projects/",
        v1.ProjectViewSet.as_view({"get": "list", "post": "create"}),
        name="api_v1_projects",
    ),
    path(
        "api/v1/projects/<int:project_id>/",
        v1.ProjectViewSet.as_view({"get": "retrieve"}),
        name="api_v1_project",
    ),
    path(
        "api/v1/projects/<int:project_id>/rough-cuts/",
        cuts.as_view({"post": "create"}),
        name="api_v1_project_rough_cuts",
    ),
    path("api/v1/rough-cuts/", cuts.as_view({"get": "list"}), name="api_v1_rough_cuts"),
    path(
        "api/v1/rough-cuts/<uuid:rough_cut_id>/",
        cuts.as_view({"get": "retrieve"}),
        name="api_v1_rough_cut",
    ),
    path("api/v1/shots/", v1.ShotViewSet.as_view({"get": "list"}), name="api_v1_shots"),
    path(
        "api/v1/shots/<int:shot_id>/",
        v1.ShotViewSet.as_view({"get": "retrieve"}),
        name="api_v1_shot",
    ),
    path("api/v1/wallet/", wallet.as_view({"get": "balance"}), name="api_v1_wallet"),
    path("api/v1/wallet/lots/", wallet.as_view({"get": "lots"}), name="api_v1_wallet_lots"),
    path("api/v1/wallet/ledger/", wallet.as_view({"get": "ledger"}), name="api_v1_wallet_ledger"),
    path("api/v1/wallet/usage/", wallet.as_view({"get": "usage"}), name="api_v1_wallet_usage"),
    path(
        "api/v1/webhook-endpoints/",
        hooks.as_view({"get": "list", "post": "create"}),
        name="api_v1_webhook_endpoints",
    ),
    path(
        "api/v1/webhook-endpoints/<int:endpoint_id>/",
        hooks.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"}),
        name="api_v1_webhook_endpoint",
    ),
    path(
        "api/v1/webhook-endpoints/<int:endpoint_id>/deliveries/",
        hooks.as_view({"get": "deliveries"}),
        name="api_v1_webhook_deliveries",
    ),
    path(
        "api/v1/webhook-deliveries/<uuid:delivery_id>/",
        v1.WebhookDeliveryViewSet.as_view({"get": "retrieve"}),
        name="api_v1_webhook_delivery",
    ),
    path(
        "api/v1/webhook-deliveries/<uuid:delivery_id>/redeliver/",
        v1.WebhookDeliveryViewSet.as_view({"post": "redeliver"}),
        name="api_v1_webhook_redeliver",
    ),
    # OpenAI-compatible.
    path("v1/models", oa.ModelListViewSet.as_view({"get": "index"}), name="openai_models"),
    path(
        "v1/videos",
        oa.VideoViewSet.as_view({"get": "index", "post": "create"}),
        name="openai_videos",
    ),
    path(
        "v1/videos/<str:video_id>",
        oa.VideoViewSet.as_view({"get": "retrieve", "delete": "destroy"}),
        name="openai_video",
    ),
    path(
        "v1/videos/<str:video_id>/content",
        oa.VideoViewSet.as_view({"get": "content"}),
        name="openai_video_content",
    ),
]
