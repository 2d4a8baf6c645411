"""The list page's filters, read from a query string and checked before any store read.

Every parameter is validated; a bad one raises :class:`~immortus.exceptions.InvalidInput`
whose message says which and why (the page answers 400 with it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import urlencode

from immortus.exceptions import InvalidInput
from immortus.status import State
from immortus.stores.base import Cursor
from immortus.validation import check_job_class, check_job_id

__all__ = ["PERIODS", "JobFilter", "parse_filter"]

#: The time filter's choices: jobs enqueued within the last period.
PERIODS: Final = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
_QUEUE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,100}\Z")
_NAMES: Final = frozenset({"state", "queue", "class", "since", "id", "cursor"})


@dataclass(frozen=True, slots=True)
class JobFilter:
    """The jobs the list shows: every field ``None`` shows them all."""

    state: State | None = None
    queue: str | None = None
    job_class: str | None = None
    since: str | None = None
    job_id: str | None = None
    cursor: str | None = None

    def cutoff(self, now: datetime) -> datetime | None:
        """The earliest enqueue time the time filter keeps, or ``None``."""
        return None if self.since is None else now - PERIODS[self.since]

    def query(self, **changes: str | None) -> str:
        """This filter as a query string (``?...``), with ``changes`` applied."""
        values = {
            "state": self.state.value if self.state else None,
            "queue": self.queue,
            "class": self.job_class,
            "since": self.since,
            "id": self.job_id,
            "cursor": self.cursor,
        }
        values.update(changes)
        kept = {name: value for name, value in values.items() if value}
        return "?" + urlencode(kept) if kept else ""


def parse_filter(params: Mapping[str, str]) -> JobFilter:
    """Read a :class:`JobFilter` from query parameters (empty values are absent).

    Raises:
        InvalidInput: an unknown parameter, an unknown state or period, a malformed queue,
            class, job id or cursor.
    """
    unknown = sorted(set(params) - _NAMES)
    if unknown:
        raise InvalidInput(f"unknown filter {unknown[0][:40]!r}; use {', '.join(sorted(_NAMES))}")
    given = {name: value for name, value in params.items() if value != ""}
    state = given.get("state")
    queue = given.get("queue")
    if queue is not None and not _QUEUE.match(queue):
        raise InvalidInput("queue must be 1 to 100 letters, digits or . _ : -")
    since = given.get("since")
    if since is not None and since not in PERIODS:
        raise InvalidInput(f"since must be one of {', '.join(PERIODS)}")
    job_class = given.get("class")
    job_id = given.get("id")
    cursor = given.get("cursor")
    if cursor is not None:
        Cursor.decode(cursor)
    return JobFilter(
        state=None if state is None else State.parse(state),
        queue=queue,
        job_class=None if job_class is None else check_job_class(job_class),
        since=since,
        job_id=None if job_id is None else check_job_id(job_id),
        cursor=cursor,
    )
