from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self) -> None:
        # Stripe's tasks and admin live in their own modules; autodiscovery and the admin
        # only import tasks.py and admin.py.
        from . import signals, stripe_admin, stripe_tasks  # noqa: F401
