"""Which Django tasks are tracked, and under which job class."""

from __future__ import annotations

from django.utils.module_loading import import_string

from immortus.queues._kit import tracked_callable, tracked_name
from immortus.queues.django_tasks._library import LIBRARIES

__all__ = ["identify", "job_class_of_path", "tracked_job_class"]


def tracked_job_class(task: object) -> str | None:
    """Return the job class of a Django ``Task`` if it is tracked, else ``None``.

    The job class is the one ``@immortus.track`` gave the task's function: by default
    ``module.qualname``, which is also the task's ``module_path``.
    """
    return tracked_callable(getattr(task, "func", None))


def job_class_of_path(task_path: str) -> str | None:
    """Return the job class of the task at ``task_path`` if it is tracked, else ``None``.

    ``task_path`` comes from the task backend's own table, never from a request: like a
    worker, this imports the task's module when it is not loaded yet (its ``@immortus.track``
    registers the job), and a path that cannot be imported is not tracked.
    """
    if tracked_name(task_path) is not None:
        return task_path
    try:
        task = import_string(task_path)
    except ImportError:
        return None
    return tracked_job_class(task)


def identify(job: object) -> tuple[str | None, str | None] | None:
    """Return the ``(job_id, job_class)`` of a Django ``TaskResult``; ``None`` for anything else.

    The job class is that of the result's task, ``None`` when the task is not tracked.
    """
    if not any(isinstance(job, library.result_type) for library in LIBRARIES):
        return None
    return str(getattr(job, "id", "")) or None, tracked_job_class(getattr(job, "task", None))
