"""Load the demo data: an admin, a demo user, and each app's own demo rows.

Idempotent: running it again changes nothing. Each installed app may provide a
`demo.seed(stdout)` function (plans, video models, nodes…); they run in INSTALLED_APPS order.
"""

from importlib import import_module

from allauth.account.models import EmailAddress
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

DEMO_USERS = [
    # (email, password, is_staff)
    ("admin@retake.local", "retake-admin-demo", True),
    ("demo@retake.local", "retake-demo", False),
]


class Command(BaseCommand):
    help = "Create the demo admin and user, plus every app's demo data (idempotent)."

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        User = get_user_model()
        for email, password, staff in DEMO_USERS:
            user, created = User.objects.get_or_create(
                username=email, defaults={"email": email, "is_staff": staff, "is_superuser": staff}
            )
            if created:
                user.set_password(password)
                user.save(update_fields=["password"])
            EmailAddress.objects.update_or_create(
                user=user, email=email, defaults={"verified": True, "primary": True}
            )
        for config in apps.get_app_configs():
            try:
                demo = import_module(f"{config.name}.demo")
            except ModuleNotFoundError as exc:
                if exc.name != f"{config.name}.demo":
                    raise
                continue
            demo.seed(self.stdout)
        self.stdout.write(self.style.SUCCESS("Demo data ready. Sign in with:"))
        for email, password, staff in DEMO_USERS:
            role = "admin (/admin/)" if staff else "creator"
            self.stdout.write(f"  {role:16} {email} / {password}")
