"""What a queue keeps about a job, and what immortus's store recorded, told as one status.

A queue that persists state of its own (Celery's result backend, RQ's job hash, a Django task
backend's results) can answer for jobs that immortus's hooks never saw: enqueued before immortus
was installed, or run while immortus's store was down. Its inferred strategy is a
:class:`QueueStrategy`: the store's record when there is one (it has progress, meta, attempts
and errors that queues rarely keep), corrected by the queue's own state:

========================================  =================================================
store record        queue's own state     answer
========================================  =================================================
none                none                  ``unknown``
none                some                  the queue's
some                none, or not ended    the store's
not ended           ended                 the store's, ended as the queue says (the worker
                                          could not write its ending: store down, killed)
presumed ``lost``   ended, not ``lost``   the store's, ended as the queue says
ended               any                   the store's (first terminal state wins)
unreachable         some                  the queue's (the page keeps working)
some                unreachable           the store's (the same, the other way round)
unreachable         none or unreachable   :class:`~immortus.exceptions.StoreUnavailable`
========================================  =================================================

Where both answer, the times the store lacks (a job enqueued before the hooks were installed
has no ``enqueued_at``) are taken from the queue's; a job both call ``retrying`` is due at the
later of the two ``retry_at`` (the store's, unless the queue knows a later retry); an ended
record that has both its times is :func:`settled`, and the queue's backend is not read for it.

A ``started`` record whose worker's lease is live is :func:`vouched` for: the worker's
heartbeat (:mod:`immortus.heartbeat`) says it runs the job, and its hooks will record the
ending, so the backend is not read for it either. Should the worker die, or its hooks fail
to write the ending, its beats stop and the lease runs out at most ``heartbeat_timeout``
seconds (60 by default) after the last beat; from then on the record reads ``lost`` and the
backend is read again. That bounds how late an ending the hooks missed shows. A ``lost`` that
is only presumed from a lapsed lease (:func:`presumed_lost`) is no terminal fact: the queue's
own ending (finished, failed, cancelled) replaces it. Records without a lease (no heartbeat
watches the job) are read with the backend as before.

With store tracking off (``immortus.configure(store=None)``) the queue alone answers and the
hooks write nothing.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from immortus import config
from immortus.exceptions import StoreUnavailable
from immortus.status import JobStatus, State
from immortus.store_strategy import StoreStrategy
from immortus.stores.records import LOST_ERROR_TYPE
from immortus.transitions import Event, utcnow

__all__ = ["QueueStrategy", "merge", "presumed_lost", "settled", "vouched"]


def merge(recorded: JobStatus | None, native: JobStatus | None, job_id: str) -> JobStatus:
    """Return one status from the store's record and the queue's own (see the module's table)."""
    if recorded is None:
        return native if native is not None else JobStatus.unknown(job_id)
    if native is None:
        return recorded
    if recorded.enqueued_at is None or recorded.started_at is None:
        recorded = dataclasses.replace(
            recorded,
            enqueued_at=recorded.enqueued_at or native.enqueued_at,
            started_at=recorded.started_at or native.started_at,
        )
    if _later_retry(recorded, native):
        recorded = dataclasses.replace(recorded, retry_at=native.retry_at)
    if not native.completed:
        return recorded
    if presumed_lost(recorded):
        if native.state is State.LOST:
            return recorded
        recorded = dataclasses.replace(recorded, error=None)
    elif recorded.completed:
        return recorded
    return dataclasses.replace(
        recorded,
        state=native.state,
        error=recorded.error or native.error,
        finished_at=native.finished_at or recorded.finished_at,
        attempts=max(recorded.attempts, native.attempts),
    )


def _later_retry(recorded: JobStatus, native: JobStatus) -> bool:
    """Whether the queue knows a later retry time than the record of a retrying job.

    Retry times only move forward (each retry is later than the last), so the later one is the
    newer news: a retry the queue postponed, or scheduled for an attempt whose ``retrying``
    the store missed.
    """
    return (
        recorded.state is State.RETRYING
        and native.state is State.RETRYING
        and native.retry_at is not None
        and (recorded.retry_at is None or native.retry_at > recorded.retry_at)
    )


def presumed_lost(recorded: JobStatus) -> bool:
    """Whether ``recorded`` is ``lost`` only because its worker's lease ran out.

    Such a record (read ``lost`` past its lease, or written so by a reaper) is a presumption:
    the worker may have ended the job and failed to record it. The queue's own ending wins.
    """
    error = recorded.error
    return recorded.state is State.LOST and error is not None and error.type == LOST_ERROR_TYPE


def settled(recorded: JobStatus | None) -> bool:
    """Whether :func:`merge` keeps ``recorded`` as it is, whatever the queue says.

    True of an ended record that has both its times, unless its ``lost`` is only presumed
    (:func:`presumed_lost`): the queue is not asked about it at all.
    """
    return (
        recorded is not None
        and recorded.completed
        and recorded.enqueued_at is not None
        and recorded.started_at is not None
        and not presumed_lost(recorded)
    )


def vouched(recorded: JobStatus | None, now: datetime) -> bool:
    """Whether a live worker vouches for ``recorded`` at ``now``: the queue need not be asked.

    True of a ``started`` record whose worker's heartbeat lease (``alive_until``) runs past
    ``now``: that worker runs the job and its hooks will record the ending.
    """
    if recorded is None or recorded.state is not State.STARTED:
        return False
    lease = recorded.alive_until
    return lease is not None and lease > now


class QueueStrategy(StoreStrategy):
    """The store strategy, completed by what the queue itself keeps about each job.

    Subclasses implement :meth:`native_status` (and :meth:`native_status_many` when the
    backend can answer many jobs in one round trip). The lifecycle callbacks are the store
    strategy's: the queue's hooks write to the store as usual.

    A running job whose worker's heartbeat lease is live is answered from the store alone: an
    ending its hooks miss shows at most ``heartbeat_timeout`` after its worker's last beat (see
    the module's docstring).
    """

    #: Whether the queue's own answer is certain (False where "gone" is read as "finished").
    certain: ClassVar[bool] = True

    @abstractmethod
    def native_status(self, job_id: str) -> JobStatus | None:
        """Return what the queue itself keeps about the job, or ``None`` if it has nothing.

        Raises:
            StoreUnavailable: the queue's backend cannot be reached.
        """

    def native_status_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Return the queue's own statuses of the jobs it knows among ``job_ids``.

        The default asks :meth:`native_status` once per id.

        Raises:
            StoreUnavailable: the queue's backend cannot be reached.
        """
        found = {job_id: self.native_status(job_id) for job_id in dict.fromkeys(job_ids)}
        return {job_id: status for job_id, status in found.items() if status is not None}

    def status(self, job_id: str) -> JobStatus:
        """Return the store's record corrected by the queue's own state (module table).

        Raises:
            StoreUnavailable: neither the store nor the queue's backend can answer.
        """
        return self.status_many([job_id])[job_id]

    def status_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Return :meth:`status` of every job, with one store read and one backend read.

        The backend is not asked about the jobs whose record is :func:`settled` or
        :func:`vouched` for (none, when every record is): nothing it says would change their
        answer, or the worker's hooks will record it first. A job the backend says
        ended while its record did not is read again from the store (a second read, for those
        jobs only): it ended between the two reads, and its answer carries its final record.

        Raises:
            StoreUnavailable: neither side can answer for every job asked about.
        """
        try:
            recorded = self._recorded(job_ids)
        except StoreUnavailable:
            native = self.native_status_many(job_ids)
            if set(native) != set(job_ids):
                raise
            return native
        now = utcnow()
        unsettled = [
            job_id
            for job_id in job_ids
            if not settled(found := recorded.get(job_id)) and not vouched(found, now)
        ]
        try:
            native = self.native_status_many(unsettled) if unsettled else {}
        except StoreUnavailable:
            if set(recorded) != set(job_ids):
                raise
            return recorded
        recorded.update(self._final_records(recorded, native))
        return {
            job_id: merge(recorded.get(job_id), native.get(job_id), job_id)
            for job_id in dict.fromkeys(job_ids)
        }

    def _final_records(
        self, recorded: dict[str, JobStatus], native: dict[str, JobStatus]
    ) -> dict[str, JobStatus]:
        """Read again the records of the jobs that ended between the store's read and the queue's.

        The queue says ended, the record read just before says not: the worker has most likely
        written its ending (and its last progress) since. A completed answer is the last one a
        page asks for, so it carries the final record, not the one read before the job ended.
        A store that is down now keeps the first read.
        """
        ended = [
            job_id
            for job_id, status in native.items()
            if status.completed and job_id in recorded and not recorded[job_id].completed
        ]
        if not ended:
            return {}
        try:
            return self._recorded(ended)
        except StoreUnavailable:
            return {}

    def status_nowait(self, job_id: str) -> JobStatus:
        """Never: the queue's backend is over the network. See ``TrackingStrategy``.

        Raises:
            BlockingIOError: always.
        """
        raise BlockingIOError(f"{type(self).__qualname__} asks its queue's backend")

    def _recorded(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Return the store's records of ``job_ids``; none when store tracking is off."""
        if not self._tracking():
            return {}
        return self.store.get_many(job_ids)

    def on_event(self, event: Event) -> None:
        """Write the event to the store; with store tracking off the queue keeps the only record."""
        if self._tracking():
            super().on_event(event)

    def _tracking(self) -> bool:
        return self._store is not None or config.get_store() is not None
