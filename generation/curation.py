"""Keeping takes: mark one as the shot's chosen take, favourite takes, cost per shot/project.

These change no credits; they are the creator's choices about what was drawn.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Sum
from django.utils.translation import gettext as _

from .lifecycle import TakeActionError
from .models import Project, Shot, Take, TakeStatus


@transaction.atomic
def choose_take(take: Take) -> Shot:
    """Make `take` its shot's chosen take; only a delivered take can be kept."""
    if take.status != TakeStatus.SUCCEEDED:
        raise TakeActionError(_("Only a finished take can be the shot's chosen take."))
    shot = Shot.objects.dangerously_unscoped().select_for_update().get(pk=take.shot_id)
    shot.chosen_take = take
    shot.save(update_fields=["chosen_take"])
    return shot


@transaction.atomic
def set_favourite(take: Take, favourite: bool) -> Take:
    """Mark or unmark a take as a favourite (a second identical click changes nothing)."""
    Take.objects.dangerously_unscoped().filter(pk=take.pk).update(is_favourite=favourite)
    take.is_favourite = favourite
    return take


def _charged_by(workspace, field: str, ids: list[int]) -> dict[int, int]:
    """Credits charged so far, grouped by `field` (delivered takes only: failures are free)."""
    rows = (
        Take.objects.for_workspace(workspace)
        .filter(**{f"{field}__in": ids})
        .order_by()
        .values(field)
        .annotate(total=Sum("charged"))
    )
    costs = dict.fromkeys(ids, 0)
    costs.update({row[field]: row["total"] or 0 for row in rows})
    return costs


def shot_costs(workspace, shots) -> dict[int, int]:
    """Credits charged so far per shot id."""
    return _charged_by(workspace, "shot_id", [shot.pk for shot in shots])


def project_costs(workspace, projects) -> dict[int, int]:
    """Credits charged so far per project id."""
    return _charged_by(workspace, "shot__project_id", [project.pk for project in projects])


def project_cost(project: Project) -> int:
    return project_costs(project.workspace, [project])[project.pk]
