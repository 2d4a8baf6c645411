"""The contract every store keeps.

A store persists the statuses that callback-driven tracking produces. Only four operations are
abstract; everything else has a correct default that a store may replace with a faster one:

==================  ============================================================================
``record(event)``   apply one event atomically with :func:`immortus.transitions.apply`
``get(job_id)``     one job's status, or ``None``
``list_jobs(...)``  recent jobs, newest first, keyset-paginated
``prune()``         delete expired records
==================  ============================================================================

The four stores immortus ships also keep each job's history (:meth:`Store.history`) and carry
cancel requests between processes
(:class:`~immortus.cancel_requests.CancelRequestStore`).

Retention: with a ``ttl``, a record expires ``ttl`` seconds after its last write; every event
and every heartbeat refreshes it, so a job that keeps reporting (or whose worker keeps beating)
stays, and a finished job goes ``ttl`` after it ended (expiry times are rounded up to 1 % of the
TTL, so a little later). An expired record is invisible to ``get`` and ``list_jobs`` at once, and
is removed by ``prune()`` (or by the server itself, for Redis). ``ttl=None`` keeps records until
pruned by hand.

Lost workers (stores with ``supports_heartbeat``): a ``started`` event may carry a lease,
``alive_until``, which :meth:`Store.beat` extends while the worker lives. A ``started`` record
whose lease ran out reads ``lost`` from every read (``get``, ``get_many``, ``get_nowait``,
``list_jobs``, including its ``state`` filter), without any write; :meth:`Store.reap_lost`
persists it. :mod:`immortus.stores.records` holds these rules once for every store.

Every operation may raise :class:`~immortus.exceptions.StoreUnavailable` when the backing server or
file cannot be reached; driver exceptions never escape a store.
"""

from __future__ import annotations

import base64
import binascii
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar, Final, Self

from immortus.exceptions import InvalidInput
from immortus.grouping import GroupStatus
from immortus.status import HistoryEntry, JobStatus, State
from immortus.stores.counting import Tally
from immortus.strategy import MAX_CHANGES, Changes, ChangeSource
from immortus.transitions import Event, check_aware
from immortus.validation import check_job_id

__all__ = ["DEFAULT_TTL", "MAX_CHANGES", "MAX_PAGE_SIZE", "Changes", "Cursor", "JobPage", "Store"]

#: Records are kept a week after their last event unless a store is told otherwise.
DEFAULT_TTL: Final = timedelta(days=7)
#: Expiry times are rounded up to ``ttl / EXPIRY_STEPS`` (see :meth:`Store.expires_at`).
EXPIRY_STEPS: Final = 100
#: Largest page ``list_jobs`` returns.
MAX_PAGE_SIZE: Final = 1000


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in the newest-first listing: the record first seen at ``created`` as ``job_id``.

    Its text form (:meth:`encode`) is opaque to users, who only hand it back.
    """

    created: float
    job_id: str

    def encode(self) -> str:
        """Return the opaque text form."""
        raw = f"{self.created!r}\n{self.job_id}".encode()
        return base64.urlsafe_b64encode(raw).decode("ascii")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Parse a cursor returned by an earlier page.

        Raises:
            InvalidInput: ``text`` is not a cursor immortus made.
        """
        try:
            created, job_id = base64.urlsafe_b64decode(text.encode("ascii")).decode().split("\n")
            return cls(float(created), check_job_id(job_id))
        except (ValueError, UnicodeError, binascii.Error) as exc:
            raise InvalidInput(f"malformed page cursor {text[:40]!r}") from exc


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of :meth:`Store.list_jobs`; pass ``next_cursor`` back for the next page."""

    jobs: tuple[JobStatus, ...]
    next_cursor: str | None


def lower_scheme(url: str) -> str:
    """Return ``url`` with its scheme (before ``://``) in lower case: schemes ignore case.

    ``REDIS://host`` and ``redis://host`` name the same store; the drivers below the stores
    accept only the lower-case form.
    """
    scheme, separator, rest = url.partition("://")
    return f"{scheme.lower()}{separator}{rest}" if separator else url


def ttl_seconds(ttl: float | timedelta | None) -> float | None:
    """Normalise a TTL given as seconds or a ``timedelta``.

    Raises:
        InvalidInput: the TTL is not positive.
    """
    if ttl is None:
        return None
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    if not seconds > 0:
        raise InvalidInput(f"ttl must be positive (or None to keep records), not {ttl!r}")
    return seconds


def check_page_size(limit: int) -> int:
    """Return ``limit`` if it is a usable page size.

    Raises:
        InvalidInput: it is not between 1 and :data:`MAX_PAGE_SIZE`.
    """
    if type(limit) is not int or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}, not {limit!r}")
    return limit


def check_beat(job_ids: Sequence[str], alive_until: datetime) -> tuple[list[str], float]:
    """Return the distinct ids of a :meth:`Store.beat` call and its lease in epoch seconds.

    Raises:
        InvalidJobId: an id is malformed.
        InvalidInput: ``alive_until`` is not a timezone-aware ``datetime``.
    """
    ids = list(dict.fromkeys(check_job_id(job_id) for job_id in job_ids))
    lease = check_aware("alive_until", alive_until)  # checked as given: untyped callers pass any
    if lease is None:
        raise InvalidInput("alive_until must be a timezone-aware datetime, not None")
    return ids, lease.timestamp()


class Store(ABC):
    """Persistence for callback-driven tracking. See the module docstring for the contract."""

    #: Whether the store keeps workers' leases: :meth:`beat` works and a ``started`` job whose
    #: lease ran out reads ``lost``. The heartbeat checks it before any I/O and leaves the jobs
    #: of a store without it alone (they never read ``lost`` by heartbeat).
    supports_heartbeat: ClassVar[bool] = False
    #: Whether :meth:`changes_since` names the records written since a cursor (False: it always
    #: answers ``None``, "assume every job changed", and followers re-read everything).
    tracks_changes: ClassVar[bool] = False
    #: Whether :meth:`history` answers: the store keeps each job's last
    #: :data:`~immortus.status.MAX_HISTORY` events (not progress or meta) beside its record.
    keeps_history: ClassVar[bool] = False
    #: Whether :meth:`tally` answers: the store keeps the dashboard's counters as jobs change,
    #: in the same atomic write as the record (:mod:`immortus.stores.counting`).
    supports_counts: ClassVar[bool] = False
    #: Whether :meth:`group` answers: the store keeps each group's counters as its members
    #: change, in the same atomic write as the member's record (:mod:`immortus.groups`).
    supports_groups: ClassVar[bool] = False

    def __init__(self, *, ttl: float | timedelta | None = DEFAULT_TTL) -> None:
        self.ttl: float | None = ttl_seconds(ttl)

    @property
    def location(self) -> str | None:
        """Where the records are, the same text in every process that opens this data.

        Names the store's spool files (:mod:`immortus.stores.spool`), so that the events a
        dead process held are written by the next one on the host that uses the same data.
        Never holds a password. ``None`` (the default, and the memory store's answer): the
        records are private to this object, and nothing is spooled.
        """
        return None

    def expires_at(self, now: float) -> float | None:
        """When a record written at ``now`` (epoch seconds) expires, or ``None`` without a TTL.

        ``now + ttl`` rounded up to a step of 1 % of the TTL: the events of one job within a
        step write the same value, so a store need not rewrite its expiry index on every progress
        event (and PostgreSQL can update the row in place). A record therefore lives between
        ``ttl`` and ``ttl`` + 1 % after its last event, never less.
        """
        if self.ttl is None:
            return None
        step = self.ttl / EXPIRY_STEPS
        return math.ceil((now + self.ttl) / step) * step

    @classmethod
    @abstractmethod
    def from_url(cls, url: str, *, ttl: float | timedelta | None = DEFAULT_TTL) -> Self:
        """Open the store a URL names (:func:`immortus.stores.open_store` calls it by scheme).

        Raises:
            InvalidStoreURL: the URL is malformed for this store.
            MissingDependency: the store's driver is not installed.
        """

    @abstractmethod
    def record(self, event: Event) -> JobStatus | None:
        """Apply ``event`` to its job atomically and return the new status.

        Returns ``None`` when the event changed nothing (a duplicate, a stale or an ignored
        event). Concurrent calls for the same job never lose an update, and never overwrite a
        completed state (the rules of :mod:`immortus.transitions`).

        Raises:
            StoreUnavailable: the store cannot be reached; nothing was written.
        """

    @abstractmethod
    def get(self, job_id: str) -> JobStatus | None:
        """Return the job's status, or ``None`` when the store has no (unexpired) record.

        Raises:
            InvalidJobId: ``job_id`` is malformed.
            StoreUnavailable: the store cannot be reached.
        """

    def get_nowait(self, job_id: str) -> JobStatus | None:
        """Return what :meth:`get` would, if the store can read it without waiting.

        Called on an event loop's own thread by the async web routes, to spare each request a
        hop to a worker thread. A store answers only when the read cannot wait on a network, a
        server or a lock held by someone else; when it might, it raises
        :class:`BlockingIOError` and the caller asks :meth:`get` in a worker thread instead.
        The default always raises it.

        Raises:
            BlockingIOError: the read might wait (nothing was read).
            InvalidJobId: ``job_id`` is malformed.
            StoreUnavailable: the store cannot be read.
        """
        raise BlockingIOError(f"{type(self).__name__} cannot read without waiting")

    def get_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Return the statuses of the known jobs among ``job_ids``, keyed by job id.

        Unknown ids are absent from the result. The default asks :meth:`get` once per id; the
        stores immortus ships answer in one round trip.

        Raises:
            InvalidJobId: an id is malformed (checked before any I/O).
            StoreUnavailable: the store cannot be reached.
        """
        for job_id in job_ids:
            check_job_id(job_id)
        found = {job_id: self.get(job_id) for job_id in dict.fromkeys(job_ids)}
        return {job_id: status for job_id, status in found.items() if status is not None}

    @abstractmethod
    def list_jobs(
        self, *, state: State | None = None, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        """Return up to ``limit`` jobs, newest first (by when the store first saw them).

        ``state`` keeps only jobs in that state; ``cursor`` continues after an earlier page.

        Raises:
            InvalidInput: ``limit`` is out of range or ``cursor`` is malformed.
            StoreUnavailable: the store cannot be reached.
        """

    @abstractmethod
    def prune(self, *, now: datetime | None = None) -> int:
        """Delete records that expired at ``now`` (default: the present); return how many.

        Safe to run while jobs are being recorded, and from several processes at once.

        Raises:
            StoreUnavailable: the store cannot be reached.
        """

    def changes_since(self, cursor: int | None) -> Changes:
        """Return a new cursor and the ids of the records written after ``cursor``.

        Called by the web change feed (:mod:`immortus.web.feed`) at every tick, for each store
        whose jobs are followed, so that it re-reads only the records that changed. Every write
        of :meth:`record` (and of :meth:`reap_lost`) counts; a heartbeat (:meth:`beat`) need
        not, nor do expiry and pruning: a follower re-reads everything now and then for those.
        ``cursor=None`` starts following: the current cursor and no ids. Pass the cursor
        returned back at the next call. The ids are ``None`` when the store cannot tell ("assume
        every job changed"): always for a store without :attr:`tracks_changes` (this default
        answers ``(0, None)``), and for one that does when more than :data:`MAX_CHANGES`
        records changed since ``cursor`` or the cursor is not one it can follow.

        Raises:
            StoreUnavailable: the store cannot be reached.
        """
        return 0, None

    def change_source(self) -> ChangeSource:
        """Return the source the web follows this store's writes by (the same at every call).

        The default asks :meth:`changes_since` when asked (:mod:`immortus.stores.notify`); a
        store whose server can push a notice at each write (Redis, PostgreSQL) returns one that
        also wakes its watchers.
        """
        from immortus.stores import notify  # noqa: PLC0415  # it builds on this module

        return notify.shared(self, notify.PollingSource)

    def history(self, job_id: str) -> tuple[HistoryEntry, ...]:
        """Return the job's history, oldest first (empty when the store has no record of it).

        A store with :attr:`keeps_history` writes what the record is about to forget
        (:func:`immortus.transitions.archived`) in the same atomic write as the event, and
        answers with it and what the record tells by itself
        (:func:`immortus.transitions.history`): the last
        :data:`~immortus.status.MAX_HISTORY` entries. It expires with the record. A status
        read never reads it: only this call does.

        Optional: only stores with :attr:`keeps_history` implement it.

        Raises:
            NotImplementedError: the store keeps no history (``keeps_history`` is False).
            InvalidJobId: ``job_id`` is malformed (checked before any I/O).
            StoreUnavailable: the store cannot be reached.
            CorruptRecord: the stored history cannot be decoded.
        """
        raise NotImplementedError(
            f"{type(self).__qualname__} keeps no job history (keeps_history is False)"
        )

    def tally(self, *, since: datetime) -> Tally:
        """Return the dashboard's counters now, with the ``ended`` minutes from ``since`` on.

        A store with :attr:`supports_counts` changes them in every write of :meth:`record`,
        :meth:`reap_lost`, :meth:`beat` (a revived job) and :meth:`prune`, so this costs the same
        at any size. Records are counted as stored until pruned (see
        :mod:`immortus.stores.counting`).

        Optional: only stores with :attr:`supports_counts` implement it.

        Raises:
            NotImplementedError: the store keeps no counters (``supports_counts`` is False).
            StoreUnavailable: the store cannot be reached.
        """
        raise NotImplementedError(
            f"{type(self).__qualname__} keeps no counters (supports_counts is False)"
        )

    def group(self, group_id: str) -> GroupStatus | None:
        """Return the group's aggregate answer, or ``None`` when no member of it is stored.

        A store with :attr:`supports_groups` changes the group's counters in every write of a
        member (:meth:`record`, :meth:`reap_lost`, :meth:`beat` reviving it, :meth:`prune`
        deleting it), by :func:`immortus.stores.group_counts.group_change`, so this reads one
        key or one row whatever the group's size.

        Optional: only stores with :attr:`supports_groups` implement it.

        Raises:
            NotImplementedError: the store keeps no groups (``supports_groups`` is False).
            InvalidInput: ``group_id`` is malformed (checked before any I/O).
            StoreUnavailable: the store cannot be reached.
        """
        raise NotImplementedError(
            f"{type(self).__qualname__} keeps no groups (supports_groups is False)"
        )

    def beat(self, job_ids: Sequence[str], alive_until: datetime) -> int:
        """Extend the lease of the running jobs among ``job_ids`` to ``alive_until``.

        Called by a worker's heartbeat (:mod:`immortus.heartbeat`) once per interval with every
        job the worker runs, so a store answers in one transaction (an update and a read, or one
        script), whatever the number of jobs. Only unexpired records in state ``started`` are
        touched (a lapsed lease is revived: the worker is alive after all), and those reaped
        ``lost`` for their lapsed lease (:func:`~immortus.stores.records.revive`: back to
        ``started``, the same attempt, as a store outage longer than the lease leaves them);
        unknown, ended (a loss the queue reported included) or expired records are left alone
        and never re-created. A touched record's expiry is refreshed as an event would refresh
        it (:meth:`expires_at`), so a running job outlives the TTL without reporting anything.
        Returns how many records were touched.

        Optional: only stores with :attr:`supports_heartbeat` implement it.

        Raises:
            NotImplementedError: the store keeps no leases (``supports_heartbeat`` is False).
            InvalidJobId: an id is malformed (checked before any I/O).
            StoreUnavailable: the store cannot be reached; nothing was extended.
        """
        raise NotImplementedError(
            f"{type(self).__qualname__} keeps no heartbeat leases (supports_heartbeat is False)"
        )

    def reap_lost(self, *, now: datetime | None = None) -> int:
        """Record ``lost`` for each ``started`` job whose lease ran out at ``now``; return how many.

        Reads already show such jobs ``lost``; this writes it down (through the same atomic
        read-modify-write as :meth:`record`, with a ``WorkerLost`` error and the lease's end as
        ``finished_at``), so that what reads show no longer depends on the reader's clock. A job
        whose lease a heartbeat extended meanwhile is left alone. Safe to run while jobs are
        recorded and beaten, and from several processes at once (each lost job is counted by
        one of them). ``immortus prune`` runs it before pruning.

        A store without :attr:`supports_heartbeat` keeps no leases: the default finds nothing
        to reap and returns 0.

        Raises:
            StoreUnavailable: the store cannot be reached (jobs reaped before that stay reaped).
        """
        return 0

    def close(self) -> None:
        """Release connections and files. The default has nothing to release."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
