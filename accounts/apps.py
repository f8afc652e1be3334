from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        import config.startup  # noqa: F401  (registers the embedded-secrets check)

        from . import signals  # noqa: F401
        from .sites import sync_site

        post_migrate.connect(sync_site, sender=self, dispatch_uid="accounts.sync_site")
