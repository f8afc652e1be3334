from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from .actions import ensure_personal_workspace


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="personal_workspace")
def give_new_user_a_personal_workspace(sender, instance, created, **kwargs) -> None:
    if created:
        ensure_personal_workspace(instance)
