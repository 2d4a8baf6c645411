"""What every queue integration shares: the shape it has, its attempt book, its tracked names.

Every Python queue's integration (the packages ``immortus.queues.celery``, ``rq`` and
``django_tasks``, the modules ``huey`` and ``dramatiq``) has the shape
:class:`QueueIntegration` describes, and builds it from the pieces here, written once:

- :class:`AttemptBook`: the attempts running in this process, begun by one queue hook and
  ended by another (a thread-safe dict, keyed by what the queue's hooks both see);
- :func:`tracked_name`, :func:`tracked_path` and :func:`tracked_callable`: whether a job is
  tracked, and under which job class, asked of the registry of tracked jobs (never by
  importing what a name says);
- :func:`retry_time`: when a retry the queue scheduled runs, as every retry hook reports it.

This module imports no queue library.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from immortus import registry
from immortus.exceptions import ConfigurationError
from immortus.jobs import job_class_of

__all__ = [
    "AttemptBook",
    "QueueIntegration",
    "retry_time",
    "tracked_callable",
    "tracked_name",
    "tracked_path",
]

K = TypeVar("K")
V = TypeVar("V")


@runtime_checkable
class QueueIntegration(Protocol):
    """The shape of a queue module: what a reader (and a test) can count on finding in it.

    ``install(target)`` connects the hooks (to an app, a queue, a broker: whatever the queue
    has; Django tasks take none) and is idempotent; ``uninstall(target)`` undoes it;
    ``installed(target)`` tells whether it is done. ``identify(job)`` returns the
    ``(job_id, job_class)`` of the queue's own job object, or ``None`` when ``job`` is not one
    (see :func:`immortus.queues.identify`). Queues that can cancel a job also have ``cancel``
    (Dramatiq, Django tasks) or their own verb (Celery's ``revoke``, RQ's ``Job.cancel``, Huey's
    ``revoke_by_id`` with :func:`immortus.queues.huey.check_cancelled`). Each registers its
    canceller for :func:`immortus.cancel` when it is imported
    (:func:`immortus.register_canceller`, under the queue's name), and turns
    :class:`immortus.JobCancelled` raised in a job into the queue's own "stop this job".
    """

    install: Callable[..., Any]
    uninstall: Callable[..., Any]
    installed: Callable[..., Any]
    identify: Callable[[object], tuple[str | None, str | None] | None]


class AttemptBook(Generic[K, V]):
    """The attempts running in this process, from the hook that begins one to the one that ends it.

    ``V`` is what a hook keeps: usually the :class:`~immortus.jobs.Attempt`, sometimes with what
    the ending hook needs besides it. Safe across the worker's threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[K, V] = {}

    def put(self, key: K, value: V) -> None:
        """Remember ``value`` under ``key`` (replacing what was there)."""
        with self._lock:
            self._entries[key] = value

    def take(self, key: K) -> V | None:
        """Forget and return what is under ``key``; ``None`` when nothing is."""
        with self._lock:
            return self._entries.pop(key, None)

    def get(self, key: K) -> V | None:
        """Return what is under ``key`` without forgetting it; ``None`` when nothing is."""
        return self._entries.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every attempt (when the hooks are uninstalled)."""
        with self._lock:
            self._entries.clear()


def tracked_name(name: object) -> str | None:
    """Return ``name`` if it is a tracked job class, else ``None``: the hooks' one dict lookup."""
    return name if isinstance(name, str) and registry.lookup(name) is not None else None


def tracked_path(path: object) -> str | None:
    """Return the job class of the tracked function at the dotted ``path``, or ``None``.

    ``path`` is the queue's own name for a job (RQ's ``func_name``, a Django task's module
    path): the job class itself when ``@immortus.track`` gave the default one, else the job
    class of the tracked function found at that path (one tracked under another ``name=``).
    Nothing is imported; the registry is scanned only when the path is not a job class.
    """
    found = tracked_name(path)
    if found is not None or not isinstance(path, str):
        return found
    for job_class, job in registry.registered().items():
        function = job.function
        if function is not None and _path(function) == path:
            return job_class
    return None


def tracked_callable(function: object) -> str | None:
    """Return the job class of a tracked function (or queue task wrapping one), or ``None``."""
    if not callable(function):
        return None
    try:
        job_class = job_class_of(function)
    except (AttributeError, ConfigurationError):  # no module and qualified name to go by
        return None
    return job_class if registry.lookup(job_class) is not None else None


def _path(function: Callable[..., Any]) -> str | None:
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    return f"{module}.{qualname}" if isinstance(module, str) and isinstance(qualname, str) else None


def retry_time(delay: float | timedelta | None = 0, eta: datetime | None = None) -> datetime:
    """Return when a retry the queue scheduled runs: ``eta``, else now plus ``delay`` seconds.

    A naive ``eta`` is taken as UTC (what the queues here write); ``None`` or a negative delay is
    now: the queue runs the retry as soon as a worker is free.
    """
    if eta is not None:
        return eta if eta.tzinfo is not None else eta.replace(tzinfo=UTC)
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay or 0)
    return datetime.now(UTC) + timedelta(seconds=max(seconds, 0.0))
