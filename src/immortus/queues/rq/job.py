"""``TrackedJob``: RQ's ``Job``, reporting the life of each tracked job to immortus."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, Final

from redis import Redis
from redis.client import Pipeline
from rq import Queue, Retry
from rq.job import Job
from rq.job import JobStatus as RQState

from immortus import lifecycle, outbox
from immortus.cancel_requests import JobCancelled
from immortus.jobs import start_attempt
from immortus.queues._kit import retry_time, tracked_callable, tracked_name
from immortus.queues.rq.errors import HORSE_DIED, LOST_ERRORS, error_from_traceback
from immortus.status import JobError

__all__ = ["HORSE_FLUSH_SECONDS", "TrackedJob", "tracked_job_class", "untracked_job_class"]

#: How long a work horse waits, at the end of a job, for a store that is away to take the
#: tracking events it holds (see :mod:`immortus.outbox`), before RQ ends it with ``os._exit``.
HORSE_FLUSH_SECONDS: Final = 1.0


def _tracked_class(function: object) -> str | None:
    """Return the job class of ``function`` (a callable or RQ's dotted name) if it is tracked."""
    return tracked_name(function) if isinstance(function, str) else tracked_callable(function)


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
        ``retrying`` (with when RQ runs it again) while RQ has a retry left, ``failed``
        otherwise. ``immortus.JobCancelled`` ends it ``cancelled`` and is never retried: RQ
        records the job failed with it, which :class:`RQStrategy` reads ``cancelled``. Raises
        what the job raises, unchanged; tracking problems are logged.
        """
        self._ran_here = True
        job_class = self._job_class()
        if job_class is None:
            return super().perform()
        attempt = start_attempt(self.id, job_class)
        try:
            result = super().perform()
        except JobCancelled:
            attempt.cancel()
            self.retries_left = 0  # a stop, not a failure: RQ must not run it again
            raise
        except BaseException as exc:  # RQ fails the job on anything it raises
            if self.should_retry:
                retry_at = retry_time(self.get_retry_interval())
                attempt.fail(exc, final_attempt=False, retry_at=retry_at)
            else:
                attempt.fail(exc)
            raise
        else:
            if isinstance(result, Retry):
                exhausted = (self.number_of_retries or 0) >= result.max
                message = f"the job returned Retry(max={result.max})"
                error = JobError(type="rq.Retry", message=message)
                if exhausted:
                    attempt.fail(error)
                else:
                    delay = Retry.get_interval(self.number_of_retries or 0, result.intervals)
                    attempt.fail(error, final_attempt=False, retry_at=retry_time(delay))
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


#: The reporting subclass made for each job class: a cache of classes, which a reset or a fork
#: need not touch (the same class is made again for the same job class), so not runtime state.
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


def untracked_job_class(job_class: type[Job]) -> type[Job]:
    """Return the job class that :func:`tracked_job_class` made ``job_class`` from."""
    if not issubclass(job_class, TrackedJob):
        return job_class
    originals = [base for base, tracked in _tracked_subclasses.items() if tracked is job_class]
    return originals[0] if originals else Job
