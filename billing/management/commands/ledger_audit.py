"""Prove money rule 2 for every wallet: exit 1 and name each wallet that drifted."""

from django.core.management.base import BaseCommand, CommandError

from billing.ledger import audit_wallets
from billing.models import Wallet


class Command(BaseCommand):
    help = (
        "Check that every wallet's cached balance equals the sum of its entries and of its "
        "lots' remaining credits, that held credits match pending holds, and that no hold "
        "is orphaned. Exits 1 naming every wallet that drifted."
    )

    def handle(self, *args, **options) -> None:
        drifted = audit_wallets()
        total = Wallet.objects.dangerously_unscoped().count()
        for drift in drifted:
            self.stderr.write(
                f"wallet #{drift.wallet_id} (workspace #{drift.workspace_id}) drifted:"
            )
            for problem in drift.problems:
                self.stderr.write(f"  - {problem}")
        if drifted:
            ids = ", ".join(f"#{d.wallet_id}" for d in drifted)
            raise CommandError(f"{len(drifted)} of {total} wallets drifted: {ids}", returncode=1)
        self.stdout.write(self.style.SUCCESS(f"ledger_audit: {total} wallets, all consistent."))
