"""One flat row shape for a job's record, shared by every store that is not in memory.

The SQL stores keep one column per field and the Redis store one hash field per field, so a
record can be read, indexed and inspected with the backing server's own tools. Times are UTC
epoch seconds (floats): they sort, index and compare cheaply everywhere.

Store-private fields beside the status:

- ``created``: when the store first saw the job; orders ``list_jobs`` and never changes.
- ``expires``: when the record expires (``None``: never).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from immortus.exceptions import CorruptRecord
from immortus.status import JobError, JobStatus, Progress, State

__all__ = ["COLUMNS", "changed", "decode", "encode", "epoch", "from_epoch"]

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
    "created",
    "expires",
)


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


def encode(status: JobStatus, *, created: float, expires: float | None) -> dict[str, Any]:
    """Flatten ``status`` into a row of :data:`COLUMNS`."""
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
        "created": created,
        "expires": expires,
    }


def changed(stored: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Return the fields of the ``new`` row whose values differ from the ``stored`` row.

    SQL stores update only these: an untouched indexed column (``state``, ``expires``) then
    costs no index write, and PostgreSQL can update the row in place.
    """
    return {name: value for name, value in new.items() if stored.get(name) != value}


def decode(row: Mapping[str, Any]) -> JobStatus:
    """Rebuild a status from a row of :data:`COLUMNS` (extra keys are ignored).

    Numbers may come back as strings (Redis); they are converted here.

    Raises:
        CorruptRecord: the row cannot be decoded.
    """
    try:
        return _decode(row)
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptRecord(f"cannot decode the record of job {row.get('job_id')!r}") from exc


def _float(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def _decode(row: Mapping[str, Any]) -> JobStatus:
    progress = None
    if (current := _number(_float(row.get("progress_current")))) is not None:
        progress = Progress(
            current=current,
            total=_number(_float(row.get("progress_total"))),
            message=row.get("progress_message"),
            allow_overshoot=True,
        )
    error = None
    if row.get("error_type") is not None:
        error = JobError(
            type=row["error_type"],
            message=row.get("error_message") or "",
            traceback=row.get("error_traceback"),
        )
    meta = json.loads(row["meta"]) if row.get("meta") else {}
    if not isinstance(meta, dict):
        raise TypeError("meta is not a JSON object")
    return JobStatus(
        job_id=row["job_id"],
        job_class=row.get("job_class") or None,
        state=State(row["state"]),
        progress=progress,
        error=error,
        attempts=int(row.get("attempts") or 0),
        enqueued_at=from_epoch(_float(row.get("enqueued_at"))),
        started_at=from_epoch(_float(row.get("started_at"))),
        finished_at=from_epoch(_float(row.get("finished_at"))),
        updated_at=from_epoch(_float(row.get("updated_at"))),
        meta=meta,
    )
