"""Organising work: create, rename, reorder and archive projects and shots; archive takes.

These change no credits. Archiving hides a project, shot or take from the studio's pages;
nothing is deleted, so ledger history and costs stay whole.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from .models import Project, Shot, Take
from .submission import SubmissionError, new_shot

NAME_MAX = 120
TITLE_MAX = 200


def _clean(name: str, limit: int, what: str) -> str:
    name = " ".join((name or "").split())  # one line: the name field wraps, names don't
    if not name:
        raise SubmissionError(_("The %(what)s needs a name.") % {"what": what}, "name")
    if len(name) > limit:
        raise SubmissionError(_("Keep the name under %(n)d characters.") % {"n": limit + 1}, "name")
    return name


@transaction.atomic
def create_project(workspace, name: str) -> Project:
    """A new project at the top of the workspace's list."""
    name = _clean(name, NAME_MAX, _("project"))
    projects = Project.objects.for_workspace(workspace)
    first = projects.order_by("position").values_list("position", flat=True).first() or 0
    if first == 0:
        # Make room at the top without touching the order of the others.
        for index, project in enumerate(projects.order_by("position", "-created_at")):
            projects.filter(pk=project.pk).update(position=index + 2)
        first = 2
    project = Project(workspace=workspace, name=name, position=first - 1)
    project.save(force_insert=True)
    return project


def rename_project(project: Project, name: str) -> Project:
    project.name = _clean(name, NAME_MAX, _("project"))
    project.save(update_fields=["name"])
    return project


def set_project_archived(project: Project, archived: bool) -> Project:
    if project.is_inbox and archived:
        raise SubmissionError(_("The Inbox cannot be archived."), "project")
    project.archived_at = timezone.now() if archived else None
    project.save(update_fields=["archived_at"])
    return project


def create_shot(project: Project, title: str = "") -> Shot:
    if project.archived_at:
        raise SubmissionError(_("This project is archived."), "project")
    if title and len(title.strip()) > TITLE_MAX:
        raise SubmissionError(_("Keep the name under %(n)d characters.") % {"n": TITLE_MAX + 1})
    with transaction.atomic():
        return new_shot(project, title)


def rename_shot(shot: Shot, title: str) -> Shot:
    shot.title = _clean(title, TITLE_MAX, _("shot"))
    shot.save(update_fields=["title"])
    return shot


def set_shot_archived(shot: Shot, archived: bool) -> Shot:
    shot.archived_at = timezone.now() if archived else None
    shot.save(update_fields=["archived_at"])
    return shot


def move_shot(shot: Shot, project: Project) -> Shot:
    """Move a shot (with its takes) to the end of another project's storyboard."""
    if project.workspace_id != shot.project.workspace_id:
        raise SubmissionError(_("Unknown project."), "project", status=404)
    with transaction.atomic():
        last = project.shots.order_by("-position").values_list("position", flat=True).first()
        shot.project = project
        shot.position = (last or 0) + 1
        shot.save(update_fields=["project", "position"])
    return shot


def _ids(raw) -> list[int]:
    try:
        ids = [int(part) for part in raw]
    except (TypeError, ValueError) as exc:
        raise SubmissionError(_("The new order lists something that is not an id.")) from exc
    if len(ids) != len(set(ids)):
        raise SubmissionError(_("The new order lists an item twice."), "order")
    return ids


@transaction.atomic
def reorder_shots(project: Project, shot_ids) -> list[Shot]:
    """Put the project's live shots in the given order; every one must be listed once."""
    ids = _ids(shot_ids)
    shots = {s.pk: s for s in project.shots.filter(archived_at__isnull=True).select_for_update()}
    if set(ids) != set(shots):
        raise SubmissionError(_("The new order must list every shot of the project once."), "order")
    for position, pk in enumerate(ids, start=1):
        if shots[pk].position != position:
            project.shots.filter(pk=pk).update(position=position)
            shots[pk].position = position
    return [shots[pk] for pk in ids]


@transaction.atomic
def reorder_projects(workspace, project_ids) -> None:
    ids = _ids(project_ids)
    projects = Project.objects.for_workspace(workspace).filter(archived_at__isnull=True)
    if set(ids) != set(projects.values_list("pk", flat=True)):
        raise SubmissionError(_("The new order must list every project once."), "order")
    for position, pk in enumerate(ids, start=1):
        projects.filter(pk=pk).update(position=position)


def set_take_archived(take: Take, archived: bool) -> Take:
    """Hide a take from grids (its charge and ledger entries stay); a chosen take stays."""
    if archived and Shot.objects.dangerously_unscoped().filter(chosen_take=take).exists():
        raise SubmissionError(_("This is the shot's chosen take: choose another one first."))
    take.archived_at = timezone.now() if archived else None
    Take.objects.dangerously_unscoped().filter(pk=take.pk).update(archived_at=take.archived_at)
    return take
