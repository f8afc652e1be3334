from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "Public API"

    def ready(self) -> None:
        from . import events, schema  # noqa: F401  (signal receivers; OpenAPI extensions)
