"""The contract every store keeps.

A store persists what callback-driven tracking records. ``from_url``, ``record``, ``get``,
``list_jobs`` and ``prune`` are abstract; the rest have defaults, and the capability flags say
which optional operations a store answers.

- Retention: a record expires ``ttl`` after its last event or heartbeat
  (:meth:`Store.expires_at`), is invisible at once and deleted by ``prune()`` (or by Redis);
  ``ttl=None`` keeps it until pruned.
- Leases (``supports_heartbeat``): a ``started`` record whose ``alive_until`` passed reads
  ``lost`` from every read, ``list_jobs``'s ``state`` filter included, with no write
  (:mod:`immortus.stores.records` holds the rules).
- Errors: any operation raises :class:`~immortus.exceptions.StoreUnavailable` when the store
  cannot be reached (a write then wrote nothing) and
  :class:`~immortus.exceptions.CorruptRecord` when a stored record cannot be decoded; no driver
  exception escapes. Ids, page sizes and cursors are checked before any I/O
  (:class:`~immortus.exceptions.InvalidInput` and its subclasses).
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
    """A position in the newest-first listing; users only hand back its :meth:`encode` text."""

    created: float
    job_id: str

    def encode(self) -> str:
        """Return the opaque text form."""
        raw = f"{self.created!r}\n{self.job_id}".encode()
        return base64.urlsafe_b64encode(raw).decode("ascii")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Parse the text of :meth:`encode`.

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
    """Return ``url`` with its scheme in lower case: the drivers accept only that form."""
    scheme, separator, rest = url.partition("://")
    return f"{scheme.lower()}{separator}{rest}" if separator else url


def ttl_seconds(ttl: float | timedelta | None) -> float | None:
    """Return a TTL given as seconds or a ``timedelta`` in seconds.

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
    """Return ``limit``, or raise :class:`InvalidInput` unless it is 1 to :data:`MAX_PAGE_SIZE`."""
    if type(limit) is not int or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}, not {limit!r}")
    return limit


def check_beat(job_ids: Sequence[str], alive_until: datetime) -> tuple[list[str], float]:
    """Return a :meth:`Store.beat` call's distinct ids and its lease, or raise InvalidInput."""
    ids = list(dict.fromkeys(check_job_id(job_id) for job_id in job_ids))
    lease = check_aware("alive_until", alive_until)  # checked as given: untyped callers pass any
    if lease is None:
        raise InvalidInput("alive_until must be a timezone-aware datetime, not None")
    return ids, lease.timestamp()


class Store(ABC):
    """Persistence for callback-driven tracking; the module docstring states the contract."""

    #: ``beat`` and ``reap_lost`` work and a lapsed lease reads ``lost``; the heartbeat checks
    #: it before any I/O and leaves the jobs of a store without it alone.
    supports_heartbeat: ClassVar[bool] = False
    #: ``changes_since`` names the records written since a cursor (without: ``None``).
    tracks_changes: ClassVar[bool] = False
    #: ``history`` answers: each job's last :data:`~immortus.status.MAX_HISTORY` events.
    keeps_history: ClassVar[bool] = False
    #: ``tally`` answers: the dashboard's counters (:mod:`immortus.stores.counting`).
    supports_counts: ClassVar[bool] = False
    #: ``group`` answers: each group's counters (:mod:`immortus.stores.group_counts`).
    supports_groups: ClassVar[bool] = False

    def __init__(self, *, ttl: float | timedelta | None = DEFAULT_TTL) -> None:
        self.ttl: float | None = ttl_seconds(ttl)

    @property
    def location(self) -> str | None:
        """Where the records are: the same text in every process using them, no password.

        It names the spool files (:mod:`immortus.stores.spool`). ``None`` (the default): the
        records are private to this object.
        """
        return None

    def expires_at(self, now: float) -> float | None:
        """When a record written at ``now`` expires: ``now + ttl`` rounded up to 1 % of the TTL."""
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
        """Apply ``event`` to its job atomically; return the new status (``None``: unchanged).

        Read, :func:`~immortus.stores.records.advance` and write are one atomic step, so
        concurrent calls for one job lose no update and never overwrite a completed state.
        """

    @abstractmethod
    def get(self, job_id: str) -> JobStatus | None:
        """Return the job's status, or ``None`` when the store has no unexpired record of it."""

    def get_nowait(self, job_id: str) -> JobStatus | None:
        """Return what :meth:`get` would, when the read cannot wait on a network or a lock.

        The async web routes call it on the event loop's thread, and call :meth:`get` in a
        worker thread when it raises.

        Raises:
            BlockingIOError: the read might wait; nothing was read (the default always raises).
        """
        raise BlockingIOError(f"{type(self).__name__} cannot read without waiting")

    def get_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Return the statuses of the known jobs among ``job_ids`` by id (unknown ids absent).

        The default calls :meth:`get` per id; a store should answer in one round trip.
        """
        for job_id in job_ids:
            check_job_id(job_id)
        found = {job_id: self.get(job_id) for job_id in dict.fromkeys(job_ids)}
        return {job_id: status for job_id, status in found.items() if status is not None}

    @abstractmethod
    def list_jobs(
        self, *, state: State | None = None, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        """Return up to ``limit`` jobs in the ``state`` given, newest first (by first write).

        ``cursor`` is an earlier page's ``next_cursor``.
        """

    @abstractmethod
    def prune(self, *, now: datetime | None = None) -> int:
        """Delete the records expired at ``now`` (default: the present); return how many.

        Safe beside writers and other pruners; batches deleted before an error stay deleted.
        """

    def changes_since(self, cursor: int | None) -> Changes:
        """Return a new cursor and the ids written by :meth:`record` or :meth:`reap_lost` since.

        Called by the web change feed each tick (``None`` starts: no ids). The ids are ``None``
        ("assume all changed") without :attr:`tracks_changes` (the default answers
        ``(0, None)``), past :data:`MAX_CHANGES`, or for a cursor the store cannot follow.
        """
        return 0, None

    def change_source(self) -> ChangeSource:
        """Return the source the web follows this store's writes by, the same at every call.

        The default polls :meth:`changes_since` (:mod:`immortus.stores.notify`); a store whose
        server pushes a notice at each write returns a source that wakes its watchers too.
        """
        from immortus.stores import notify  # noqa: PLC0415  # it builds on this module

        return notify.shared(self, notify.PollingSource)

    def history(self, job_id: str) -> tuple[HistoryEntry, ...]:
        """Return the job's history, oldest first (empty without a record).

        Kept with :attr:`keeps_history`: what a record forgets
        (:func:`immortus.transitions.archived`), written in the event's atomic write; status
        reads never read it.

        Raises:
            NotImplementedError: the store keeps no history (the default).
        """
        raise NotImplementedError(
            f"{type(self).__qualname__} keeps no job history (keeps_history is False)"
        )

    def tally(self, *, since: datetime) -> Tally:
        """Return the dashboard's counters now, with the ``ended`` minutes from ``since`` on.

        Kept with :attr:`supports_counts`, in the atomic write of every :meth:`record`,
        :meth:`reap_lost`, :meth:`prune` and reviving :meth:`beat`.

        Raises:
            NotImplementedError: the store keeps no counters (the default).
        """
        raise NotImplementedError(
            f"{type(self).__qualname__} keeps no counters (supports_counts is False)"
        )

    def group(self, group_id: str) -> GroupStatus | None:
        """Return the group's answer, or ``None`` when no member of it is stored.

        Kept with :attr:`supports_groups`, in the same writes as :meth:`tally`'s counters.

        Raises:
            NotImplementedError: the store keeps no groups (the default).
        """
        raise NotImplementedError(
            f"{type(self).__qualname__} keeps no groups (supports_groups is False)"
        )

    def beat(self, job_ids: Sequence[str], alive_until: datetime) -> int:
        """Extend the leases of the running jobs among ``job_ids``; return how many it touched.

        Called each heartbeat with all of a worker's jobs: one transaction. Touches unexpired
        ``started`` records and revives those reaped ``lost``
        (:func:`~immortus.stores.records.revive`), refreshing expiry; never re-creates one.

        Raises:
            NotImplementedError: the store keeps no leases (the default).
        """
        raise NotImplementedError(
            f"{type(self).__qualname__} keeps no heartbeat leases (supports_heartbeat is False)"
        )

    def reap_lost(self, *, now: datetime | None = None) -> int:
        """Write ``lost`` for each ``started`` job whose lease ran out at ``now``; return how many.

        Each in an atomic read-modify-write (:func:`~immortus.stores.records.reap`), so a job
        beaten meanwhile stays and concurrent reapers count it once; jobs reaped before an error
        stay reaped. The default (no leases) returns 0.
        """
        return 0

    def close(self) -> None:
        """Release connections and files (the default has none)."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
