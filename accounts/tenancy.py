"""Fail-closed tenancy.

Tenant-owned models use `WorkspaceScopedManager` as their default manager. While a request
is being handled (the `WorkspaceMiddleware` turns the guard on), `Model.objects.all()`,
`.filter()`, `.get()` and friends raise `UnscopedQueryError`: request code must say whose
rows it wants with `Model.objects.for_workspace(ws)`. Reverse relations from an object
already loaded (`shot.takes.all()`) are scoped by that object and pass.

Outside requests (Celery tasks, management commands, the admin, which is staff-only and
cross-tenant by design) the guard is off. The deliberate escape hatch inside a request is
`Model.objects.dangerously_unscoped()`; grep for it in review.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from django.conf import settings
from django.db import models

_guard_active: ContextVar[bool] = ContextVar("retake_tenancy_guard", default=False)


class UnscopedQueryError(RuntimeError):
    """A tenant-owned model was queried without naming a workspace."""


@contextlib.contextmanager
def tenancy_guard(active: bool = True) -> Iterator[None]:
    token = _guard_active.set(active and settings.TENANCY_STRICT)
    try:
        yield
    finally:
        _guard_active.reset(token)


def guard_is_active() -> bool:
    return _guard_active.get()


class WorkspaceScopedQuerySet(models.QuerySet):
    def for_workspace(self, workspace) -> WorkspaceScopedQuerySet:
        if workspace is None:
            raise UnscopedQueryError(f"{self.model.__name__}.for_workspace(None)")
        return self.filter(**{self.model.workspace_field: workspace})


class WorkspaceScopedManager(models.Manager.from_queryset(WorkspaceScopedQuerySet)):
    """Default manager for tenant-owned models; see the module docstring."""

    def get_queryset(self) -> WorkspaceScopedQuerySet:
        # Related managers (`shot.takes`) carry the parent's filter in `core_filters`.
        if guard_is_active() and not hasattr(self, "core_filters"):
            raise UnscopedQueryError(
                f"Unscoped query on {self.model.__name__} inside a request: use "
                f"{self.model.__name__}.objects.for_workspace(request.workspace)"
            )
        return super().get_queryset()

    def for_workspace(self, workspace) -> WorkspaceScopedQuerySet:
        return self.dangerously_unscoped().for_workspace(workspace)

    def dangerously_unscoped(self) -> WorkspaceScopedQuerySet:
        """Every workspace's rows. Only for code that is cross-tenant on purpose."""
        return WorkspaceScopedQuerySet(self.model, using=self._db)


class WorkspaceOwned(models.Model):
    """Abstract base for rows that belong to one workspace.

    Subclasses whose workspace is reached through a relation set `workspace_field`
    (for example "shot__project__workspace").
    """

    workspace_field = "workspace"

    objects = WorkspaceScopedManager()

    class Meta:
        abstract = True
