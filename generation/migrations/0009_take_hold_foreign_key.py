"""Take.hold becomes a foreign key to billing.Hold (it was a bare integer `hold_id`).

The column keeps its name and values (`hold_id`); the database gains the constraint."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0003_ledger_entry_kind_revoke"),
        ("generation", "0008_workspace_usage_counter"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(model_name="take", name="hold_id"),
                migrations.AddField(
                    model_name="take",
                    name="hold",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="takes",
                        to="billing.hold",
                    ),
                ),
            ],
            database_operations=[
                # Rename the integer column out of the way, add the key, copy, drop.
                migrations.RenameField(model_name="take", old_name="hold_id", new_name="old_hold"),
                migrations.AddField(
                    model_name="take",
                    name="hold",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="takes",
                        to="billing.hold",
                    ),
                ),
                migrations.RunSQL(
                    "UPDATE generation_take SET hold_id = old_hold",
                    reverse_sql=migrations.RunSQL.noop,
                ),
                migrations.RemoveField(model_name="take", name="old_hold"),
            ],
        ),
    ]
