"""What only the ``django-tasks-db`` backend offers: many results in one query, and cancel.

Its rows are read directly (one query for a batch of ids, and without importing each task's
code, which ``get_result`` does), and a task no worker has taken yet can be cancelled by
deleting its row, which :func:`cancel` does safely; :func:`immortus.cancel` does it through
the canceller registered for the queue ``"django_tasks"`` when the package is imported.
``django_tasks_db`` is imported only when one of these is used.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, Final

from django.apps import apps
from django.db import DatabaseError

from immortus.cancelling import register_canceller
from immortus.exceptions import StoreUnavailable
from immortus.queues.django_tasks.results import status_from
from immortus.status import JobStatus

__all__ = ["QUEUE", "cancel", "is_database_backend", "statuses"]

#: The queue name Django's tasks declare (``@immortus.track(queue="django_tasks")``).
QUEUE: Final = "django_tasks"


def is_database_backend(backend: object) -> bool:
    """Tell whether ``backend`` is ``django-tasks-db``'s ``DatabaseBackend``."""
    try:
        from django_tasks_db.backend import DatabaseBackend  # noqa: PLC0415  # optional
    except ImportError:
        return False
    return isinstance(backend, DatabaseBackend)


def _ids(job_ids: Iterable[str]) -> list[uuid.UUID]:
    """The ids that can be a row's (its primary key is a UUID); others cannot exist."""
    found = []
    for job_id in job_ids:
        try:
            found.append(uuid.UUID(job_id))
        except ValueError:
            continue
    return found


def statuses(job_ids: Iterable[str]) -> dict[str, JobStatus]:
    """Return the statuses of the rows among ``job_ids``, in one query, by their ids.

    Raises:
        django.db.DatabaseError: the database cannot be reached.
    """
    from django_tasks_db.models import DBTaskResult  # noqa: PLC0415  # needs the app registry

    wanted = _ids(job_ids)
    if not wanted:
        return {}
    fields = ("id", "status", "task_path", "worker_ids", "exception_class_path", "traceback")
    rows = DBTaskResult.objects.filter(id__in=wanted).only(
        *fields, "enqueued_at", "started_at", "finished_at"
    )
    return {str(row.id): _status(row) for row in rows}


def _status(row: Any) -> JobStatus:
    return status_from(
        job_id=str(row.id),
        job_class=row.task_path,
        status=str(row.status),
        errors=[row] if row.exception_class_path else [],
        attempts=len(row.worker_ids or ()),
        enqueued_at=row.enqueued_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def cancel(job_id: str) -> bool:
    """Cancel a task no worker has taken yet, by deleting its row; return whether it did.

    Neither Django nor ``django-tasks-db`` can cancel a task: this is the backend's one way, made
    safe against a worker taking the task at the same moment (the row is locked, and deleted
    only while still ``READY``). The deletion reports ``cancelled`` to immortus (see
    :func:`~immortus.queues.django_tasks.hooks.on_row_deleted`). A running task cannot be
    stopped: this returns ``False``, as for an id it does not know.

    Raises:
        django.db.DatabaseError: the database cannot be reached.
    """
    from django_tasks_db.models import DBTaskResult  # noqa: PLC0415  # needs the app registry
    from django_tasks_db.utils import exclusive_transaction  # noqa: PLC0415

    wanted = _ids([job_id])
    if not wanted:
        return False
    with exclusive_transaction(DBTaskResult.objects.db):
        ready = DBTaskResult.objects.select_for_update().filter(id=wanted[0], status="READY")
        row = ready.first()
        if row is None:
            return False
        row.delete()
        return True


def _cancel(job_id: str, job_class: str) -> None:
    """The canceller of :func:`immortus.cancel`: :func:`cancel`, where ``django-tasks-db`` is.

    A running task (and any task of another backend) is stopped by the store's cancel request
    instead, at its next ``immortus.progress()``.

    Raises:
        StoreUnavailable: the database cannot be reached.
    """
    if not (apps.ready and apps.is_installed("django_tasks_db")):
        return
    try:
        cancel(job_id)
    except DatabaseError as exc:
        raise StoreUnavailable(
            f"the tasks' database cannot be reached: {type(exc).__name__}"
        ) from exc


register_canceller(QUEUE, _cancel)
