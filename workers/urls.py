from django.urls import path

from . import views, webhooks

urlpatterns = [
    path("ops/", views.ops_page, name="ops"),
    path("media/signed/<str:token>/", views.signed_media, name="signed_media"),
    path(
        "webhooks/cog/<uuid:take_id>/<str:secret>/",
        webhooks.cog_webhook,
        name="cog_webhook",
    ),
    path(
        "webhooks/providers/<uuid:take_id>/<str:secret>/",
        webhooks.provider_webhook,
        name="provider_webhook",
    ),
    path("ingest/<str:token>/<str:filename>", webhooks.ingest, name="ingest"),
]
