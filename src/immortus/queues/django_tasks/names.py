"""Which Django tasks are tracked, and under which job class."""

from __future__ import annotations

from django.utils.module_loading import import_string

from immortus import registry
from immortus.jobs import job_class_of

__all__ = ["job_class_of_path", "tracked_job_class"]


def tracked_job_class(task: object) -> str | None:
    """Return the job class of a Django ``Task`` if it is tracked, else ``None``.

    The job class is the one ``@immortus.track`` gave the task's function: by default
    ``module.qualname``, which is also the task's ``module_path``.
    """
    function = getattr(task, "func", None)
    if function is None:
        return None
    job_class = job_class_of(function)
    return job_class if registry.lookup(job_class) is not None else None


def job_class_of_path(task_path: str) -> str | None:
    """Return the job class of the task at ``task_path`` if it is tracked, else ``None``.

    ``task_path`` comes from the task backend's own table, never from a request: like a
    worker, this imports the task's module when it is not loaded yet (its ``@immortus.track``
    registers the job), and a path that cannot be imported is not tracked.
    """
    if registry.lookup(task_path) is not None:
        return task_path
    try:
        task = import_string(task_path)
    except ImportError:
        return None
    return tracked_job_class(task)
