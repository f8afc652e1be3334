import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_asgi_application()

from config.startup import refuse_embedded_secrets  # noqa: E402  (needs settings loaded)

refuse_embedded_secrets()
