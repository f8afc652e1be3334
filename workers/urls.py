from django.urls import path

from . import views

urlpatterns = [
    path("media/signed/<str:token>/", views.signed_media, name="signed_media"),
]
