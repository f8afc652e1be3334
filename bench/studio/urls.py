"""The platform's URLs plus `/bench/bare/`: the cheapest authenticated DRF view, the
baseline the studio's polling endpoint is compared with."""

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from config.urls import urlpatterns as platform_urls


class Bare(APIView):
    """Session authentication and IsAuthenticated (the project's DRF defaults), no query
    of its own: what any signed-in request costs before the view does anything."""

    def get(self, request):
        return Response({"ok": True})


urlpatterns = [path("bench/bare/", Bare.as_view()), *platform_urls]
