"""One flat row shape for a job's record, shared by every store that is not in memory.

One column (SQL) or hash field (Redis) per field of :data:`COLUMNS`, so the server's own tools
can read a record; times are UTC epoch seconds. Beside the status's fields:

- ``alive_until``: the lease of a running job's worker (``None``: no heartbeat watches it);
  any state but ``started`` clears it.
- ``created``: when the store first saw the job; orders ``list_jobs``, never changes.
- ``expires``: when the record expires (``None``: never).
- ``cancel_requested_at``: when the job's cancellation was requested (:func:`cancel_request`).
- ``history``: what the job's history keeps beyond what the record tells
  (:func:`immortus.transitions.archived`, :mod:`immortus.stores.history`), at most
  :data:`~immortus.status.MAX_HISTORY` entries, written in the record's atomic write.

Every store applies an event with :func:`advance`, reaps with :func:`reap` and revives with
:func:`revive`, so the lease rules live here once, beside :func:`immortus.transitions.apply`.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from immortus.exceptions import CorruptRecord
from immortus.status import (
    HistoryEntry,
    HistoryEvent,
    JobError,
    JobStatus,
    Progress,
    State,
    isoformat,
)
from immortus.stores.group_counts import Member, member
from immortus.stores.history import history_after, read_history
from immortus.transitions import Event, EventKind, apply, archived, history

__all__ = [
    "COLUMNS",
    "DECODED_KEPT",
    "LOST_ERROR_TYPE",
    "READ_COLUMNS",
    "Outcome",
    "advance",
    "build_read",
    "cancel_entry",
    "cancel_request",
    "cancel_requested",
    "changed",
    "decode",
    "decode_read",
    "encode",
    "epoch",
    "from_epoch",
    "history_of",
    "lapse",
    "lost_error",
    "member_of",
    "reap",
    "revive",
]

#: The error type of a job whose worker stopped heart-beating.
LOST_ERROR_TYPE: Final = "WorkerLost"

#: Every field of a record, in table column order.
COLUMNS: Final = (
    "job_id",
    "job_class",
    "state",
    "attempts",
    "progress_current",
    "progress_total",
    "progress_message",
    "error_type",
    "error_message",
    "error_traceback",
    "meta",
    "enqueued_at",
    "started_at",
    "finished_at",
    "updated_at",
    "alive_until",
    "created",
    "expires",
    "retry_at",
    "cancel_requested_at",
    "history",
    "group_id",
)
#: The columns a status read needs: all but the history, read only when asked for.
READ_COLUMNS: Final = tuple(column for column in COLUMNS if column != "history")


def epoch(moment: datetime | None) -> float | None:
    """Return ``moment`` as UTC epoch seconds."""
    return None if moment is None else moment.timestamp()


def from_epoch(seconds: float | None) -> datetime | None:
    """Return UTC epoch seconds as an aware ``datetime``."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _number(value: float | None) -> int | float | None:
    """Give back whole numbers as ``int`` (the wire shows ``37``, not ``37.0``)."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else float(value)


def encode(
    status: JobStatus,
    *,
    created: float,
    expires: float | None,
    alive_until: float | None = None,
    kept: Mapping[str, Any] | None = None,
    entries: tuple[HistoryEntry, ...] = (),
) -> dict[str, Any]:
    """Flatten ``status`` into a row of :data:`COLUMNS`.

    ``kept`` is the stored row the new one replaces (``None``: a new record): its cancel
    request is carried over and its history extended with ``entries``.
    """
    progress, error = status.progress, status.error
    return {
        "job_id": status.job_id,
        "job_class": status.job_class,
        "state": status.state.value,
        "attempts": status.attempts,
        "progress_current": None if progress is None else progress.current,
        "progress_total": None if progress is None else progress.total,
        "progress_message": None if progress is None else progress.message,
        "error_type": None if error is None else error.type,
        "error_message": None if error is None else error.message,
        "error_traceback": None if error is None else error.traceback,
        "meta": json.dumps(dict(status.meta), separators=(",", ":")) if status.meta else None,
        "enqueued_at": epoch(status.enqueued_at),
        "started_at": epoch(status.started_at),
        "finished_at": epoch(status.finished_at),
        "updated_at": epoch(status.updated_at),
        "alive_until": alive_until,
        "created": created,
        "expires": expires,
        "retry_at": epoch(status.retry_at),
        "cancel_requested_at": None if kept is None else kept.get("cancel_requested_at"),
        "history": history_after(kept.get("history"), entries) if kept else _new_history(entries),
        "group_id": status.group_id,
    }


def _new_history(entries: tuple[HistoryEntry, ...]) -> str | None:
    return history_after(None, entries) if entries else None


def changed(stored: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Return the fields of the ``new`` row that differ from the ``stored`` row.

    SQL stores update only these, so untouched indexed columns cost no index write.
    """
    return {name: value for name, value in new.items() if stored.get(name) != value}


def decode(row: Mapping[str, Any], *, now: float | None = None) -> JobStatus:
    """Rebuild a status from a row of :data:`COLUMNS` (extra keys are ignored).

    Numbers may come back as strings (Redis); they are converted here. With ``now`` (epoch
    seconds), the status is the one a reader sees at that moment: a ``started`` record whose
    lease ran out reads ``lost`` (:func:`lapse`). Without it, the record as stored.

    Raises:
        CorruptRecord: the row cannot be decoded.
    """
    try:
        status = _decode(row)
        return status if now is None else lapse(status, lease_of(row), now)
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptRecord(f"cannot decode the record of job {row.get('job_id')!r}") from exc


def member_of(row: Mapping[str, Any]) -> Member | None:
    """What the stored ``row`` counts for in its group (``None``: in no group).

    Reads only ``group_id``, ``state`` and the progress columns (what a deletion needs).

    Raises:
        CorruptRecord: the row cannot be decoded.
    """
    if not row.get("group_id"):
        return None
    return member(decode(row))


def lease_of(row: Mapping[str, Any]) -> float | None:
    """Return the row's ``alive_until`` (absent in rows written before heartbeats existed).

    Raises:
        CorruptRecord: the stored value is not a number.
    """
    try:
        return _float(row.get("alive_until"))
    except (TypeError, ValueError) as exc:
        raise CorruptRecord(f"the record of job {row.get('job_id')!r} has a bad lease") from exc


def _float(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


# -- the lease ------------------------------------------------------------------------------


def lost_error(alive_until: float) -> JobError:
    """The error of a job whose worker's lease ran out at ``alive_until`` (epoch seconds)."""
    moment = isoformat(from_epoch(alive_until))
    return JobError(
        type=LOST_ERROR_TYPE,
        message=f"no heartbeat from its worker by {moment}; the worker was presumably killed",
    )


def _lapsed(status: JobStatus, alive_until: float | None, now: float) -> bool:
    return status.state is State.STARTED and alive_until is not None and alive_until <= now


def lapse(status: JobStatus, alive_until: float | None, now: float) -> JobStatus:
    """Return ``status`` as read at ``now``: ``lost`` if it is ``started`` and its lease ran out.

    Exactly what :func:`reap` writes down: ended when the lease did (``finished_at``), with a
    ``WorkerLost`` error; everything else (progress, attempts, meta) is kept. A ``started``
    status whose lease runs on carries it (``alive_until``); any other carries none.
    """
    if not _lapsed(status, alive_until, now):
        return _leased(status, alive_until)
    assert alive_until is not None  # noqa: S101 - _lapsed checked it
    return _lost(status, alive_until) or status


def _leased(status: JobStatus, alive_until: float | None) -> JobStatus:
    """``status`` carrying the lease ``alive_until`` if it is ``started``, else none."""
    moment = from_epoch(alive_until) if status.state is State.STARTED else None
    return status if status.alive_until == moment else replace(status, alive_until=moment)


def _lost(status: JobStatus, alive_until: float) -> JobStatus | None:
    """Apply the ``lost`` event of a lease that ran out at ``alive_until``."""
    moment = from_epoch(alive_until)
    assert moment is not None  # noqa: S101 - from a number
    error = lost_error(alive_until)
    lost = apply(status, Event(kind=EventKind.LOST, job_id=status.job_id, at=moment, error=error))
    return None if lost is None else _leased(lost, None)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a store writes after an event: the job's new status and its worker's lease."""

    status: JobStatus
    alive_until: float | None
    #: What the job's history gains (:func:`immortus.transitions.archived`), oldest first.
    entries: tuple[HistoryEntry, ...] = ()


def advance(
    stored: JobStatus | None, alive_until: float | None, event: Event, now: float
) -> Outcome | None:
    """Apply ``event`` to a record (``None``: none) read at ``now``; ``None``: write nothing.

    Every event but ``lost`` applies to the record as a reader sees it (:func:`lapse`), as
    after a stored ``lost``; a ``lost`` event applies to the record as stored, persisting the
    presumption with the reporter's error.

    The lease after: none unless ``started``; the event's own on a new or revived attempt;
    else the later of the stored and the event's. An event that changes no status but
    carries a later lease moves only the lease (the stored status is returned).
    """
    given = epoch(event.alive_until)
    if stored is None:
        created = apply(None, event)
        if created is None:
            return None
        return Outcome(created, _lease(created, None, None, given), archived(None, created, event))
    seen = lapse(stored, alive_until, now)
    before = stored if event.kind is EventKind.LOST else seen
    status = apply(before, event)
    if status is not None:
        entries = archived(before, status, event)
        return Outcome(status, _lease(status, seen, alive_until, given), entries)
    running = seen.state is State.STARTED
    if running and given is not None and (alive_until is None or given > alive_until):
        return Outcome(stored, given)
    return None


def _lease(
    status: JobStatus, seen: JobStatus | None, stored: float | None, given: float | None
) -> float | None:
    """The lease after an event gave ``status`` to a record read as ``seen`` (see advance)."""
    if status.state is not State.STARTED:
        return None
    if seen is None or seen.state is not State.STARTED or status.attempts != seen.attempts:
        return given  # a new attempt, or a lost one revived: the stored lease was another's
    later = [moment for moment in (stored, given) if moment is not None]
    return max(later) if later else None


def revive(stored: JobStatus, lease: float, now: float) -> Outcome | None:
    """A heartbeat for a job recorded ``lost`` by its lease: its worker is alive after all.

    Returns the ``started`` record to write with ``lease`` (the same attempt: the end and
    the error go), or ``None`` unless :func:`reap` wrote the record ``lost`` (a loss a queue
    reported stays).
    """
    error = stored.error
    if stored.state is not State.LOST or error is None or error.type != LOST_ERROR_TYPE:
        return None
    moment = from_epoch(now)
    latest = (
        moment if stored.updated_at is None or moment is None else max(stored.updated_at, moment)
    )
    status = replace(stored, state=State.STARTED, finished_at=None, error=None, updated_at=latest)
    return Outcome(status, lease, archived(stored, status))


def reap(stored: JobStatus, alive_until: float | None, now: float) -> Outcome | None:
    """Persist the presumption of a lapsed lease: the ``lost`` record to write, or ``None``.

    ``None`` unless the record is ``started`` and its lease ran out at ``now``.
    """
    if not _lapsed(stored, alive_until, now):
        return None
    assert alive_until is not None  # noqa: S101 - _lapsed checked it
    status = _lost(stored, alive_until)
    return None if status is None else Outcome(status, None)


#: Every field :func:`_decode_fields` reads: the key of the decoding cache: the
#: status's own columns and the lease (``JobStatus.alive_until`` of a ``started`` record), not
#: the other store-private ones (``created``, ``expires``, ...).
_DECODED: Final = (
    *COLUMNS[: COLUMNS.index("updated_at") + 1],
    "retry_at",
    "group_id",
    "alive_until",
)
#: How many decoded records :func:`_decode` keeps (least recently read ones go first).
DECODED_KEPT: Final = 1024


def _decode(row: Mapping[str, Any]) -> JobStatus:
    """Decode ``row`` through a cache keyed by the values of :data:`_DECODED`.

    An unchanged record decodes to the *same* ``JobStatus`` object, which lets the web layer
    keep its encoded answer (:func:`immortus.web.responses.job_answer`); any changed field makes
    a new key, hence a new object. ``JobStatus`` is frozen; its ``meta`` must not be mutated.

    Raises:
        KeyError, TypeError, ValueError: the row cannot be decoded (an unhashable value too).
    """
    return _decode_fields(tuple(map(row.get, _DECODED)))


def _build(fields: tuple[Any, ...]) -> JobStatus:
    """Build the status of one key of the cache: the values of :data:`_DECODED`, in order.

    Numbers and times come back as :func:`encode` wrote them, or as their text (Redis): they are
    converted here, and what cannot be converted raises.
    """
    (
        job_id, job_class, state, attempts, current, total, message, error_type, error_message,
        traceback, meta, enqueued_at, started_at, finished_at, updated_at, retry_at, group_id,
        alive_until,
    ) = fields  # fmt: skip
    if job_id is None:
        raise KeyError("job_id")
    progress = None
    if current is not None and current != "":
        number = float(current)
        progress = Progress(
            current=int(number) if number.is_integer() else number,
            total=_number(_float(total)),
            message=message,
            allow_overshoot=True,
        )
    error = None
    if error_type is not None:
        error = JobError(type=error_type, message=error_message or "", traceback=traceback)
    decoded = json.loads(meta) if meta else {}
    if not isinstance(decoded, dict):
        raise TypeError("meta is not a JSON object")
    return JobStatus(
        job_id=job_id,
        job_class=job_class or None,
        state=_STATES[state],
        progress=progress,
        error=error,
        attempts=int(attempts or 0),
        # None, the common absent time, skips the call (this runs at every uncached read)
        enqueued_at=None if enqueued_at is None else _moment(enqueued_at),
        started_at=None if started_at is None else _moment(started_at),
        finished_at=None if finished_at is None else _moment(finished_at),
        updated_at=None if updated_at is None else _moment(updated_at),
        meta=decoded,
        retry_at=None if retry_at is None else _moment(retry_at),
        group_id=group_id or None,
        alive_until=_moment(alive_until) if state == _STARTED else None,
    )


_decode_fields: Final = functools.lru_cache(maxsize=DECODED_KEPT)(_build)

#: Each state by its stored value (a dict lookup: ``State(value)`` costs several calls).
_STATES: Final = {state.value: state for state in State}
_STARTED: Final = State.STARTED.value
_from_timestamp: Final = datetime.fromtimestamp


def _moment(value: Any) -> datetime | None:
    """A stored time (epoch seconds, a number or its text) as an aware UTC ``datetime``."""
    if value is None or value == "":
        return None
    return _from_timestamp(value if value.__class__ is float else float(value), UTC)


#: Where a row of :data:`READ_COLUMNS` values (in that order) holds the cache key's fields.
_KEY_OF_READ: Final = operator.itemgetter(*(READ_COLUMNS.index(name) for name in _DECODED))
_READ_LEASE: Final = READ_COLUMNS.index("alive_until")


def build_read(values: Sequence[Any]) -> JobStatus:
    """Build the status of a row of :data:`READ_COLUMNS` anew, as it is stored.

    What :func:`decode_read` costs on a record it has not kept, without its lease check: the
    least any reader of the row does (the benchmarks time it as a floor).

    Raises:
        KeyError, TypeError, ValueError: the row cannot be decoded.
    """
    return _build(_KEY_OF_READ(values))


def decode_read(values: Sequence[Any], now: float) -> JobStatus:
    """The status a reader sees at ``now``, from the values of :data:`READ_COLUMNS` in order.

    What the stores' status reads fetch (a SQL row, an ``HMGET`` reply): the same answer as
    :func:`decode` of the row by column name, without building a mapping first. A ``started``
    record whose lease ran out reads ``lost`` (:func:`lapse`).

    Raises:
        CorruptRecord: the row cannot be decoded.
    """
    try:
        status = _decode_fields(_KEY_OF_READ(values))
        lease = _float(values[_READ_LEASE]) if status.state is State.STARTED else None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        job_id = values[0] if values else None
        raise CorruptRecord(f"cannot decode the record of job {job_id!r}") from exc
    # The key carried the lease (alive_until): only a lapsed one changes the status.
    return status if lease is None or lease > now else lapse(status, lease, now)


# -- the history and cancel requests ---------------------------------------------------------


def history_of(row: Mapping[str, Any], now: float) -> tuple[HistoryEntry, ...]:
    """A job's whole history from its row (with the ``history`` column), read at ``now``.

    What was written (:func:`history_after`) and what the record tells by itself
    (:func:`immortus.transitions.history`).

    Raises:
        CorruptRecord: the row or its history cannot be decoded.
    """
    return history(read_history(row.get("history")), decode(row, now=now))


def cancel_request(
    row: Mapping[str, Any] | None, seen: JobStatus | None, now: float
) -> dict[str, Any] | None:
    """The fields a cancel request made at ``now`` writes on ``row``, read as ``seen``.

    ``None`` when the request is refused: no live record (a request never creates one), or
    the job has ended. A repeated request is taken but writes nothing (empty dict): the first
    request's time and history entry stay.

    Raises:
        CorruptRecord: the stored history cannot be decoded.
    """
    if row is None or seen is None or seen.completed:
        return None
    if cancel_requested(row):
        return {}
    entry = cancel_entry(now, seen.attempts)
    return {"cancel_requested_at": now, "history": history_after(row.get("history"), (entry,))}


def cancel_entry(now: float, attempts: int) -> HistoryEntry:
    """The history entry of a cancel request made at ``now`` (epoch seconds)."""
    moment = from_epoch(now)
    assert moment is not None  # noqa: S101 - from a number
    return HistoryEntry(at=moment, event=HistoryEvent.CANCEL_REQUESTED, attempt=attempts)


def cancel_requested(row: Mapping[str, Any] | None) -> bool:
    """Whether ``row`` (a live record, or ``None``) carries a cancel request."""
    return row is not None and row.get("cancel_requested_at") not in (None, "")
