"""``RQStrategy``: immortus's store, corrected by RQ's own job hash."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from redis import Redis
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.job import JobStatus as RQState
from rq.registry import ScheduledJobRegistry
from rq.results import Result
from rq.serializers import resolve_serializer

from immortus.exceptions import ConfigurationError, StoreUnavailable
from immortus.queues.native import QueueStrategy
from immortus.queues.rq.errors import CANCELLED_ERROR, LOST_ERRORS, error_from_traceback
from immortus.queues.rq.hooks import _Installed
from immortus.status import JobError, JobStatus, Progress, State
from immortus.stores.base import Store

__all__ = ["PROGRESS_META_KEY", "STATES", "RQStrategy"]

#: How each state of RQ's job hash reads in immortus. A waiting job (``queued``,
#: ``scheduled``) that has run before is ``retrying`` instead: another attempt is due. A
#: ``failed`` job whose process died is ``lost``; one that raised ``immortus.JobCancelled``
#: is ``cancelled``. A ``scheduled`` retry's ``retry_at`` is its time in RQ's scheduled
#: registry.
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

_RQ_JOB_ID = re.compile(r"[A-Za-z0-9_-]+")


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
    elif error is not None and error.type == CANCELLED_ERROR:
        state, error = State.CANCELLED, None  # it stopped on a cancel request
    return JobStatus(
        job_id=job.id,
        state=state,
        retry_at=_scheduled_at(job) if state is State.RETRYING else None,
        progress=_progress(job.meta),
        error=error,
        attempts=1 + (job.number_of_retries or 0) if ran_before else 0,
        enqueued_at=job.enqueued_at,
        started_at=job.started_at,
        finished_at=job.ended_at if state.completed else None,
    )


def _scheduled_at(job: Job) -> datetime | None:
    """Return when RQ runs a scheduled retry (its score in the scheduled registry), else None.

    A retry back in its queue (no interval) runs as soon as a worker is free: no time to tell.
    """
    if job.get_status(refresh=False) is not RQState.SCHEDULED:
        return None
    registry = ScheduledJobRegistry(job.origin, connection=job.connection)  # type: ignore[no-untyped-call]
    try:
        return registry.get_scheduled_time(job)
    except NoSuchJobError:  # enqueued by the scheduler meanwhile
        return None


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
