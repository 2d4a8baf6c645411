"""Cancelling an RQ job for :func:`immortus.cancel`: ``Job.cancel`` or RQ's stop command."""

from __future__ import annotations

from typing import Final

from redis.exceptions import RedisError
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import JobStatus as RQState

from immortus.cancelling import register_canceller
from immortus.exceptions import NotCancellable, StoreUnavailable
from immortus.queues.rq.hooks import _Installed
from immortus.queues.rq.job import TrackedJob

__all__ = ["QUEUE", "cancel"]

#: The queue name RQ's jobs declare (``@immortus.track(queue="rq")``).
QUEUE: Final = "rq"
#: RQ states of a job no worker runs: ``Job.cancel`` drops it from its queue or registry.
_WAITING: Final = frozenset(
    {
        RQState.CREATED,
        RQState.QUEUED,
        RQState.DEFERRED,
        RQState.SCHEDULED,
        RQState.RATE_LIMITED,
        RQState.READY_TO_ENQUEUE,
    }
)


def cancel(job_id: str, job_class: str | None = None) -> None:
    """Stop an RQ job, waiting or running; registered as RQ's canceller of :func:`immortus.cancel`.

    A waiting job (queued, scheduled, deferred) is cancelled with ``Job.cancel``, which reports
    ``cancelled`` at once. A running one gets RQ's stop command: its worker kills the work
    horse and marks it stopped, and its hooks report ``cancelled``. A job RQ no longer has, or
    that has ended, is left alone. Reads over the connection of the queue given to
    :func:`~immortus.queues.rq.install` in this process.

    Raises:
        NotCancellable: nothing was installed here, so there is no connection to RQ.
        StoreUnavailable: RQ's Redis cannot be reached.
    """
    connection = _Installed.connection
    if connection is None:
        raise NotCancellable(
            f"RQ job {job_id!r} cannot be cancelled from this process: call "
            "immortus.queues.rq.install(queue) here first"
        )
    try:
        job = TrackedJob.fetch(job_id, connection=connection, serializer=_Installed.serializer)
        state = job.get_status(refresh=False)
        if state in _WAITING:
            job.cancel()
        elif state is RQState.STARTED:
            send_stop_job_command(connection, job_id, serializer=_Installed.serializer)
    except (NoSuchJobError, InvalidJobOperation):
        return  # gone, already cancelled, or no longer running: nothing to stop
    except RedisError as exc:
        raise StoreUnavailable(f"RQ's Redis cannot be reached: {type(exc).__name__}") from exc


register_canceller(QUEUE, cancel)
