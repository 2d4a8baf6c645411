"""``DjangoTaskStrategy``: immortus's store, corrected by the task backend's own results."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import DatabaseError

from immortus.exceptions import StoreUnavailable
from immortus.queues.django_tasks import database
from immortus.queues.django_tasks._library import LIBRARIES
from immortus.queues.django_tasks.names import tracked_job_class
from immortus.queues.django_tasks.results import status_of
from immortus.queues.native import QueueStrategy
from immortus.status import JobStatus
from immortus.stores.base import Store

__all__ = ["DjangoTaskStrategy"]

#: What ``get_result`` raises for an id its backend does not know.
_MISSING: tuple[type[Exception], ...] = (
    ValidationError,
    *(library.result_missing for library in LIBRARIES),
)


class DjangoTaskStrategy(QueueStrategy):
    """The strategy inferred for ``@immortus.track(queue="django_tasks")`` jobs.

    It answers from immortus's store (progress, attempts, errors with their message) and from
    the task backend's ``get_result`` where the backend supports it (``supports_get_result``):
    the backend's answer covers tasks enqueued before the hooks were installed, tasks whose
    worker could not write to the store, and a store that is down (see
    :class:`~immortus.queues.native.QueueStrategy`). A backend without results (Django's
    ``ImmediateBackend``, ``DummyBackend``) leaves the store alone to answer.

    ``backend`` is the alias of the backend to ask (``TASKS`` setting); by default every
    configured backend that supports results is asked, in order, until one knows the job.
    ``django-tasks-db`` backends are read straight from their table, one query per batch.
    """

    def __init__(self, store: Store | None = None, *, backend: str | None = None) -> None:
        super().__init__(store)
        self.backend = backend

    def _backends(self) -> Iterator[Any]:
        handler = LIBRARIES[0].backends
        aliases = [self.backend] if self.backend is not None else list(handler.settings)
        for alias in aliases:
            backend = handler[alias]
            if backend.supports_get_result:
                yield backend

    def native_status(self, job_id: str) -> JobStatus | None:
        """Return what the task backends keep about the job, or ``None`` if none knows it.

        Raises:
            StoreUnavailable: a backend's database cannot be reached.
        """
        return self.native_status_many([job_id]).get(job_id)

    def native_status_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Return the backends' statuses of the jobs they know, one query per database backend.

        Raises:
            StoreUnavailable: a backend's database cannot be reached.
        """
        found: dict[str, JobStatus] = {}
        try:
            for backend in self._backends():
                missing = [job_id for job_id in dict.fromkeys(job_ids) if job_id not in found]
                if not missing:
                    break
                if database.is_database_backend(backend):
                    found.update(database.statuses(missing))
                else:
                    found.update(_ask(backend, missing))
        except DatabaseError as exc:
            raise StoreUnavailable(f"the Django task backend cannot be read: {exc}") from exc
        return found


def _ask(backend: Any, job_ids: Sequence[str]) -> dict[str, JobStatus]:
    """Ask a backend's ``get_result`` for each job; skip those it does not know."""
    found = {}
    for job_id in job_ids:
        try:
            result = backend.get_result(job_id)
        except _MISSING:
            continue
        found[job_id] = status_of(result, tracked_job_class(result.task) or result.task.module_path)
    return found
