"""The task libraries present: Django's ``django.tasks`` and the ``django-tasks`` backport.

Both have the same three signals, backends handler and "no such result" error, but as separate
objects: a project on Python 3.11 uses the backport, a project on Django 6 may use either (or
both, with backends of each). immortus connects to every one it finds.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Final

from immortus.exceptions import MissingDependency

try:
    from django.dispatch import Signal
except ImportError as exc:
    raise MissingDependency("django", "django-tasks") from exc

__all__ = ["LIBRARIES", "TaskLibrary"]

#: The packages that provide Django tasks, the built-in one first.
PACKAGES: Final = ("django.tasks", "django_tasks")


@dataclass(frozen=True, slots=True)
class TaskLibrary:
    """What immortus uses of one task library."""

    package: str
    task_enqueued: Signal
    task_started: Signal
    task_finished: Signal
    #: The library's backends handler (``task_backends``), indexed by alias.
    backends: Any
    #: What a backend's ``get_result`` raises for an id it does not know.
    result_missing: type[Exception]
    #: The library's ``TaskResult``: what ``enqueue()`` returns.
    result_type: type


def _load(package: str) -> TaskLibrary | None:
    try:
        root = importlib.import_module(package)
        signals = importlib.import_module(f"{package}.signals")
        exceptions = importlib.import_module(f"{package}.exceptions")
        base = importlib.import_module(f"{package}.base")
    except ImportError:
        return None
    return TaskLibrary(
        package=package,
        task_enqueued=signals.task_enqueued,
        task_started=signals.task_started,
        task_finished=signals.task_finished,
        backends=root.task_backends,
        result_missing=exceptions.TaskResultDoesNotExist,
        result_type=base.TaskResult,
    )


#: Every task library installed, the built-in ``django.tasks`` first.
LIBRARIES: Final = tuple(library for library in map(_load, PACKAGES) if library is not None)

if not LIBRARIES:
    raise MissingDependency("django>=6.0 (or the django-tasks backport)", "django-tasks")
