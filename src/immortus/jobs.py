"""The job API: opt a job in to tracking, and report from inside it.

``@immortus.track`` is the Ruby gem immortus's ``include Immortus::Job`` (and, with
``strategy=``, its ``tracking_strategy :name``). It registers the job's ``job_class`` and returns
the function unchanged, so it stacks with any queue's decorator. :func:`immortus.declare` does the
same for a job class that has no Python function (a Rails job).

Inside a running tracked job, :func:`progress` and :func:`update_meta` report to the job's
strategy, :func:`current_job` tells which job is running, and :func:`cancel_requested` whether
someone asked for it to stop (:func:`progress` then raises
:class:`~immortus.cancel_requests.JobCancelled`). The running job lives in a
:class:`contextvars.ContextVar`, so each thread and each asyncio task sees its own. Outside one
(a worker whose hooks are not installed) they record nothing and say why, once, in the log: they
never break the job.

Progress held back by ``progress_interval`` is written by one daemon thread per process when the
interval has passed, even while the job blocks (:class:`_Flusher`).

:func:`running` is the lifecycle around one attempt; queue integrations wrap a job's execution
in it, and it is all a plain thread pool needs to be tracked. Queues whose hooks are separate
callbacks use :func:`start_attempt` and end the :class:`Attempt` it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeVar, overload

from immortus import cancel_requests, config, heartbeat, lifecycle, registry, runtime
from immortus.cancel_requests import JobCancelled
from immortus.exceptions import ConfigurationError, ImmortusError
from immortus.finder import find_recording_strategy
from immortus.status import JobError, Progress
from immortus.store_strategy import StoreStrategy
from immortus.transitions import check_aware
from immortus.validation import check_meta

__all__ = [
    "Attempt",
    "JobContext",
    "cancel_requested",
    "current_job",
    "job_class_of",
    "progress",
    "running",
    "start_attempt",
    "track",
    "update_meta",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The attribute ``@track`` sets on a function to remember its job class.
JOB_CLASS_ATTRIBUTE = "__immortus_job_class__"

logger = logging.getLogger("immortus")


@dataclass(slots=True)
class JobContext:
    """The tracked job running in this thread or task."""

    job_id: str
    job_class: str | None = None
    attempt: int | None = None
    _last_progress_write: float = field(default=float("-inf"), repr=False, compare=False)
    _pending_progress: Progress | None = field(default=None, repr=False, compare=False)
    #: When the flusher is due to write the held progress (``None``: nothing scheduled).
    _flush_due: float | None = field(default=None, repr=False, compare=False)
    #: Taken around every progress write, so the job and the flusher never write out of order.
    _writing: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    #: When the job last asked its store whether its cancellation was requested.
    _cancel_polled: float = field(default=float("-inf"), repr=False, compare=False)

    @property
    def cancel_requested(self) -> bool:
        """Whether this job's cancellation was requested (see :func:`immortus.cancel`).

        A request made in this process is seen at once. One made elsewhere is seen when the
        job's store carries requests (:class:`~immortus.cancel_requests.CancelRequestStore`):
        the store is then asked at most once per
        :data:`~immortus.cancel_requests.POLL_INTERVAL`. A store that cannot answer counts as
        "not requested" (logged at DEBUG): the job runs on.
        """
        if cancel_requests.is_requested(self.job_id):
            return True
        now = time.monotonic()
        if now - self._cancel_polled < cancel_requests.POLL_INTERVAL:
            return False
        self._cancel_polled = now
        return _ask_store_about_cancel(self)


_current: ContextVar[JobContext | None] = ContextVar("immortus_current_job", default=None)


def _ask_store_about_cancel(job: JobContext) -> bool:
    """Ask the job's store strategy whether its cancellation was requested; never raise."""
    try:
        strategy = find_recording_strategy(job.job_class)
        return isinstance(strategy, StoreStrategy) and strategy.cancel_requested(job.job_id)
    except ImmortusError:  # a store away, store tracking off: the event writes say so already
        logger.debug("immortus: cannot ask whether job %r was cancelled", job.job_id, exc_info=True)
    except Exception:  # a bug, survived: the job runs on
        logger.exception("immortus: cannot ask whether job %r was cancelled", job.job_id)
    return False


def job_class_of(function: Callable[..., Any]) -> str:
    """Return the job class of a tracked function, or the name ``@track`` would give it.

    Raises:
        ConfigurationError: ``function`` has no module and qualified name to make one from (a
            queue's task object, when ``@track`` sits above the queue's decorator).
    """
    declared = getattr(function, JOB_CLASS_ATTRIBUTE, None)
    if isinstance(declared, str):
        return declared
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise ConfigurationError(
            f"cannot name the job class of {function!r}: put @immortus.track directly on the "
            "function (under the queue's own decorator), or name it: @immortus.track(name=...)"
        )
    return f"{module}.{qualname}"


@overload
def track(function: F, /) -> F: ...
@overload
def track(
    *,
    name: str | None = None,
    strategy: object | None = None,
    queue: str | None = None,
    cancellable: bool = False,
) -> Callable[[F], F]: ...
def track(
    function: F | None = None,
    /,
    *,
    name: str | None = None,
    strategy: object | None = None,
    queue: str | None = None,
    cancellable: bool = False,
) -> F | Callable[[F], F]:
    """Opt a job in to tracking: ``@immortus.track`` or ``@immortus.track(strategy=...)``.

    ``name`` is the job class (default: ``module.qualname``, the name Celery and RQ use too);
    ``strategy`` is its inline strategy, in any form :func:`immortus.resolve_strategy` takes;
    ``queue`` names the queue integration whose strategy is inferred for it (and whose canceller
    :func:`immortus.cancel` uses); ``cancellable=True`` lets a web page cancel its jobs through
    the cancel route, which refuses other classes. The strategy is resolved at the first event,
    so it may be registered after the decorator runs.

    A job class with no Python function here (a Rails job) is declared with
    :func:`immortus.declare` instead.

    Raises:
        InvalidJobClass: ``name`` is malformed.
        InvalidStrategy: ``strategy`` is an object that cannot answer status questions.
        ConfigurationError: another job already uses the name, or a name was given where the
            function goes (``track("ReportJob")``: see :func:`immortus.declare`).
    """
    if isinstance(function, str):
        raise ConfigurationError(
            f"immortus.track() takes the job's function, not the name {function!r}: declare a "
            f"job with no Python function with immortus.declare({function!r}, queue=...), or "
            f"name a function's job with @immortus.track(name={function!r})"
        )

    def decorate(target: F) -> F:
        job_class = name or job_class_of(target)
        registry.register(registry.TrackedJob(job_class, strategy, queue, target, cancellable))
        # Builtins and slotted callables refuse attributes; job_class_of() then recomputes.
        with contextlib.suppress(AttributeError, TypeError):
            setattr(target, JOB_CLASS_ATTRIBUTE, job_class)
        return target

    return decorate if function is None else decorate(function)


def current_job() -> JobContext | None:
    """Return the tracked job running in this thread or task, or ``None`` outside one."""
    return _current.get()


def cancel_requested() -> bool:
    """Tell whether the running job's cancellation was requested: time to stop.

    For a job that checks between steps rather than reporting progress::

        for batch in batches:
            if immortus.cancel_requested():
                raise immortus.JobCancelled(immortus.current_job().job_id)
            send(batch)

    Outside a running tracked job it is ``False``, and a warning naming the missing set-up is
    logged once per process.
    """
    job = _current.get()
    if job is None:
        _outside_a_job("cancel_requested")
        return False
    return job.cancel_requested


#: Logged once per process when the job API is used outside a tracked job.
_OUTSIDE_A_JOB: Final = (
    "immortus.%s() was called outside a tracked job, so it had no effect (this is logged "
    "once; later calls have none either): most likely the worker's hooks are not installed. "
    "For Celery call immortus.queues.celery.install(app); for RQ start the worker with "
    "--job-class immortus.queues.rq.TrackedJob; for Huey call immortus.queues.huey.install(huey); "
    "for Dramatiq call immortus.queues.dramatiq.install(broker); for Django tasks add "
    "'immortus.queues.django_tasks' to INSTALLED_APPS; any other runner wraps the job in "
    "immortus.running(job_id, job_class)"
)


def _outside_a_job(caller: str) -> None:
    if not _state.warned_outside:
        _state.warned_outside = True
        logger.warning(_OUTSIDE_A_JOB, caller)


def progress(
    current: float,
    total: float | None = None,
    message: str | None = None,
    *,
    allow_overshoot: bool = False,
) -> None:
    """Report how far the running job has come: ``progress(37, 100, "row 37")``.

    Calls closer together than the ``progress_interval`` setting are coalesced: the latest is
    held and written when the interval has passed (by this process's flusher thread, even if
    the job blocks meanwhile), when ``current`` reaches ``total``, or when the job ends. A
    failing store is logged, never raised. Outside a running tracked job nothing is recorded
    and a warning naming the missing set-up is logged once per process.

    Raises:
        InvalidProgress: the numbers or message are unusable (see :class:`Progress`).
        JobCancelled: the job's cancellation was requested (:func:`immortus.cancel`); nothing
            was recorded. :func:`running` turns it into ``cancelled``.
    """
    value = Progress(current=current, total=total, message=message, allow_overshoot=allow_overshoot)
    job = _current.get()
    if job is None:
        _outside_a_job("progress")
        return
    if job.cancel_requested:
        raise JobCancelled(job.job_id)
    interval = config.get_config().progress_interval
    reached_total = total is not None and current >= total
    with job._writing:
        now = time.monotonic()
        if reached_total or now - job._last_progress_write >= interval:
            _write_progress(job, value, now)
            return
        job._pending_progress = value
        if job._flush_due is None:
            job._flush_due = job._last_progress_write + interval
            _flusher.schedule(job, job._flush_due)


def _write_progress(job: JobContext, value: Progress, now: float) -> None:
    """Write ``value`` now; the caller holds ``job._writing``."""
    job._pending_progress = None
    job._flush_due = None
    job._last_progress_write = now
    lifecycle.job_progress(job.job_id, value, job.job_class, attempt=job.attempt)


def _flush_progress(job: JobContext, due: float | None = None) -> None:
    """Write the held progress, if any; with ``due``, only if it is still the flush scheduled."""
    with job._writing:
        held = job._pending_progress
        if held is not None and (due is None or job._flush_due == due):
            _write_progress(job, held, time.monotonic())


class _Flusher:
    """Writes held progress when its interval has passed: one daemon thread per process.

    :func:`progress` schedules a job when it holds a value back; the thread sleeps on a
    condition variable until the earliest job is due, then writes what that job still holds
    (nothing, if the job wrote or ended meanwhile). An ending job cancels its entry. A forked
    child forgets the parent's entries and thread. Writing goes through the lifecycle, which
    logs failures: nothing here reaches a job.
    """

    def __init__(self) -> None:
        self._forget_everything()

    def _forget_everything(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._due: dict[int, tuple[float, JobContext]] = {}
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def schedule(self, job: JobContext, due: float) -> None:
        """Write ``job``'s held progress at ``due`` (a :func:`time.monotonic` time)."""
        if self._pid != os.getpid():  # a fork that skipped Python's at-fork hooks
            self._forget_everything()
        with self._condition:
            self._due[id(job)] = (due, job)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="immortus-progress", daemon=True
                )
                self._thread.start()
            self._condition.notify()

    def cancel(self, job: JobContext) -> None:
        """Forget ``job``'s scheduled write (it ended, or wrote by itself)."""
        with self._condition:
            self._due.pop(id(job), None)

    def _run(self) -> None:
        while True:
            with self._condition:
                now = time.monotonic()
                ready = [entry for entry in self._due.values() if entry[0] <= now]
                if not ready:
                    soonest = min((due for due, _ in self._due.values()), default=None)
                    self._condition.wait(None if soonest is None else soonest - now)
                    continue
                for _, job in ready:
                    del self._due[id(job)]
            for due, job in ready:
                try:
                    _flush_progress(job, due)
                except Exception:  # the lifecycle logs store failures: this is a bug, survived
                    logger.exception("immortus: cannot write the held progress of %r", job.job_id)


class JobsState:
    """The running jobs' process state: a :mod:`runtime <immortus.runtime>` part.

    The progress flusher, and whether a call outside a job was warned about (once a process).
    """

    def __init__(self) -> None:
        self.warned_outside = False
        self.flusher = _Flusher()

    def reset(self) -> None:
        """Drop the progress waiting to be written; warn again about calls outside a job."""
        self.warned_outside = False
        with self.flusher._condition:
            self.flusher._due.clear()

    def after_fork(self) -> None:
        """Forget the parent's flusher; the job current here gets a lock no parent thread holds."""
        self.flusher._forget_everything()
        job = _current.get()
        if job is not None:
            job._writing = threading.Lock()


_state: Final = runtime.part(JobsState)
_flusher: Final = _state.flusher


def update_meta(**values: Any) -> None:
    """Add ``values`` to the running job's meta; they appear at the top of its verify body.

    Outside a running tracked job nothing is recorded and a warning naming the missing set-up
    is logged once per process.

    Raises:
        InvalidInput: the values are not JSON-serialisable or are over 64 KiB as JSON.
    """
    check_meta(values)
    job = _current.get()
    if job is None:
        _outside_a_job("update_meta")
        return
    lifecycle.job_meta(job.job_id, values, job.job_class)


#: What stops a job without it failing: it ends ``cancelled``.
_INTERRUPTIONS: tuple[type[BaseException], ...] = (
    JobCancelled,
    asyncio.CancelledError,
    KeyboardInterrupt,
    SystemExit,
)


class Attempt:
    """One attempt of a tracked job, begun by one queue hook and ended by another.

    For queues whose hooks are separate callbacks rather than one call around the job (Celery's
    ``task_prerun``/``task_postrun``, Huey's and Django's signals, Dramatiq's middleware):
    :func:`start_attempt` reports ``started`` and makes the job current in this thread or task,
    so :func:`progress` and :func:`update_meta` work from the job's code; then exactly one of
    :meth:`finish`, :meth:`fail`, :meth:`cancel` reports how it ended (pending progress first)
    and makes the job no longer current (:meth:`leave` does the latter alone). Ending twice
    reports nothing more. Tracking problems are logged, never raised: a queue hook never breaks
    the job.

    While the attempt runs, this process's heartbeat keeps it ``started`` (its ``started``
    event carries the first lease; see :mod:`immortus.heartbeat`); ending it, in any of the
    four ways, stops that.
    """

    __slots__ = ("_ended", "_registration", "_token", "job")

    def __init__(self, job: JobContext) -> None:
        self.job = job
        self._token: Token[JobContext | None] | None = _current.set(job)
        self._ended = False
        self._registration = heartbeat.watch(job.job_id, job.job_class)
        lease = None if self._registration is None else self._registration.alive_until
        lifecycle.job_started(job.job_id, job.job_class, attempt=job.attempt, alive_until=lease)

    def finish(self) -> None:
        """Report that the attempt succeeded: the job is ``finished``."""
        if self._end(final=True):
            lifecycle.job_finished(self.job.job_id, self.job.job_class, attempt=self.job.attempt)

    def fail(
        self,
        error: BaseException | JobError,
        *,
        final_attempt: bool = True,
        retry_at: datetime | None = None,
    ) -> None:
        """Report that the attempt failed: ``failed``, or ``retrying`` if another attempt is due.

        ``retry_at`` is when the queue runs the next attempt, if it knows; it is reported only
        with ``final_attempt=False``.

        Raises:
            InvalidInput: ``retry_at`` is not a timezone-aware ``datetime`` (checked first:
                the attempt is then not ended).
        """
        check_aware("retry_at", retry_at)
        if not self._end(final=final_attempt):
            return
        job = self.job
        if final_attempt:
            lifecycle.job_failed(job.job_id, error, job.job_class, attempt=job.attempt)
        else:
            lifecycle.job_retrying(
                job.job_id, error, job.job_class, attempt=job.attempt, retry_at=retry_at
            )

    def cancel(self) -> None:
        """Report that the attempt was stopped before it ended: the job is ``cancelled``."""
        if self._end(final=True):
            lifecycle.job_cancelled(self.job.job_id, self.job.job_class)

    def leave(self) -> None:
        """Stop being the current job without reporting how the attempt ended.

        For a queue that hands the job on instead of ending it (Celery's ``Task.replace``,
        ``Reject`` or ``Ignore``): pending progress is written, no ending is reported.
        """
        self._end()

    def _end(self, *, final: bool = False) -> bool:
        """Write pending progress and leave the job; return False if it had already ended.

        ``final``: the job ends for good, so a cancel request for it is forgotten.
        """
        if self._ended:
            return False
        self._ended = True
        if final:
            cancel_requests.forget(self.job.job_id)
        heartbeat.unwatch(self._registration)
        _flusher.cancel(self.job)
        _flush_progress(self.job)
        token, self._token = self._token, None
        if token is not None:
            try:
                _current.reset(token)
            except ValueError:  # ended from another context than the one that began it
                if _current.get() is self.job:
                    _current.set(None)
        return True


def start_attempt(
    job_id: str, job_class: str | None = None, *, attempt: int | None = None
) -> Attempt:
    """Report that an attempt of the job started, and make it the current job; see :class:`Attempt`.

    ``attempt`` is the attempt's number, from 1, when the queue knows it.
    """
    return Attempt(JobContext(job_id=job_id, job_class=job_class, attempt=attempt))


@contextmanager
def running(
    job_id: str,
    job_class: str | None = None,
    *,
    attempt: int | None = None,
    final_attempt: bool = True,
    cancel_on: tuple[type[BaseException], ...] = (),
) -> Iterator[JobContext]:
    """Track one attempt of a job around the code that runs it.

    Reports ``started`` on entry and, on exit, ``finished``; ``failed`` (or ``retrying`` when
    ``final_attempt`` is False) if the body raises an :class:`Exception`; ``cancelled`` if it is
    interrupted (:class:`~immortus.cancel_requests.JobCancelled`,
    :class:`asyncio.CancelledError`, :class:`KeyboardInterrupt`, :class:`SystemExit`, or any
    exception in ``cancel_on``, such as a queue's own "stop this job" exception). The exception
    always propagates unchanged. A job whose cancellation was requested before it started
    raises :class:`~immortus.cancel_requests.JobCancelled` on entry, so its body never runs.
    Pending progress is written before the ending. Tracking problems (a bad id, a store down)
    are logged, never raised::

        with immortus.running(job_id, "reports.build"):
            build_report()
    """
    stops: tuple[type[BaseException], ...] = (*_INTERRUPTIONS, *cancel_on)
    run = start_attempt(job_id, job_class, attempt=attempt)
    if run.job.cancel_requested:
        run.cancel()
        raise JobCancelled(job_id)
    try:
        yield run.job
    except stops:
        run.cancel()
        raise
    except Exception as exc:
        run.fail(exc, final_attempt=final_attempt)
        raise
    else:
        run.finish()
