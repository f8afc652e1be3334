from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "Public API"

    def ready(self) -> None:
        from . import schema  # noqa: F401  (OpenAPI extensions for the auth classes)
