from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from .models import Invitation


@shared_task(name="accounts.tasks.purge_expired_invitations")
def purge_expired_invitations(older_than_days: int = 30) -> int:
    """Delete invitations that expired unaccepted more than `older_than_days` ago."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted, _ = Invitation.objects.filter(accepted_at__isnull=True, expires_at__lt=cutoff).delete()
    return deleted
