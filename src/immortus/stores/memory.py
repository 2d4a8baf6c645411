"""A store in this process's memory: for tests, scripts and single-process apps.

Records vanish with the process, and other processes (a worker, the web server) cannot see
them: use :class:`~immortus.stores.sqlite.SQLiteStore` as soon as more than one process is
involved.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar, Self

from immortus.grouping import GroupStatus
from immortus.status import MAX_HISTORY, HistoryEntry, JobStatus, State
from immortus.stores.base import (
    DEFAULT_TTL,
    MAX_CHANGES,
    Changes,
    Cursor,
    JobPage,
    Store,
    check_beat,
    check_page_size,
)
from immortus.stores.counting import Change, Counters, Tally, change, gone
from immortus.stores.group_counts import GroupCounters, member
from immortus.stores.records import Outcome, advance, cancel_entry, lapse, reap, revive
from immortus.transitions import Event, history
from immortus.validation import check_group_id, check_job_id

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Entry:
    status: JobStatus  # as stored: read it through records.lapse
    created: float
    expires: float | None
    alive_until: float | None = None
    history: tuple[HistoryEntry, ...] = ()
    cancel_requested_at: float | None = None

    def remember(self, entries: tuple[HistoryEntry, ...]) -> None:
        """Add ``entries`` to the history, in time order, within ``MAX_HISTORY``."""
        if entries:
            merged = sorted((*self.history, *entries), key=lambda entry: entry.at)
            self.history = tuple(merged[-MAX_HISTORY:])

    def seen(self, now: float) -> JobStatus:
        """The status a reader sees at ``now`` (``lost`` once a running job's lease ran out)."""
        return lapse(self.status, self.alive_until, now)


class MemoryStore(Store):
    """Keeps records in a dict guarded by a lock; lists them through a sorted index."""

    supports_heartbeat: ClassVar[bool] = True
    tracks_changes: ClassVar[bool] = True
    keeps_history: ClassVar[bool] = True
    supports_counts: ClassVar[bool] = True
    supports_groups: ClassVar[bool] = True

    def __init__(self, *, ttl: float | timedelta | None = DEFAULT_TTL) -> None:
        super().__init__(ttl=ttl)
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        # (created, job_id) ascending; list_jobs walks it from the end.
        self._order: list[tuple[float, str]] = []
        # The change counter, and each job's count at its last write, oldest write first.
        self._seq = 0
        self._written: OrderedDict[str, int] = OrderedDict()
        self._counters = Counters()
        self._groups = GroupCounters()

    @classmethod
    def from_url(cls, url: str, *, ttl: float | timedelta | None = DEFAULT_TTL) -> Self:
        """Open a new, empty memory store (``memory://``)."""
        return cls(ttl=ttl)

    def _live(self, job_id: str, now: float) -> _Entry | None:
        entry = self._entries.get(job_id)
        if entry is None or (entry.expires is not None and entry.expires <= now):
            return None
        return entry

    def record(self, event: Event) -> JobStatus | None:
        """Apply ``event`` under the store's lock; see :meth:`Store.record`."""
        now = time.time()
        expires = self.expires_at(now)
        with self._lock:
            entry = self._live(event.job_id, now)
            if entry is None:
                outcome = advance(None, None, event, now)
            else:
                outcome = advance(entry.status, entry.alive_until, event, now)
            if outcome is None:
                return None
            if entry is None:
                self._count(change(None, outcome.status))
                self._forget(event.job_id)
                key = (now, event.job_id)
                bisect.insort(self._order, key)
                entry = _Entry(outcome.status, now, expires, outcome.alive_until)
                entry.remember(outcome.entries)
                self._entries[event.job_id] = entry
                self._mark(event.job_id)
                return outcome.status
            changed = self._write(event.job_id, entry, outcome, expires)
            return outcome.status if changed else None

    def _write(self, job_id: str, entry: _Entry, outcome: Outcome, expires: float | None) -> bool:
        """Write ``outcome`` over ``entry``; return whether its status changed (lock held)."""
        changed = outcome.status is not entry.status
        if changed:
            self._count(change(entry.status, outcome.status))
        entry.status, entry.alive_until = outcome.status, outcome.alive_until
        entry.expires = expires
        entry.remember(outcome.entries)
        self._mark(job_id)
        return changed

    def _mark(self, job_id: str) -> None:
        """Count a write of ``job_id`` for :meth:`changes_since`; the caller holds the lock."""
        self._seq += 1
        self._written[job_id] = self._seq
        self._written.move_to_end(job_id)

    def changes_since(self, cursor: int | None) -> Changes:
        """Name the jobs written after ``cursor``, newest first, walking back from the last one.

        See :meth:`Store.changes_since`; costs one step per changed job, not per job stored.
        """
        with self._lock:
            if cursor is None:
                return self._seq, frozenset()
            if cursor > self._seq:
                return self._seq, None
            changed: list[str] = []
            for job_id in reversed(self._written):
                if self._written[job_id] <= cursor:
                    break
                if len(changed) == MAX_CHANGES:
                    return self._seq, None
                changed.append(job_id)
            return self._seq, frozenset(changed)

    def get(self, job_id: str) -> JobStatus | None:
        """Return the job's status; see :meth:`Store.get`."""
        check_job_id(job_id)
        now = time.time()
        with self._lock:
            entry = self._live(job_id, now)
            return None if entry is None else entry.seen(now)

    def history(self, job_id: str) -> tuple[HistoryEntry, ...]:
        """Return the job's history, oldest first; see :meth:`Store.history`."""
        check_job_id(job_id)
        now = time.time()
        with self._lock:
            entry = self._live(job_id, now)
            return () if entry is None else history(entry.history, entry.seen(now))

    def request_cancel(self, job_id: str) -> bool:
        """Record a cancel request on the job's live, unended record; see ``CancelRequestStore``."""
        check_job_id(job_id)
        now = time.time()
        with self._lock:
            entry = self._live(job_id, now)
            if entry is None or entry.seen(now).completed:
                return False
            if entry.cancel_requested_at is None:
                entry.cancel_requested_at = now
                entry.remember((cancel_entry(now, entry.status.attempts),))
            return True

    def cancel_requested(self, job_id: str) -> bool:
        """Tell whether the job's live record carries a cancel request."""
        check_job_id(job_id)
        with self._lock:
            entry = self._live(job_id, time.time())
            return entry is not None and entry.cancel_requested_at is not None

    def get_nowait(self, job_id: str) -> JobStatus | None:
        """Return the job's status unless a writer holds the lock; see :meth:`Store.get_nowait`."""
        check_job_id(job_id)
        if not self._lock.acquire(blocking=False):
            raise BlockingIOError("the memory store is being written to")
        now = time.time()
        try:
            entry = self._live(job_id, now)
            status = None if entry is None else entry.seen(now)
        finally:
            self._lock.release()
        return status

    def get_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Return the known statuses among ``job_ids``; see :meth:`Store.get_many`."""
        for job_id in job_ids:
            check_job_id(job_id)
        now = time.time()
        with self._lock:
            found = {job_id: self._live(job_id, now) for job_id in job_ids}
            return {job_id: entry.seen(now) for job_id, entry in found.items() if entry is not None}

    def list_jobs(
        self, *, state: State | None = None, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        """Return recent jobs, newest first; see :meth:`Store.list_jobs`."""
        check_page_size(limit)
        after = None if cursor is None else Cursor.decode(cursor)
        now = time.time()
        jobs: list[JobStatus] = []
        with self._lock:
            end = len(self._order)
            if after is not None:
                end = bisect.bisect_left(self._order, (after.created, after.job_id))
            last: tuple[float, str] | None = None
            for index in range(end - 1, -1, -1):
                key = self._order[index]
                entry = self._live(key[1], now)
                if entry is None:
                    continue
                status = entry.seen(now)
                if state is not None and status.state is not state:
                    continue
                if len(jobs) == limit:
                    break
                jobs.append(status)
                last = key
            else:
                last = None
        next_cursor = None if last is None else Cursor(*last).encode()
        return JobPage(tuple(jobs), next_cursor)

    def prune(self, *, now: datetime | None = None) -> int:
        """Delete expired records; see :meth:`Store.prune`."""
        moment = time.time() if now is None else now.timestamp()
        with self._lock:
            expired = [
                job_id
                for job_id, entry in self._entries.items()
                if entry.expires is not None and entry.expires <= moment
            ]
            for job_id in expired:
                self._forget(job_id)
        return len(expired)

    def beat(self, job_ids: Sequence[str], alive_until: datetime) -> int:
        """Extend the leases of the running jobs among ``job_ids``; see :meth:`Store.beat`."""
        ids, lease = check_beat(job_ids, alive_until)
        now = time.time()
        expires = self.expires_at(now)
        touched = 0
        with self._lock:
            for job_id in ids:
                entry = self._live(job_id, now)
                if entry is None:
                    continue
                if entry.status.state is State.STARTED:
                    entry.alive_until, entry.expires = lease, expires
                    touched += 1
                elif (outcome := revive(entry.status, lease, now)) is not None:
                    self._write(job_id, entry, outcome, expires)
                    touched += 1
        return touched

    def reap_lost(self, *, now: datetime | None = None) -> int:
        """Record ``lost`` for running jobs whose lease ran out; see :meth:`Store.reap_lost`."""
        moment = time.time() if now is None else now.timestamp()
        expires = self.expires_at(time.time())
        reaped = 0
        with self._lock:
            for job_id, entry in self._entries.items():
                if entry.expires is not None and entry.expires <= moment:
                    continue
                outcome = reap(entry.status, entry.alive_until, moment)
                if outcome is not None:
                    self._write(job_id, entry, outcome, expires)
                    reaped += 1
        return reaped

    def _count(self, done: Change) -> None:
        """Apply one write's change to the counters and its group's; the caller holds the lock."""
        self._counters.add(done)
        if done.groups:
            self._groups.add(done.groups)

    def group(self, group_id: str) -> GroupStatus | None:
        """Return the group's answer from its counters; see :meth:`Store.group`."""
        check_group_id(group_id)
        with self._lock:
            return self._groups.status(group_id)

    def tally(self, *, since: datetime) -> Tally:
        """Return the counters, ``ended`` from ``since`` on (:mod:`immortus.stores.counting`)."""
        with self._lock:
            return self._counters.tally(since=since)

    def _forget(self, job_id: str) -> None:
        """Drop ``job_id``'s entry and its index key; the caller holds the lock."""
        entry = self._entries.pop(job_id, None)
        self._written.pop(job_id, None)
        if entry is not None:
            self._count(gone(entry.status.job_class, entry.status.state, member(entry.status)))
            index = bisect.bisect_left(self._order, (entry.created, job_id))
            del self._order[index]
