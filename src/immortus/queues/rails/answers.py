"""What a Rails reader answers, from the queue's own record, the job's events and its notes.

======================================  ============================================================
the queue holds the job                 the queue's answer, completed by the job's events (progress,
                                        meta) when the Rails app writes them (the exact mode)
the job's events say it ended           that ending, exactly (``certain``)
gone; no note, no events                ``unknown``: nothing shows the id ever existed
gone; seen failed for good              ``failed``, ``certain=False`` (removed from the dead set)
gone; its last attempt raised           ``failed``: the queue keeps a job it will retry
gone; its worker process died           ``lost`` (``WorkerLost``); the queue can tell (Sidekiq)
gone; anything else                     ``finished``, ``certain=False``, ``success`` ``null``: it
                                        ended, and nobody can say whether it succeeded
======================================  ============================================================
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from immortus.queues.native import merge
from immortus.queues.rails.notes import Note, Seen
from immortus.status import JobError, JobStatus, State
from immortus.stores.records import LOST_ERROR_TYPE
from immortus.transitions import Event, EventKind, apply

__all__ = ["combine", "conclude"]


def ended_unknown(job_id: str, base: JobStatus | None, job_class: str | None) -> JobStatus:
    """The answer for a job that was seen and is gone: ended, outcome unknown."""
    if base is None:
        return JobStatus(job_id=job_id, job_class=job_class, state=State.FINISHED, certain=False)
    return JobStatus(
        job_id=job_id,
        job_class=base.job_class or job_class,
        state=State.FINISHED,
        progress=base.progress,
        attempts=base.attempts,
        enqueued_at=base.enqueued_at,
        started_at=base.started_at,
        updated_at=base.updated_at,
        meta=base.meta,
        certain=False,
    )


def lost(job_id: str, base: JobStatus | None, note: Note, at: datetime, why: str) -> JobStatus:
    """The answer for a job whose worker died while running it: ``lost``, ``WorkerLost``."""
    if base is None or base.state is not State.STARTED:
        base = JobStatus(
            job_id=job_id,
            job_class=note.job_class if base is None else base.job_class or note.job_class,
            state=State.STARTED,
            attempts=max(1, 0 if base is None else base.attempts),
            started_at=datetime.fromtimestamp(note.at, UTC) if base is None else base.started_at,
        )
    event = Event(
        kind=EventKind.LOST, job_id=job_id, at=at, error=JobError(type=LOST_ERROR_TYPE, message=why)
    )
    return apply(base, event) or base


def conclude(
    job_id: str, note: Note | None, recorded: JobStatus | None, *, lost_because: str | None
) -> tuple[JobStatus, Seen | None]:
    """Answer for a job the queue no longer holds (module table), and the verdict to note.

    ``lost_because`` says why the worker that ran the job is known dead, if it is.
    Returns the verdict ``None`` when there is nothing to remember (``unknown``).
    """
    now = datetime.now(UTC)
    if recorded is not None and recorded.completed:
        return recorded, Seen.GONE
    if note is None and recorded is None:
        return JobStatus.unknown(job_id), None
    job_class = None if note is None else note.job_class
    if note is not None and note.seen is Seen.FAILED:
        failed = JobStatus(job_id=job_id, job_class=job_class, state=State.FAILED, certain=False)
        return failed, Seen.GONE
    if recorded is not None and recorded.state is State.RETRYING:
        failure = Event(kind=EventKind.FAILED, job_id=job_id, at=now, error=recorded.error)
        return apply(recorded, failure) or recorded, Seen.GONE
    if lost_because is not None and note is not None:
        return lost(job_id, recorded, note, now, lost_because), Seen.LOST
    return ended_unknown(job_id, recorded, job_class), Seen.GONE


def combine(job_id: str, recorded: JobStatus | None, native: JobStatus) -> JobStatus:
    """The queue's answer for a job it holds, completed by the job's own events.

    The events' record wins while the job runs (it has progress); the queue's ending wins over
    a record that has not ended; a record still ``created`` yields to a queue that went further.
    """
    if recorded is None:
        return native
    answer = merge(recorded, native, job_id)
    if answer is recorded and recorded.state is State.CREATED and native.state is not State.CREATED:
        answer = dataclasses.replace(native, progress=recorded.progress)
    return (
        dataclasses.replace(answer, meta={**answer.meta, **native.meta}) if native.meta else answer
    )
