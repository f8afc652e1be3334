from django.urls import path

from . import api

urlpatterns = [
    path("api/takes/", api.takes, name="api_takes"),
    path("api/takes/<uuid:take_id>/", api.take_detail, name="api_take"),
    path("api/takes/<uuid:take_id>/cancel/", api.take_cancel, name="api_take_cancel"),
    path("api/takes/<uuid:take_id>/finalize/", api.take_finalize, name="api_take_finalize"),
]
