"""RQ: report tracked jobs' lives to immortus, and read RQ's own job hash.

Install the hooks with RQ's own extension point, its job class, on both sides::

    queue = install(Queue(connection=Redis()))              # where jobs are enqueued
    $ rq worker --job-class immortus.queues.rq.TrackedJob   # where they run

and opt a job in with ``@immortus.track(queue="rq")``. :class:`TrackedJob` is RQ's ``Job``
with these hooks; each returns at once for a job that is not tracked:

==========================  ===================================  ==========================
immortus event              RQ moment                            process
==========================  ===================================  ==========================
``enqueued``                ``Job.create``, inside ``enqueue*``  the enqueuing one
``started``, progress       ``Job.perform`` begins               the work horse
``finished``                ``Job.perform`` returns              the work horse
``retrying`` / ``failed``   ``Job.perform`` raises (or returns   the work horse
                            ``Retry``); retrying while RQ has
                            retries left
``cancelled``               the stopped callback after           the worker
                            ``send_stop_job_command``;
                            ``Job.cancel()``                     the cancelling one
``lost``                    RQ fails a job whose work horse      the worker; the one that
                            died (``Job.send_webhooks``), or     cleans RQ's started
                            finds it abandoned                   registry
``retrying``                RQ retries a job whose work horse    the same
                            died (``Job.retry``)
==========================  ===================================  ==========================

Every hook logs a tracking failure (a store that is down, say) and never breaks the job or
the enqueue (see :mod:`immortus.lifecycle`).

:class:`RQStrategy`, inferred for jobs tracked with ``queue="rq"``, answers from immortus's
store, completed by RQ's job hash (:data:`STATES` maps RQ's states to immortus's): it answers
for jobs enqueued before the hooks were installed, and ends a job whose work horse died. A job
RQ failed because the process running it died (a killed work horse, an abandoned job) reads
``lost``, from the hooks and from the hash alike.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any, Final, TypeVar

from immortus.exceptions import ConfigurationError, MissingDependency, StoreUnavailable

try:
    from redis import Redis
    from redis.client import Pipeline
    from redis.exceptions import RedisError
    from rq import Queue, Retry
    from rq.job import Job
    from rq.job import JobStatus as RQState
    from rq.results import Result
    from rq.serializers import resolve_serializer
    from rq.worker import BaseWorker
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without rq
    raise MissingDependency("rq", "rq") from exc

from immortus import lifecycle, outbox, registry
from immortus.jobs import job_class_of, start_attempt
from immortus.queues.native import QueueStrategy
from immortus.status import JobError, JobStatus, Progress, State
from immortus.stores.base import Store

__all__ = [
    "ABANDONED",
    "HORSE_DIED",
    "LOST_ERRORS",
    "PROGRESS_META_KEY",
    "STATES",
    "RQStrategy",
    "TrackedJob",
    "error_from_traceback",
    "install",
    "tracked_job_class",
]

#: How each state of RQ's job hash reads in immortus. A waiting job (``queued``,
#: ``scheduled``) that has run before is ``retrying`` instead: another attempt is due.
STATES: Final[Mapping[RQState, State]] = {
    RQState.CREATED: State.CREATED,
    RQState.QUEUED: State.CREATED,
    RQState.DEFERRED: State.CREATED,
    RQState.SCHEDULED: State.CREATED,
    RQState.RATE_LIMITED: State.CREATED,
    RQState.READY_TO_ENQUEUE: State.CREATED,
    RQState.STARTED: State.STARTED,
    RQState.FINISHED: State.FINISHED,
    RQState.FAILED: State.FAILED,
    RQState.STOPPED: State.CANCELLED,
    RQState.CANCELED: State.CANCELLED,
}

#: The ``job.meta`` key whose value :class:`RQStrategy` reads as progress when the store has
#: none: ``{"current": 37, "total": 100, "message": "row 37"}``, or a number (a percentage).
PROGRESS_META_KEY: Final = "progress"

#: The error type of a job whose work horse died (killed, out of memory, exited): RQ's text
#: "Work-horse terminated unexpectedly; waitpid returned 9 (signal 9)", which has no class.
HORSE_DIED: Final = "rq.WorkHorseTerminated"
#: The error type of a job RQ's started registry found abandoned: its whole worker died.
ABANDONED: Final = "rq.exceptions.AbandonedJobError"
#: Error types of a failed RQ job that mean the process running it died: the job is ``lost``.
LOST_ERRORS: Final = frozenset({HORSE_DIED, ABANDONED})

_RQ_JOB_ID = re.compile(r"[A-Za-z0-9_-]+")
_HORSE_TERMINATED = re.compile(
    r"Work-horse terminated unexpectedly; waitpid returned (-?\d+)(?: \(signal (\d+)\))?"
)
_ABANDONED_TEXT = re.compile(r"Moved to \w+, due to AbandonedJobError\b")
_EXCEPTION_LINE = re.compile(r"([A-Za-z_][\w.]*)(?:: (.*))?")
_MAX_ERROR_MESSAGE: Final = 2000
#: How long a work horse waits, at the end of a job, for a store that is away to take the
#: tracking events it holds (see :mod:`immortus.outbox`), before RQ ends it with ``os._exit``.
HORSE_FLUSH_SECONDS: Final = 1.0

Target = TypeVar("Target", Queue, BaseWorker)


def _tracked_class(function: object) -> str | None:
    """Return the job class of ``function`` (a callable or RQ's dotted name) if it is tracked."""
    if isinstance(function, str):
        name = function
    elif callable(function):
        try:
            name = job_class_of(function)
        except AttributeError:  # a callable object without a qualified name
            return None
    else:
        return None
    return name if registry.lookup(name) is not None else None


class TrackedJob(Job):
    """RQ's ``Job``, reporting the life of each tracked job to immortus.

    Pass it as the job class on both sides: ``install(queue)`` (or ``Queue(job_class=...)``)
    where jobs are enqueued, ``rq worker --job-class immortus.queues.rq.TrackedJob`` where they
    run. Jobs whose function is not tracked (``@immortus.track``) run as plain RQ jobs. With a
    job class of your own, derive from both: ``class MyJob(TrackedJob, MyBaseJob)``.
    """

    #: Whether :meth:`perform` ran in this process (the work horse, or a ``SimpleWorker``):
    #: then it reported how the attempt ended, and RQ's later calls need not.
    _ran_here = False

    @classmethod
    def create(cls, func: Any, *args: Any, **kwargs: Any) -> Job:
        """Create the job and, for a tracked job, report ``enqueued``.

        Called by ``Queue.enqueue``, ``enqueue_call``, ``enqueue_at``, ``enqueue_in`` and
        ``enqueue_many`` in the enqueuing process, before they return (the job hash is written
        just after). Raises what RQ's ``Job.create`` raises; tracking problems are logged.
        """
        job = super().create(func, *args, **kwargs)
        job_class = _tracked_class(func)
        if job_class is not None:
            lifecycle.job_enqueued(job.id, job_class)
        return job

    def perform(self) -> Any:
        """Run the job; for a tracked job, report its attempt around it.

        Called by the worker in the work horse. ``started`` comes first, and the job is
        current while it runs, so :func:`immortus.progress` works from its code. Then
        ``finished``; or, if it raises (a timeout included) or returns ``rq.Retry``,
        ``retrying`` while RQ has a retry left, ``failed`` otherwise. Raises what the job
        raises, unchanged; tracking problems are logged.
        """
        self._ran_here = True
        job_class = self._job_class()
        if job_class is None:
            return super().perform()
        attempt = start_attempt(self.id, job_class)
        try:
            result = super().perform()
        except BaseException as exc:  # RQ fails the job on anything it raises
            attempt.fail(exc, final_attempt=not self.should_retry)
            raise
        else:
            if isinstance(result, Retry):
                exhausted = (self.number_of_retries or 0) >= result.max
                message = f"the job returned Retry(max={result.max})"
                attempt.fail(JobError(type="rq.Retry", message=message), final_attempt=exhausted)
            else:
                attempt.finish()
            return result
        finally:
            # The work horse ends with os._exit, which runs no exit handler: give the events
            # held through a store outage a last chance (no wait at all when none are held).
            outbox.flush(HORSE_FLUSH_SECONDS)

    @property
    def stopped_callback(self) -> Callable[[Job, Redis], Any] | None:
        """The job's stopped callback, preceded by reporting ``cancelled`` for a tracked job.

        RQ calls it in the worker after ``send_stop_job_command`` killed the work horse.
        """
        own = super().stopped_callback

        def stopped(job: Job, connection: Redis) -> Any:
            self._report_cancelled()
            return None if own is None else own(job, connection)

        return stopped

    def send_webhooks(self, status: str | RQState, *, exc_string: str | None = None) -> None:
        """Send the job's webhooks as RQ does; then report ``lost`` if its worker died.

        RQ calls it once a job's ending is saved: for ``failed`` in the work horse after the
        job raised (:meth:`perform` already reported it), in the worker when the work horse died
        ("Work-horse terminated unexpectedly"), and wherever RQ's maintenance found the job
        abandoned in the started registry (its whole worker died). The last two, told apart by
        RQ's ``exc_string``, report ``lost``. Raises only RQ's ``StopRequested``, when a stop
        signal came during the report (see :func:`_stop_signals_held`); tracking problems are
        logged.
        """
        super().send_webhooks(status, exc_string=exc_string)
        if status == RQState.FAILED and exc_string:
            error = error_from_traceback(exc_string)
            if error.type in LOST_ERRORS:
                self._report_death(error, retrying=False)

    def retry(self, queue: Queue, pipeline: Pipeline) -> None:
        """Requeue (or schedule) the job as RQ does; report ``retrying`` if its worker died.

        RQ calls it for a failed job with retries left: in the work horse after the job raised
        (:meth:`perform` already reported ``retrying``), or in another process when the one
        running the job died (the worker whose work horse was killed, RQ's maintenance finding
        the job abandoned): that attempt ends ``retrying`` here, and the next one starts as
        attempt + 1. Raises what RQ's ``Job.retry`` raises; tracking problems are logged.
        """
        super().retry(queue, pipeline)
        if not self._ran_here:
            died = JobError(
                type=HORSE_DIED,
                message="the process running the job died before it ended; RQ retries it",
            )
            self._report_death(died, retrying=True)

    def cancel(
        self,
        pipeline: Any = None,
        enqueue_dependents: bool = False,
        remove_from_dependencies: bool = False,
    ) -> dict[str, list[str]]:
        """Cancel the job as RQ does; then, for a tracked job, report ``cancelled``.

        Raises:
            InvalidJobOperation: the job was already cancelled (RQ's error).
        """
        moved = super().cancel(
            pipeline=pipeline,
            enqueue_dependents=enqueue_dependents,
            remove_from_dependencies=remove_from_dependencies,
        )
        self._report_cancelled()
        return moved

    def _job_class(self) -> str | None:
        """Return the job class if the job is tracked (imports its module, as RQ would)."""
        try:
            function = self.func
        except Exception:  # noqa: BLE001 - RQ reports an unimportable function itself
            return None
        return None if function is None else _tracked_class(function)

    def _report_cancelled(self) -> None:
        job_class = self._job_class()
        if job_class is not None:
            lifecycle.job_cancelled(self.id, job_class)

    def _report_death(self, error: JobError, *, retrying: bool) -> None:
        with _stop_signals_held():
            job_class = self._job_class()
            if job_class is not None:
                report = lifecycle.job_retrying if retrying else lifecycle.job_lost
                report(self.id, error, job_class)


#: The signals with which RQ's worker is stopped (warm shutdown, then cold).
_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs in a worker's main thread; then deliver them.

    An idle RQ worker (running its maintenance, say) answers a stop signal by raising
    ``StopRequested`` wherever its main thread is. Raised inside a report, it would be logged
    as a tracking failure and lost, and the worker would never stop. Held, it is raised just
    after the report, where RQ expects it. Anywhere else (another thread, handlers that are not
    Python functions), the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {number: signal.getsignal(number) for number in _STOP_SIGNALS}
    if not all(callable(handler) for handler in kept.values()):
        yield
        return
    held: list[tuple[int, FrameType | None]] = []

    def hold(number: int, frame: FrameType | None) -> None:
        held.append((number, frame))

    for number in kept:
        signal.signal(number, hold)
    try:
        yield
    finally:
        for stop, handler in kept.items():
            signal.signal(stop, handler)
        for received, frame in held:
            current = signal.getsignal(received)  # as the delivery before may have left it
            if callable(current):
                current(received, frame)


_tracked_subclasses: dict[type[Job], type[TrackedJob]] = {}


def tracked_job_class(job_class: type[Job]) -> type[TrackedJob]:
    """Return ``job_class`` if it reports to immortus, else a subclass of it that does."""
    if issubclass(job_class, TrackedJob):
        return job_class
    if job_class is Job:
        return TrackedJob
    tracked = _tracked_subclasses.get(job_class)
    if tracked is None:
        name = f"Tracked{job_class.__name__}"
        tracked = type(name, (TrackedJob, job_class), {"__module__": __name__})
        _tracked_subclasses[job_class] = tracked
    return tracked


class _Installed:
    """The Redis connection :class:`RQStrategy` reads when it was given none."""

    connection: Redis | None = None
    serializer: Any = None


def install(target: Target) -> Target:
    """Install immortus's hooks on an RQ ``Queue`` (or ``Worker``) and return it.

    Sets its job class to :class:`TrackedJob` (or a subclass of its own job class that
    reports), and lets :class:`RQStrategy` read job hashes over its connection. Installing
    twice changes nothing. A worker started with ``rq worker`` needs ``--job-class
    immortus.queues.rq.TrackedJob`` instead.

    Raises:
        TypeError: ``target`` is neither an RQ queue nor an RQ worker.
    """
    if not isinstance(target, Queue | BaseWorker):
        raise TypeError(f"install() takes an RQ Queue or Worker, not {type(target).__name__}")
    target.job_class = tracked_job_class(target.job_class)
    _Installed.connection = target.connection
    _Installed.serializer = target.serializer
    return target


class RQStrategy(QueueStrategy):
    """The store strategy, completed by RQ's job hash: the strategy inferred for RQ jobs.

    With no ``connection``, it reads over the connection of the queue last given to
    :func:`install` in this process. The hash is RQ's answer until ``result_ttl`` (or
    ``failure_ttl``) removes it; after that only the store knows the job (``unknown`` when store
    tracking is off).
    """

    def __init__(
        self,
        connection: Redis | None = None,
        *,
        serializer: Any = None,
        store: Store | None = None,
    ) -> None:
        super().__init__(store)
        self._connection = connection
        self._serializer = serializer

    def _redis(self) -> tuple[Redis, Any]:
        if self._connection is not None:
            return self._connection, resolve_serializer(self._serializer)
        if _Installed.connection is None:
            raise ConfigurationError(
                "RQStrategy has no Redis connection: call immortus.queues.rq.install(queue) in "
                "this process, or give one: RQStrategy(connection=Redis(...))"
            )
        return _Installed.connection, _Installed.serializer

    def native_status(self, job_id: str) -> JobStatus | None:
        """Return what RQ's job hash says of the job; ``None`` once the hash is gone.

        Raises:
            StoreUnavailable: Redis cannot be reached.
            ConfigurationError: there is no connection (see the class docstring).
        """
        return self.native_status_many([job_id]).get(job_id)

    def native_status_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Return RQ's statuses of the jobs it still has, read with one ``Job.fetch_many``.

        A failed job costs one more read, for its error.

        Raises:
            StoreUnavailable: Redis cannot be reached.
            ConfigurationError: there is no connection (see the class docstring).
        """
        wanted = [job_id for job_id in dict.fromkeys(job_ids) if _RQ_JOB_ID.fullmatch(job_id)]
        if not wanted:
            return {}
        connection, serializer = self._redis()
        try:
            jobs = Job.fetch_many(wanted, connection=connection, serializer=serializer)
            return {job.id: _read(job) for job in jobs if job is not None}
        except RedisError as exc:
            raise StoreUnavailable(f"RQ's Redis cannot be reached: {exc}") from exc


def _read(job: Job) -> JobStatus:
    """Translate an RQ job (its hash, already fetched) into a status."""
    rq_state = job.get_status(refresh=False)
    state = STATES.get(rq_state, State.CREATED)
    ran_before = job.started_at is not None
    if state is State.CREATED and ran_before and job.repeats_left is None:
        state = State.RETRYING
    error = _error(job) if rq_state is RQState.FAILED else None
    if error is not None and error.type in LOST_ERRORS:
        state = State.LOST  # RQ failed it because the process running it died
    return JobStatus(
        job_id=job.id,
        state=state,
        progress=_progress(job.meta),
        error=error,
        attempts=1 + (job.number_of_retries or 0) if ran_before else 0,
        enqueued_at=job.enqueued_at,
        started_at=job.started_at,
        finished_at=job.ended_at if state.completed else None,
    )


def _progress(meta: Mapping[str, Any]) -> Progress | None:
    """Read the progress a job saved in its meta (see :data:`PROGRESS_META_KEY`), if any."""
    value = meta.get(PROGRESS_META_KEY)
    try:
        if isinstance(value, Mapping) and "current" in value:
            return Progress(
                current=value["current"],
                total=value.get("total"),
                message=value.get("message"),
                allow_overshoot=True,
            )
        if isinstance(value, int | float) and not isinstance(value, bool):
            return Progress(current=value, total=100, allow_overshoot=True)
    except ValueError:  # InvalidProgress: not numbers we can show
        return None
    return None


def _error(job: Job) -> JobError | None:
    """Read why a failed job failed from its latest RQ result (the traceback stays here)."""
    result = Result.fetch_latest(job, serializer=job.serializer)
    if result is None:
        return None
    if result.type == Result.Type.MAX_RETRIES_EXCEEDED:
        return JobError(type="rq.Retry", message="the job returned Retry too many times")
    return error_from_traceback(result.exc_string or "")


def error_from_traceback(text: str) -> JobError:
    """Return the error an RQ failure text (a formatted traceback, mostly) describes.

    A traceback ending with the line ``ValueError: boom`` gives type ``ValueError`` and message
    ``boom``. RQ's texts for a job whose process died give the types of :data:`LOST_ERRORS`:
    "Work-horse terminated unexpectedly; waitpid returned 9 (signal 9)" is a
    :data:`HORSE_DIED` "the work horse was killed by signal 9 (SIGKILL)", and "Moved to
    FailedJobRegistry, due to AbandonedJobError" an :data:`ABANDONED`. Any other text is the
    message of an ``rq.JobFailure``. RQ's text stays in ``traceback``, on the server.
    """
    died = _death(text)
    if died is not None:
        return died
    lines = text.rstrip().splitlines()
    # The exception is the first line after the traceback's frames, which are indented.
    start = max((number + 1 for number, line in enumerate(lines) if line[:1].isspace()), default=0)
    match = _EXCEPTION_LINE.fullmatch(lines[start]) if start < len(lines) else None
    if match is not None:
        message = "\n".join([match.group(2) or "", *lines[start + 1 :]]).strip()
        return JobError(type=match.group(1), message=message[:_MAX_ERROR_MESSAGE], traceback=text)
    last = lines[-1].strip() if lines else "the job failed"
    return JobError(type="rq.JobFailure", message=last[:_MAX_ERROR_MESSAGE], traceback=text)


def _death(text: str) -> JobError | None:
    """Read RQ's text for a job whose work horse or worker died; ``None`` for any other text."""
    horse = _HORSE_TERMINATED.match(text.lstrip())
    if horse is not None:
        return JobError(type=HORSE_DIED, message=_how_it_died(horse), traceback=text)
    if _ABANDONED_TEXT.match(text.lstrip()):
        message = "the worker running the job died: RQ found the job abandoned"
        return JobError(type=ABANDONED, message=message, traceback=text)
    return None


def _how_it_died(horse: re.Match[str]) -> str:
    """Say how the work horse ended, from RQ's ``waitpid`` status (and signal) of it."""
    status, number = int(horse.group(1)), horse.group(2)
    if number is None and status > 0 and os.WIFSIGNALED(status):
        number = str(os.WTERMSIG(status))
    if number is not None:
        try:
            name = f" ({signal.Signals(int(number)).name})"
        except ValueError:  # not a signal this platform names
            name = ""
        return f"the work horse was killed by signal {number}{name}"
    if status > 0 and os.WIFEXITED(status):
        return f"the work horse exited with code {os.WEXITSTATUS(status)}"
    return f"the work horse died (waitpid returned {status})"
