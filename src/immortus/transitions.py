"""Lifecycle events and the one set of rules that turns them into a job's status.

Events arrive out of order across processes: the enqueuing web process may report ``enqueued``
after a fast worker already reported ``started``; a retry's new attempt may start before the old
attempt's ``retrying`` lands. :func:`apply` is the only place that decides what an event does, and
every store calls it inside its own atomic read-modify-write, so the rules hold on every store:

- A completed state (``finished``, ``failed``, ``cancelled``) is never overwritten: the first
  one to land wins, and later or duplicate events are ignored.
- ``lost`` is a presumption (the worker went quiet), so newer news from a worker overrides it: a
  redelivery after ``lost`` counts an attempt and goes back to ``started``, and a late
  ``finished`` replaces it.
- ``enqueued`` never moves a job backwards; it only fills in what is missing.
- An event for an older attempt than the one recorded is stale and ignored.
- ``lost`` applies only to a ``started`` job: only a running job has a worker to lose.
- A new attempt starts clean: no progress, no error, no ``retry_at`` (the failed attempt's error
  and the time of its retry were shown while the job was ``retrying``; the history keeps them).
  An ending clears ``retry_at`` too.
- ``progress`` implies the job is running: it moves ``created`` / ``retrying`` to ``started``
  (a new attempt) and ``lost`` back to ``started`` (the same attempt: the worker was only slow).
- ``group_id`` is set by the first event that names a group and never changed after (an
  event naming another group changes nothing of it).
- ``meta`` keys merge into the record's, and the merged meta stays within
  :data:`MAX_MERGED_META_BYTES` as compact JSON: a ``meta`` event that would take it past the
  bound is refused whole (nothing of it is merged, one WARNING per job and process says so),
  and the record stays as it was. The job itself never sees an error.

The job's history is kept beside the record by the same rules: :func:`archived` says what an
applied event writes to it (only what the record is about to forget), :func:`told` what the
record tells by itself, and :func:`history` joins the two.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from immortus import runtime
from immortus.exceptions import InvalidInput
from immortus.status import (
    MAX_HISTORY,
    HistoryEntry,
    HistoryEvent,
    JobError,
    JobStatus,
    Progress,
    State,
    read_only,
)
from immortus.validation import (
    MAX_META_BYTES,
    check_group_id,
    check_job_class,
    check_job_id,
    check_meta,
)

__all__ = [
    "MAX_MERGED_META_BYTES",
    "Event",
    "EventKind",
    "apply",
    "archived",
    "check_aware",
    "history",
    "merged_meta_size",
    "told",
    "utcnow",
]

logger = logging.getLogger("immortus")

#: Largest merged meta a record keeps, as compact JSON (ASCII, so characters are bytes): the
#: same bound as one event's meta, so a verify body never carries more than 64 KiB of meta.
MAX_MERGED_META_BYTES: Final = MAX_META_BYTES
#: How many job ids the refusal warning remembers (one WARNING per job and process).
_WARNED_KEPT: Final = 1024


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def check_aware(name: str, moment: object) -> datetime | None:
    """Return ``moment`` if it is ``None`` or a timezone-aware ``datetime``.

    Raises:
        InvalidInput: it is anything else (a naive ``datetime`` names no moment).
    """
    if moment is None or (isinstance(moment, datetime) and moment.tzinfo is not None):
        return moment
    raise InvalidInput(
        f"{name} must be timezone-aware (a datetime with a timezone), not {moment!r}"
    )


class EventKind(StrEnum):
    """What happened to a job: the one list of lifecycle events, in the order a job meets them.

    Each kind has a function in :mod:`immortus.lifecycle` and a strategy callback of the same
    name (:attr:`callback`); :data:`immortus.strategy.CALLBACKS` is derived from this list.
    """

    ENQUEUED = "enqueued"
    STARTED = "started"
    PROGRESS = "progress"
    RETRYING = "retrying"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"
    META = "meta"

    @property
    def callback(self) -> str:
        """The name of the strategy callback this kind is delivered to: ``job_<kind>``."""
        return f"job_{self.value}"

    @property
    def payload(self) -> str | None:
        """The :class:`Event` field its callback takes after the job id, if any."""
        return _PAYLOADS.get(self)


#: What each kind's callback takes by position after the job id.
_PAYLOADS: Final = {
    EventKind.PROGRESS: "progress",
    EventKind.RETRYING: "error",
    EventKind.FAILED: "error",
    EventKind.LOST: "error",
    EventKind.META: "meta",
}

_ENDINGS = {
    EventKind.FINISHED: State.FINISHED,
    EventKind.FAILED: State.FAILED,
    EventKind.CANCELLED: State.CANCELLED,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One thing that happened to a job, as reported by a queue hook or by the job itself.

    ``attempt`` is the queue's own attempt number (1 for the first run) when it knows it; without
    it, each ``started`` counts one more attempt.

    ``alive_until`` is the worker's lease on a running job (see :mod:`immortus.heartbeat`): until
    then the job reads ``started``; after it, unless a heartbeat extended it, ``lost``. Stores
    keep it beside the status (it is not part of :class:`JobStatus`, and :func:`apply` ignores
    it); it matters only on an event that leaves the job ``started``.

    ``retry_at`` is when the queue runs the next attempt, on a ``retrying`` event where it knows.

    ``group_id`` puts the job in a group (:mod:`immortus.groups`) if it is in none yet.

    ``meta`` is kept read-only (a :class:`~immortus.status.ReadOnlyDict`).

    Raises:
        InvalidInput: the job id, class or group id is malformed, ``attempt`` is below 1, a
            time is not timezone-aware, or the payload the kind needs (``progress``, ``meta``)
            is missing.
    """

    kind: EventKind
    job_id: str
    at: datetime = field(default_factory=utcnow)
    job_class: str | None = None
    attempt: int | None = None
    progress: Progress | None = None
    error: JobError | None = None
    meta: Mapping[str, Any] | None = None
    alive_until: datetime | None = None
    retry_at: datetime | None = None
    group_id: str | None = None

    def __post_init__(self) -> None:
        check_job_id(self.job_id)
        if self.job_class is not None:
            check_job_class(self.job_class)
        if self.group_id is not None:
            check_group_id(self.group_id)
        if self.at.tzinfo is None:
            check_aware("the event time", self.at)
        if self.alive_until is not None:
            check_aware("alive_until", self.alive_until)
        if self.retry_at is not None:
            check_aware("retry_at", self.retry_at)
        if self.attempt is not None and (isinstance(self.attempt, bool) or self.attempt < 1):
            raise InvalidInput(f"attempt must be a whole number from 1, not {self.attempt!r}")
        if self.kind is EventKind.PROGRESS and self.progress is None:
            raise InvalidInput("a progress event needs a Progress")
        if self.kind is EventKind.META:
            check_meta(self.meta)
        if self.meta is not None:
            object.__setattr__(self, "meta", read_only(self.meta))  # frozen: set this way


def apply(current: JobStatus | None, event: Event) -> JobStatus | None:
    """Return the status after ``event``, or ``None`` when the event changes nothing.

    ``current`` is ``None`` when the store has no record of the job; most events then create one
    (a worker's ``started`` may well be the first news of a job), except ``lost``, which cannot
    apply to a job nobody knew.
    """
    if current is None:
        if event.kind is EventKind.LOST:
            return None
        current = JobStatus(
            job_id=event.job_id,
            job_class=event.job_class,
            state=State.CREATED,
            group_id=event.group_id,
        )
        if event.kind is EventKind.ENQUEUED:
            return dataclasses.replace(current, enqueued_at=event.at, updated_at=event.at)
        return _apply_known(current, event) or dataclasses.replace(current, updated_at=event.at)
    return _apply_known(current, event)


def _apply_known(current: JobStatus, event: Event) -> JobStatus | None:
    changes = _changes(current, event)
    if current.job_class is None and event.job_class is not None:
        changes["job_class"] = event.job_class
    if current.group_id is None and event.group_id is not None:
        changes["group_id"] = event.group_id  # the first group named wins, for good
    changes = {key: value for key, value in changes.items() if getattr(current, key) != value}
    if not changes:
        return None
    latest = event.at if current.updated_at is None else max(current.updated_at, event.at)
    return dataclasses.replace(current, updated_at=latest, **changes)


def _is_stale(current: JobStatus, event: Event) -> bool:
    return event.attempt is not None and event.attempt < current.attempts


def _superseded(current: JobStatus) -> bool:
    """Whether the job has ended for good (``lost`` can still be overridden by a worker)."""
    return current.state.completed and current.state is not State.LOST


def _start(current: JobStatus, event: Event) -> dict[str, Any]:
    return {
        "state": State.STARTED,
        "attempts": event.attempt if event.attempt is not None else current.attempts + 1,
        "started_at": event.at,
        "finished_at": None,
        "progress": None,
        "error": None,
        "retry_at": None,
    }


def _changes(current: JobStatus, event: Event) -> dict[str, Any]:  # noqa: PLR0911
    kind = event.kind
    if kind is EventKind.ENQUEUED:
        return {"enqueued_at": current.enqueued_at or event.at}
    if kind is EventKind.META:
        assert event.meta is not None  # noqa: S101 - checked in Event.__post_init__
        return _merge_meta(current, event.meta)
    if _superseded(current) or _is_stale(current, event):
        return {}
    if kind is EventKind.STARTED:
        duplicate = current.state is State.STARTED and (
            event.attempt is None or event.attempt <= current.attempts
        )
        return {} if duplicate else _start(current, event)
    if kind is EventKind.PROGRESS:
        if current.state is State.LOST:  # the worker was only slow: same attempt, still running
            return {
                "state": State.STARTED,
                "finished_at": None,
                "error": None,
                "progress": event.progress,
            }
        running = current.state is State.STARTED
        return {**({} if running else _start(current, event)), "progress": event.progress}
    if kind is EventKind.RETRYING:
        return {
            "state": State.RETRYING,
            "error": event.error,
            "finished_at": None,
            "retry_at": event.retry_at,
        }
    if kind is EventKind.LOST:
        if current.state is not State.STARTED:  # only a running job has a worker to lose
            return {}
        return {"state": State.LOST, "finished_at": event.at, "error": event.error}
    ending = _ENDINGS[kind]
    return {
        "state": ending,
        "finished_at": event.at,
        "error": None if ending is State.FINISHED else event.error,
        "retry_at": None,
    }


_ENDED: Final = {
    State.FINISHED: HistoryEvent.FINISHED,
    State.FAILED: HistoryEvent.FAILED,
    State.CANCELLED: HistoryEvent.CANCELLED,
    State.LOST: HistoryEvent.LOST,
}


def archived(
    before: JobStatus | None, after: JobStatus, event: Event | None = None
) -> tuple[HistoryEntry, ...]:
    """The history entries to write when a record goes from ``before`` to ``after``.

    The history is written lazily: a record tells its own enqueue, its current attempt's start
    and its ending (:func:`told`), so only what it is about to forget is written down, in the
    same atomic write: the start of an attempt a new one replaces, a ``lost`` that newer news
    from a worker overrides, and every ``retrying`` (its time is kept nowhere else). A job
    that runs once writes no history at all. ``event`` is the one :func:`apply` applied
    (``None``: a heartbeat revived the job).
    """
    entries: list[HistoryEntry] = []
    if before is not None:
        if before.state is State.LOST and after.state is not State.LOST:
            entries.append(_ending(before, HistoryEvent.LOST))
        if before.started_at is not None and after.attempts != before.attempts:
            entries.append(_entry(before.started_at, HistoryEvent.STARTED, before.attempts))
    if event is not None and event.kind is EventKind.RETRYING and after.state is State.RETRYING:
        attempt = after.attempts if event.attempt is None else event.attempt
        entries.append(
            HistoryEntry(
                at=event.at,
                event=HistoryEvent.RETRYING,
                attempt=attempt,
                error=_bare(after.error),
                retry_at=after.retry_at,
            )
        )
    return tuple(entries)


def told(status: JobStatus) -> list[HistoryEntry]:
    """The history entries ``status`` tells by itself: enqueue, current start, ending."""
    entries = []
    if status.enqueued_at is not None:
        entries.append(_entry(status.enqueued_at, HistoryEvent.ENQUEUED, 0))
    if status.started_at is not None:
        entries.append(_entry(status.started_at, HistoryEvent.STARTED, status.attempts))
    ending = _ENDED.get(status.state)
    if ending is not None and status.finished_at is not None:
        entries.append(_ending(status, ending))
    return entries


def history(written: tuple[HistoryEntry, ...], status: JobStatus) -> tuple[HistoryEntry, ...]:
    """A job's whole history: what was ``written`` and what ``status`` tells, oldest first.

    At most :data:`~immortus.status.MAX_HISTORY` entries (the latest); entries of one moment
    keep the order they were written in.
    """
    merged = sorted((*written, *told(status)), key=lambda entry: entry.at)
    return tuple(merged[-MAX_HISTORY:])


def _entry(at: datetime, kind: HistoryEvent, attempt: int) -> HistoryEntry:
    return HistoryEntry(at=at, event=kind, attempt=attempt)


def _ending(status: JobStatus, kind: HistoryEvent) -> HistoryEntry:
    at = status.finished_at or status.updated_at
    assert at is not None  # noqa: S101 - an ended record has its end
    return HistoryEntry(at=at, event=kind, attempt=status.attempts, error=_bare(status.error))


def _bare(error: JobError | None) -> JobError | None:
    """``error`` without its traceback: the history keeps type and message only."""
    if error is None or error.traceback is None:
        return error
    return JobError(type=error.type, message=error.message)


def merged_meta_size(meta: Mapping[str, Any]) -> int:
    """Characters ``meta`` takes as compact JSON (what the stores write)."""
    return len(json.dumps(dict(meta), separators=(",", ":")))


def _merge_meta(current: JobStatus, update: Mapping[str, Any]) -> dict[str, Any]:
    """The change a ``meta`` event makes: the merged meta, or nothing past the bound."""
    merged = {**current.meta, **update}
    size = merged_meta_size(merged)  # one C-level encoding: cheaper than counting per key
    if size <= MAX_MERGED_META_BYTES:
        return {"meta": merged}
    _warn_refused(current.job_id, sorted(update), size)
    return {}


class RefusedMetaWarnings(runtime.LockedPart):
    """The jobs whose refused meta was logged (a :mod:`runtime <immortus.runtime>` part)."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: OrderedDict[str, None] = OrderedDict()  # the latest last, bounded

    def first_for(self, job_id: str) -> bool:
        """Remember ``job_id``; return whether it is new (its refusal is to be logged)."""
        with self.lock:
            if job_id in self.jobs:
                return False
            self.jobs[job_id] = None
            if len(self.jobs) > _WARNED_KEPT:
                self.jobs.popitem(last=False)
            return True

    def reset(self) -> None:
        with self.lock:
            self.jobs.clear()


_refused_warnings: Final = runtime.part(RefusedMetaWarnings)


def _warn_refused(job_id: str, keys: list[str], size: int) -> None:
    if not _refused_warnings.first_for(job_id):
        return
    shown = ", ".join(repr(key[:40]) for key in keys[:10]) + (", ..." if len(keys) > 10 else "")
    logger.warning(
        "immortus: meta keys %s of job %r were not recorded: the merged meta would be %d "
        "characters as JSON, over the limit of %d (later refusals for this job are not logged)",
        shown,
        job_id,
        size,
        MAX_MERGED_META_BYTES,
    )
