"""The registry of tracked jobs: ``job_class`` → how the job wants to be tracked.

Filled by :func:`immortus.track` (and by queue integrations); read by the finder to pick a job's
inline strategy, and by the web layer to check that a ``job_class`` named in a URL is one of ours.
A ``job_class`` is only ever looked up here, never imported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from immortus.exceptions import ConfigurationError
from immortus.validation import check_job_class

__all__ = ["TrackedJob", "clear", "lookup", "register", "registered", "unregister"]


@dataclass(frozen=True, slots=True)
class TrackedJob:
    """A job class that opted in to tracking.

    ``strategy`` is its inline strategy (any form the finder resolves) or ``None``; ``queue`` names
    the queue integration that runs it, whose strategy is inferred when nothing else is declared.
    """

    job_class: str
    strategy: object | None = None
    queue: str | None = None
    function: Callable[..., Any] | None = None


_lock = threading.Lock()
_jobs: dict[str, TrackedJob] = {}
_listeners: list[Callable[[], None]] = []


def register(job: TrackedJob) -> TrackedJob:
    """Add ``job``; registering the same declaration again is harmless.

    Raises:
        InvalidJobClass: the name is malformed.
        ConfigurationError: another, different job already uses the name.
    """
    check_job_class(job.job_class)
    with _lock:
        existing = _jobs.get(job.job_class)
        if existing is not None and existing != job and not _same_function(existing, job):
            raise ConfigurationError(
                f"job class {job.job_class!r} is already tracked with another declaration; "
                "give one of them another name with @immortus.track(name=...)"
            )
        _jobs[job.job_class] = job
    _changed()
    return job


def _same_function(old: TrackedJob, new: TrackedJob) -> bool:
    """Tell whether two declarations are one function imported twice (reloaders do that)."""
    if old.function is None or new.function is None:
        return False
    return (
        (old.strategy, old.queue) == (new.strategy, new.queue)
        and old.function.__module__ == new.function.__module__
        and old.function.__qualname__ == new.function.__qualname__
    )


def unregister(job_class: str) -> None:
    """Forget ``job_class`` (for tests and reloaders)."""
    with _lock:
        _jobs.pop(job_class, None)
    _changed()


def clear() -> None:
    """Forget every tracked job (for tests)."""
    with _lock:
        _jobs.clear()
    _changed()


def lookup(job_class: str) -> TrackedJob | None:
    """Return the tracked job named ``job_class``, or ``None``."""
    return _jobs.get(job_class)


def registered() -> dict[str, TrackedJob]:
    """Return a copy of the whole registry."""
    with _lock:
        return dict(_jobs)


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener()`` whenever the registry changes (caches use it to empty themselves)."""
    _listeners.append(listener)


def _changed() -> None:
    for listener in _listeners:
        listener()
