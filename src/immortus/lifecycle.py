"""Deliver lifecycle events to tracking strategies without ever breaking the job.

Queue integrations call the ``job_*`` functions here (one per
:class:`~immortus.transitions.EventKind`) from their hooks; the job API (:mod:`immortus.jobs`)
calls them around a running job. Each resolves the job's strategy and calls its callback through
:func:`notify`, which:

- passes a callback only the arguments it declares (a Ruby-gem-style ``job_finished(job_id)`` gets
  just the id; see :mod:`immortus.strategy`);
- logs anything the strategy or its store raises on the ``immortus`` logger, and returns
  ``False`` instead of raising. Tracking failures never reach the job or the enqueue.

Every event is logged at DEBUG (one line: event, job id, job class). The strategy is
:func:`~immortus.finder.find_recording_strategy`'s: an event of a job class nobody tracks is
recorded as one of a job of no class (a WARNING says so once per class).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from immortus.finder import find_recording_strategy
from immortus.status import JobError, Progress
from immortus.strategy import TrackingStrategy
from immortus.transitions import EventKind, check_aware, utcnow
from immortus.validation import check_job_class, check_job_id

__all__ = [
    "job_cancelled",
    "job_enqueued",
    "job_failed",
    "job_finished",
    "job_lost",
    "job_meta",
    "job_progress",
    "job_retrying",
    "job_started",
    "notify",
]

logger = logging.getLogger("immortus")


@dataclass(frozen=True, slots=True)
class _Accepts:
    """What a callback declares after the job id."""

    positional: tuple[str, ...]  # names that can take a value by position
    any_positional: bool  # it has *args
    keywords: frozenset[str] | None  # names that can take a keyword (None: it has **kwargs)


def _read_signature(function: Callable[..., object], *, skip: int) -> _Accepts:
    parameters = list(inspect.signature(function).parameters.values())[skip + 1 :]
    kinds = inspect.Parameter
    positional = tuple(
        p.name for p in parameters if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
    )
    keywords = frozenset(
        p.name for p in parameters if p.kind in (kinds.KEYWORD_ONLY, kinds.POSITIONAL_OR_KEYWORD)
    )
    return _Accepts(
        positional=positional,
        any_positional=any(p.kind is kinds.VAR_POSITIONAL for p in parameters),
        keywords=None if any(p.kind is kinds.VAR_KEYWORD for p in parameters) else keywords,
    )


@functools.lru_cache(maxsize=512)
def _method_signature(function: Callable[..., object]) -> _Accepts:
    return _read_signature(function, skip=1)  # skip ``self``


def _call(
    callback: Callable[..., object],
    job_id: str,
    args: tuple[object, ...],
    details: Mapping[str, object],
) -> None:
    function = getattr(callback, "__func__", None)
    accepts = _method_signature(function) if function else _read_signature(callback, skip=0)
    given = args if accepts.any_positional else args[: len(accepts.positional)]
    taken = set(accepts.positional[: len(given)])
    extra = {
        name: value
        for name, value in details.items()
        if name not in taken and (accepts.keywords is None or name in accepts.keywords)
    }
    callback(job_id, *given, **extra)


def notify(
    strategy: TrackingStrategy | None,
    hook: EventKind | str,
    job_id: str,
    *args: object,
    **details: object,
) -> bool:
    """Call ``strategy``'s callback of ``hook``, if it has one; return whether it succeeded.

    ``hook`` is an :class:`~immortus.transitions.EventKind` or a callback's name
    (``"job_finished"``). ``args`` follow the job id (the error of ``job_failed``, the progress
    of ``job_progress``); ``details`` are the optional keywords (``job_class``, ``attempt``,
    ``at``). Never raises: whatever the callback raises is logged with its traceback.
    """
    if strategy is None:
        return True
    if isinstance(hook, EventKind):
        hook = hook.callback
    callback = getattr(strategy.hook_target, hook, None)
    if not callable(callback):
        return True
    try:
        _call(callback, job_id, args, details)
    except Exception:
        logger.exception(
            "immortus: %s.%s(%r) failed; the job goes on untracked for this event",
            type(strategy.hook_target).__qualname__,
            hook,
            job_id,
        )
        return False
    return True


def _emit(
    kind: EventKind, job_id: str, job_class: str | None, *args: object, **details: Any
) -> bool:
    """Resolve the job's strategy and notify it; log and swallow every failure."""
    logger.debug("immortus: %s job %r (%s)", kind.value, job_id, job_class)
    try:
        check_job_id(job_id)
        if job_class is not None:
            check_job_class(job_class)
        strategy = find_recording_strategy(job_class)
    except Exception:
        logger.exception(
            "immortus: cannot track %s of job %r (%s)", kind.callback, job_id, job_class
        )
        return False
    details = {key: value for key, value in details.items() if value is not None}
    return notify(strategy, kind, job_id, *args, job_class=job_class, at=utcnow(), **details)


def job_enqueued(job_id: str, job_class: str | None = None) -> bool:
    """Report that the queue accepted the job. Call it in the enqueuing process."""
    return _emit(EventKind.ENQUEUED, job_id, job_class)


def job_started(
    job_id: str,
    job_class: str | None = None,
    *,
    attempt: int | None = None,
    alive_until: datetime | None = None,
) -> bool:
    """Report that a worker began an attempt of the job.

    ``alive_until`` is the worker's heartbeat lease (:mod:`immortus.heartbeat`): the job reads
    ``lost`` after it unless the worker beats again. Only callbacks that declare it get it.
    """
    return _emit(EventKind.STARTED, job_id, job_class, attempt=attempt, alive_until=alive_until)


def job_progress(
    job_id: str, progress: Progress, job_class: str | None = None, *, attempt: int | None = None
) -> bool:
    """Report the job's progress (jobs use :func:`immortus.progress`, which calls this)."""
    return _emit(EventKind.PROGRESS, job_id, job_class, progress, attempt=attempt)


def job_retrying(
    job_id: str,
    error: BaseException | JobError | None = None,
    job_class: str | None = None,
    *,
    attempt: int | None = None,
    retry_at: datetime | None = None,
) -> bool:
    """Report that an attempt failed with ``error`` and the queue will try again.

    ``retry_at`` is when the queue will run the next attempt, where it knows (a countdown, an
    eta, a backoff): the verify body carries it until that attempt starts. Only callbacks that
    declare it get it.

    Raises:
        InvalidInput: ``retry_at`` is not a timezone-aware ``datetime`` (checked before
            anything is reported: a queue integration's bug, not a tracking failure).
    """
    check_aware("retry_at", retry_at)
    return _emit(
        EventKind.RETRYING, job_id, job_class, _as_error(error), attempt=attempt, retry_at=retry_at
    )


def job_finished(job_id: str, job_class: str | None = None, *, attempt: int | None = None) -> bool:
    """Report that the job ended successfully."""
    return _emit(EventKind.FINISHED, job_id, job_class, attempt=attempt)


def job_failed(
    job_id: str,
    error: BaseException | JobError | None = None,
    job_class: str | None = None,
    *,
    attempt: int | None = None,
) -> bool:
    """Report that the job failed with ``error`` and no retry is left."""
    return _emit(EventKind.FAILED, job_id, job_class, _as_error(error), attempt=attempt)


def job_cancelled(job_id: str, job_class: str | None = None) -> bool:
    """Report that the job was cancelled, revoked or stopped."""
    return _emit(EventKind.CANCELLED, job_id, job_class)


def job_lost(
    job_id: str,
    error: BaseException | JobError | None = None,
    job_class: str | None = None,
    *,
    attempt: int | None = None,
) -> bool:
    """Report that the job's worker died mid-attempt (``error`` says how) and no retry is coming.

    Only a ``started`` job can be lost; a later event from a worker (a redelivery) overrides it.
    """
    return _emit(EventKind.LOST, job_id, job_class, _as_error(error), attempt=attempt)


def job_meta(job_id: str, meta: Mapping[str, Any], job_class: str | None = None) -> bool:
    """Report extra values about the job, merged into its verify body."""
    return _emit(EventKind.META, job_id, job_class, dict(meta))


def _as_error(error: BaseException | JobError | None) -> JobError | None:
    if error is None or isinstance(error, JobError):
        return error
    return JobError.from_exception(error)
