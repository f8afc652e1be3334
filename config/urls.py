from django.contrib import admin
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("accounts.urls")),
    path("", include("billing.urls")),
    path("", include("generation.urls")),
    path("", include("workers.urls")),
    path("", include("api.urls")),
]

handler404 = "api.views.not_found"
