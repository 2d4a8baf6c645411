"""Statuses verify read lately, answered again until their change source names them changed.

Off unless a :class:`~immortus.web.core.Verifier` is given ``answer_staleness``: see
:class:`RecentStatuses` for the bounds on how old an answer may be.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Final

from immortus.status import JobStatus
from immortus.strategy import ChangeSource
from immortus.web.feed import change_source

__all__ = ["MAX_KEPT_AGE", "MAX_RECENT", "RecentStatuses"]

#: Most statuses :class:`RecentStatuses` keeps per source; past it, it forgets them all at once.
MAX_RECENT: Final = 4096
#: Seconds :class:`RecentStatuses` answers a status after reading it, however quiet its store:
#: what changes without a write (a running job reads ``lost`` once its lease, a minute by
#: default, runs out) shows within this.
MAX_KEPT_AGE: Final = 5.0


class _Watched:
    """One source's recently read statuses, and how far its changes have been followed."""

    __slots__ = ("checked", "cursor", "entries", "generation", "lock", "source")

    def __init__(self, source: ChangeSource) -> None:
        self.source = source
        self.cursor: int | None = None  # None: not following (yet, or since a failure)
        self.checked = -math.inf  # when (monotonic) the source last named its changes
        self.generation = 0  # one more at each check: a read older than a check is not kept
        #: job id -> (job class, status, when it was read)
        self.entries: dict[str, tuple[str | None, JobStatus, float]] = {}
        self.lock = threading.Lock()


class RecentStatuses:
    """Statuses read lately, answered again until their change source names them changed.

    Verify asks :meth:`lookup` before it reads a job; on a miss it reads the job and hands the
    status to :meth:`keep`. Only jobs whose strategy names a change source that names its
    changes (:meth:`~immortus.TrackingStrategy.changes`, with
    :attr:`~immortus.strategy.ChangeSource.names_changes`: the store strategy over the memory,
    SQLite or Redis store) are kept; every other job is a miss. Every ``staleness`` seconds at
    most, per source, a lookup first asks the source what was written since the last question,
    and forgets those jobs (all of them, when the source cannot tell or fails). A kept status
    is also forgotten ``max_age`` seconds after it was read, which bounds what changes without
    a write (a lapsed heartbeat lease reading ``lost``, an expired record), as the streams'
    :data:`FULL_REREAD` does for them.

    So an answer is at most ``staleness`` seconds older than the latest write to its record
    (plus the time the source takes to answer ``changes_since``), and at most ``max_age`` older
    than what a read would say. A read that started before a check is not kept (its record may
    have changed before the check, which forgot nothing then). At most ``max_jobs`` statuses
    are kept per source. Thread-safe; ``clock`` is monotonic seconds (for tests).

    Raises:
        ValueError: ``staleness`` or ``max_age`` is not a positive number of seconds.
    """

    def __init__(
        self,
        staleness: float,
        *,
        max_age: float = MAX_KEPT_AGE,
        max_jobs: int = MAX_RECENT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (("staleness", staleness), ("max_age", max_age)):
            given: object = value  # callers without type checks pass anything
            if not (isinstance(given, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        self.staleness, self.max_age, self.max_jobs = float(staleness), float(max_age), max_jobs
        self._clock = clock
        self._sources: dict[int, _Watched] = {}  # id(source) -> its watch (which holds it)
        self._lock = threading.Lock()

    def _watched(self, job_class: str | None) -> _Watched | None:
        source = change_source(job_class)
        if source is None or not source.names_changes:
            return None
        watched = self._sources.get(id(source))
        if watched is None or watched.source is not source:
            with self._lock:
                watched = self._sources[id(source)] = _Watched(source)
        return watched

    def lookup(
        self, job_id: str, job_class: str | None, *, wait: bool = True
    ) -> tuple[JobStatus | None, object]:
        """Return the kept status of the job (or ``None``), and the ticket :meth:`keep` takes.

        Asks the source for its changes first when the last question is ``staleness`` old: a
        question that may block, so with ``wait=False`` (on an event loop) it raises
        :class:`BlockingIOError` instead, and the caller asks again in a worker thread. Raises
        nothing else: a source that cannot name its changes has all its statuses forgotten.
        """
        watched = self._watched(job_class)
        if watched is None:
            return None, None
        now = self._clock()
        if now - watched.checked > self.staleness:
            if not wait:
                raise BlockingIOError("the source must name its changes first")
            self._check(watched, now)
        ticket = (watched, watched.generation)
        kept = watched.entries.get(job_id)
        if kept is None or kept[0] != job_class or now - kept[2] > self.max_age:
            return None, ticket
        return kept[1], ticket

    def keep(self, ticket: object, job_id: str, job_class: str | None, status: JobStatus) -> None:
        """Keep ``status``, read after :meth:`lookup` gave ``ticket``, unless a check came since."""
        if not isinstance(ticket, tuple):
            return
        watched, generation = ticket
        with watched.lock:
            if watched.generation != generation:
                return
            if len(watched.entries) >= self.max_jobs:
                watched.entries.clear()
            watched.entries[job_id] = (job_class, status, self._clock())

    def _check(self, watched: _Watched, now: float) -> None:
        with watched.lock:
            if now - watched.checked <= self.staleness:
                return  # another thread just asked
            try:
                cursor, changed = watched.source.changes_since(watched.cursor)
            except Exception:  # noqa: BLE001  # forget everything; reads report the failure
                cursor, changed = None, None
            if watched.cursor is None or changed is None:
                watched.entries.clear()
            else:
                for job_id in changed:
                    watched.entries.pop(job_id, None)
            watched.cursor, watched.checked = cursor, now
            watched.generation += 1
