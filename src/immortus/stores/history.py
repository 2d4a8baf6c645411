"""A job's history as the row stores keep it: one compact JSON array per entry and line.

``[at, event, attempt, error type, error message, retry_at]``, times as UTC epoch seconds,
oldest first. An entry in time order is appended without decoding the others, which keeps the
write that adds it cheap; :func:`read_history` decodes the whole text in one call.
"""

from __future__ import annotations

import json
import operator
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any

from immortus.exceptions import CorruptRecord
from immortus.status import MAX_HISTORY, HistoryEntry, HistoryEvent, JobError

__all__ = ["history_after", "read_history"]


def history_after(text: str | None, entries: tuple[HistoryEntry, ...]) -> str | None:
    """Return the stored history ``text`` extended with ``entries``.

    The text is one compact JSON array per entry, one line each, oldest first, so an entry in
    time order is appended without decoding the others. An entry that arrives late (an
    ``enqueued`` reported after the worker's ``started``) goes where it belongs; past
    :data:`MAX_HISTORY`, the oldest go. ``text`` comes back unchanged when there is nothing to
    add.

    Raises:
        CorruptRecord: ``text`` is not a history this module wrote.
    """
    if not entries:
        return text
    added = [_history_line(entry) for entry in entries]
    if len(added) > 1:
        added.sort(key=operator.itemgetter(0))  # stable: entries of one moment keep their order
    if not text:
        lines = [line for _, line in added]
    elif _line_time(text[text.rfind("\n") + 1 :]) <= added[0][0]:
        lines = [text, *(line for _, line in added)]  # the usual case: nothing decoded
    else:
        lines = sorted([*text.split("\n"), *(line for _, line in added)], key=_line_time)
    joined = "\n".join(lines)
    excess = joined.count("\n") + 1 - MAX_HISTORY
    return joined.split("\n", excess)[-1] if excess > 0 else joined


def read_history(text: str | None) -> tuple[HistoryEntry, ...]:
    """Decode a stored history (:func:`history_after`), oldest entry first (``None``: none).

    Raises:
        CorruptRecord: ``text`` is not a history this module wrote.
    """
    if not text:
        return ()
    try:
        rows = json.loads(f"[{text.replace(chr(10), ',')}]")
        return tuple(_history_entry(row) for row in rows)
    except (TypeError, ValueError, IndexError) as exc:
        raise CorruptRecord("cannot decode a job's history") from exc


def _line_time(line: str) -> float:
    """The time of one history line (``[at,...]``), read without decoding the rest.

    Raises:
        CorruptRecord: the line is not one this module wrote.
    """
    try:
        return float(line[1 : line.index(",")])
    except ValueError as exc:
        raise CorruptRecord("cannot decode a job's history") from exc


_HistoryRow = list[Any]  # [at, event, attempt, error type, error message, retry_at]


def _history_line(entry: HistoryEntry) -> tuple[float, str]:
    """``entry``'s time and its line: ``[at,event,attempt,error type,error message,retry_at]``.

    Written by hand (strings through the JSON encoder's own C escaping): ``json.dumps`` cost
    several times more, at every event.
    """
    at = entry.at.timestamp()
    error = entry.error
    retry_at = entry.retry_at
    kind = "null" if error is None else _json_string(error.type)
    message = "null" if error is None else _json_string(error.message)
    due = "null" if retry_at is None else repr(retry_at.timestamp())
    return at, f'[{at!r},"{entry.event}",{entry.attempt},{kind},{message},{due}]'


def _history_entry(row: _HistoryRow) -> HistoryEntry:
    at, event, attempt, error_type, error_message, retry_at = row
    moment = _from_epoch(float(at))
    return HistoryEntry(
        at=moment,
        event=HistoryEvent(event),
        attempt=int(attempt),
        error=None if error_type is None else JobError(type=error_type, message=error_message),
        retry_at=None if retry_at is None else _from_epoch(float(retry_at)),
    )


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
