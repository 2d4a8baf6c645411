"""The registry of tracked jobs: ``job_class`` → how the job wants to be tracked.

Filled by :func:`immortus.track` and :func:`immortus.declare` (and by queue integrations); read by
the finder (:func:`immortus.find_strategy`), which answers only for the classes here unless
a global strategy is configured. A ``job_class`` is only ever looked up here, never imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from immortus import runtime
from immortus.exceptions import ConfigurationError
from immortus.strategy import as_strategy
from immortus.validation import check_job_class

__all__ = ["TrackedJob", "clear", "declare", "lookup", "register", "registered", "unregister"]


@dataclass(frozen=True, slots=True)
class TrackedJob:
    """A job class that opted in to tracking.

    ``strategy`` is its inline strategy (any form the finder resolves) or ``None``; ``queue`` names
    the queue integration that runs it, whose strategy is inferred when nothing else is declared.
    ``function`` is the Python function that runs it, ``None`` for a job declared by name alone
    (a job of another language, such as a Rails job). ``cancellable`` says the app lets its
    jobs be cancelled from a web page (the cancel route refuses other classes with 405);
    :func:`immortus.cancel`, called by the app's own code, does not look at it.
    """

    job_class: str
    strategy: object | None = None
    queue: str | None = None
    function: Callable[..., Any] | None = None
    cancellable: bool = False


class Registry(runtime.LockedPart):
    """The tracked jobs and who to tell of changes: a :mod:`runtime <immortus.runtime>` part.

    Jobs are declared at import time (decorators), so a reset keeps them; :func:`clear`
    forgets them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, TrackedJob] = {}
        self.listeners: list[Callable[[], None]] = []

    def reset(self) -> None:
        """Keep the declarations: a fresh process that imported the same modules has them."""


_registry: Final = runtime.part(Registry)


def register(job: TrackedJob) -> TrackedJob:
    """Add ``job`` and return what the registry holds for its name.

    Registering the same declaration again is harmless, and so is a declaration by name alone
    (no ``function``) of a job already tracked with the same strategy and queue: the registry
    keeps the one it has.

    Raises:
        InvalidJobClass: the name is malformed.
        InvalidStrategy: ``strategy`` is an object that cannot answer status questions.
        ConfigurationError: ``queue`` is not a name, or another, different job uses the name.
    """
    _check(job)
    with _registry.lock:
        existing = _registry.jobs.get(job.job_class)
        if existing is not None and _same_declaration(existing, job):
            return existing
        if existing is not None and not _same_function(existing, job):
            raise ConfigurationError(
                f"job class {job.job_class!r} is already tracked with another declaration; "
                "give one of them another name with @immortus.track(name=...)"
            )
        _registry.jobs[job.job_class] = job
    _changed()
    return job


def declare(
    job_class: str,
    *,
    queue: str | None = None,
    strategy: object | None = None,
    cancellable: bool = False,
) -> TrackedJob:
    """Track a job class that has no Python function here: a Rails job, another service's job.

    ``immortus.declare("ReportJob", queue="delayed_job")`` is what ``@immortus.track`` does for a
    function, by name alone: ``queue`` names the queue integration whose strategy reads the job
    (``"delayed_job"``, ``"sidekiq"``, or any name :func:`immortus.resolve_strategy` takes) and
    ``strategy`` is an inline strategy; ``cancellable=True`` lets a web page cancel its jobs (see
    :attr:`TrackedJob.cancellable`). Declaring the same again is harmless. A strategy or queue
    *name* is resolved at first use, so it may be registered later; one that resolves to
    nothing then raises :class:`~immortus.exceptions.StrategyNotFound` naming the job class.

    Raises:
        InvalidJobClass: the name is malformed.
        InvalidStrategy: ``strategy`` is an object that cannot answer status questions.
        ConfigurationError: ``queue`` is not a name, ``cancellable`` not a bool, or the name
            is tracked otherwise already.
    """
    return register(TrackedJob(job_class, strategy, queue, cancellable=cancellable))


def _check(job: TrackedJob) -> None:
    """Refuse, before it is used, a declaration that could never work.

    Raises:
        InvalidJobClass: the name is malformed.
        InvalidStrategy: the strategy is an object that cannot answer status questions.
        ConfigurationError: the queue is not a name.
    """
    check_job_class(job.job_class)
    queue: object = job.queue
    if queue is not None and not (isinstance(queue, str) and queue):
        raise ConfigurationError(
            f"queue must be the name of a queue integration, such as 'rq', not {queue!r}"
        )
    if not isinstance(job.cancellable, bool):
        raise ConfigurationError(f"cancellable must be True or False, not {job.cancellable!r}")
    if job.strategy is not None and not isinstance(job.strategy, str | type):
        as_strategy(job.strategy)  # names and classes are resolved at first use


def _same_declaration(old: TrackedJob, new: TrackedJob) -> bool:
    """Tell whether ``new`` adds nothing to ``old`` (equal, or the same tracking by name alone)."""
    return old == new or (new.function is None and _tracking(old) == _tracking(new))


def _tracking(job: TrackedJob) -> tuple[object, str | None, bool]:
    """What a declaration says about tracking, apart from the function."""
    return job.strategy, job.queue, job.cancellable


def _same_function(old: TrackedJob, new: TrackedJob) -> bool:
    """Tell whether two declarations are one function imported twice (reloaders do that)."""
    if old.function is None or new.function is None:
        return False
    return (
        _tracking(old) == _tracking(new)
        and old.function.__module__ == new.function.__module__
        and old.function.__qualname__ == new.function.__qualname__
    )


def unregister(job_class: str) -> None:
    """Forget ``job_class`` (for tests and reloaders)."""
    with _registry.lock:
        _registry.jobs.pop(job_class, None)
    _changed()


def clear() -> None:
    """Forget every tracked job (for tests)."""
    with _registry.lock:
        _registry.jobs.clear()
    _changed()


def lookup(job_class: str) -> TrackedJob | None:
    """Return the tracked job named ``job_class``, or ``None``."""
    return _registry.jobs.get(job_class)


def registered() -> dict[str, TrackedJob]:
    """Return a copy of the whole registry."""
    with _registry.lock:
        return dict(_registry.jobs)


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener()`` whenever the registry changes (caches use it to empty themselves)."""
    _registry.listeners.append(listener)


def _changed() -> None:
    for listener in _registry.listeners:
        listener()
