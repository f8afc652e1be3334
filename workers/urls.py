from django.urls import path

from . import views, webhooks

urlpatterns = [
    path("ops/", views.ops_page, name="ops"),
    path("media/signed/<str:token>/", views.signed_media, name="signed_media"),
    path("webhooks/takes/<uuid:take_id>/<str:secret>/", webhooks.take_webhook, name="take_webhook"),
    path("ingest/<str:token>/<str:filename>", webhooks.ingest, name="ingest"),
]
