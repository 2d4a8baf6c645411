"""The embedded default store: one SQLite file shared by every thread and process of a host.

``sqlite:///immortus.sqlite3`` needs no server and no extra. The file holds one table,
``immortus_jobs``, with one column per field of :data:`~immortus.stores.records.COLUMNS` (so the
``sqlite3`` shell can read it); ``PRAGMA user_version`` records its layout.

- WAL mode: readers never wait for the writer; a writer waits up to ``timeout`` seconds for the
  write lock, then gets :class:`~immortus.exceptions.StoreUnavailable`.
- One connection per thread and per process. :meth:`SQLiteStore.record` reads the row, calls
  :func:`~immortus.transitions.apply` and writes inside ``BEGIN IMMEDIATE``, so SQLite's write
  lock serialises read-modify-writes across processes and no update is lost. A job's
  ``enqueued`` first tries an ``INSERT`` that does nothing if the job has a row: a new job's
  ``created`` record costs no read.
- A forked child closes the connections it inherited before opening its own. Merely not using
  them is not enough: SQLite keeps each file's lock bookkeeping in process memory, so a child
  that inherits it takes no real file locks, and the parent, closing its last connection, would
  believe it is alone and delete the WAL under the child's writes.
- A thread's connection closes when the thread ends; :meth:`SQLiteStore.close` closes the rest.
- ``synchronous=NORMAL``: a commit survives a crash of the process; a power cut may lose the
  last commits, never the file.
- Private: a file the store creates is readable and writable by its owner only (mode 0600), and
  SQLite gives its ``-wal``, ``-shm`` and journal files the mode of the database file. A file
  that already exists keeps its mode.
- Layout version 2 added the ``alive_until`` column (workers' heartbeat leases), version 3 the
  ``seq`` column (below), version 4 the ``retry_at``, ``cancel_requested_at`` and ``history``
  columns, version 5 the dashboard's counter tables (:mod:`immortus.stores.sqlite_counts`),
  changed in the transaction of every write and counted once from the rows on upgrade,
  version 6 the ``group_id`` column and the groups' table
  (:mod:`immortus.stores.sqlite_groups`), filled from the rows the same way; an older file is
  upgraded in place (``ALTER TABLE ... ADD COLUMN``) when a store first opens it.
- A job's history is a column of its row, rewritten in the transaction that records the event
  it tells, so it expires and is pruned with the row. Status reads do not select it.
- Change tracking (:meth:`SQLiteStore.changes_since`): every write of a record sets its ``seq``
  to one more than the table's highest, inside the write's ``BEGIN IMMEDIATE`` transaction.
  Writers are serialised, so ``seq`` order is commit order and a reader that saw ``seq <= n``
  misses no later change by asking for ``seq > n``. Heartbeats do not count (a lease is not a
  status). Pruning deletes rows: if it deletes the highest-``seq`` row, the next write may reuse
  its number, which a follower at exactly that cursor misses until its periodic full re-read.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Final, Self

from immortus.exceptions import ConfigurationError, InvalidInput, InvalidStoreURL, StoreUnavailable
from immortus.grouping import GroupStatus
from immortus.status import HistoryEntry, JobStatus, State
from immortus.stores import sqlite_counts, sqlite_groups
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
from immortus.stores.counting import Change, Tally, change, gone
from immortus.stores.group_counts import GroupChange, Member, group_gone, running_of
from immortus.stores.records import (
    COLUMNS,
    LOST_ERROR_TYPE,
    READ_COLUMNS,
    Outcome,
    advance,
    cancel_request,
    changed,
    decode,
    decode_read,
    encode,
    history_of,
    lease_of,
    member_of,
    reap,
    revive,
)
from immortus.stores.urls import redact_url
from immortus.transitions import Event, EventKind
from immortus.validation import check_group_id, check_job_id

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

#: The table layout this module reads and writes, kept in the file's ``PRAGMA user_version``.
SCHEMA_VERSION: Final = 6
#: Ids per ``get_many`` query: below 999, the smallest variable limit SQLite has shipped with.
_CHUNK: Final = 900
#: Rows per ``prune`` (and ``reap_lost``) transaction, so a large backlog never holds the write
#: lock for long.
_PRUNE_BATCH: Final = 1000

# One column per field of records.COLUMNS, in that order (the tests check it).
_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS immortus_jobs (
        job_id TEXT PRIMARY KEY NOT NULL, job_class TEXT, state TEXT NOT NULL,
        attempts INTEGER NOT NULL, progress_current REAL, progress_total REAL,
        progress_message TEXT, error_type TEXT, error_message TEXT, error_traceback TEXT,
        meta TEXT, enqueued_at REAL, started_at REAL, finished_at REAL, updated_at REAL,
        alive_until REAL, created REAL NOT NULL, expires REAL, retry_at REAL,
        cancel_requested_at REAL, history TEXT, group_id TEXT, seq INTEGER
    )""",
    "CREATE INDEX IF NOT EXISTS immortus_jobs_listing ON immortus_jobs (created DESC, job_id DESC)",
    "CREATE INDEX IF NOT EXISTS immortus_jobs_state ON immortus_jobs (state, created, job_id)",
    "CREATE INDEX IF NOT EXISTS immortus_jobs_expiry ON immortus_jobs (expires)",
    "CREATE INDEX IF NOT EXISTS immortus_jobs_changes ON immortus_jobs (seq)",
    *sqlite_counts.SCHEMA,
    *sqlite_groups.SCHEMA,
)
# Every statement is built from the constant column names above, never from user input.
_SELECT: Final = f"SELECT {', '.join(READ_COLUMNS)} FROM immortus_jobs"  # noqa: S608
#: The whole row, history included: what a write reads before it rewrites the row.
_SELECT_ALL: Final = f"SELECT {', '.join(COLUMNS)} FROM immortus_jobs"  # noqa: S608
_LIVE: Final = "(expires IS NULL OR expires > ?)"
_GET: Final = f"{_SELECT} WHERE job_id = ? AND {_LIVE}"
_GET_ALL: Final = f"{_SELECT_ALL} WHERE job_id = ? AND {_LIVE}"
_GET_CANCEL: Final = f"SELECT cancel_requested_at FROM immortus_jobs WHERE job_id = ? AND {_LIVE}"  # noqa: S608
#: The next change number: every write of a record sets its ``seq`` to it (module docstring).
_NEXT_SEQ: Final = "(SELECT IFNULL(MAX(seq), 0) + 1 FROM immortus_jobs)"
_INSERT: Final = (
    f"INSERT OR REPLACE INTO immortus_jobs ({', '.join(COLUMNS)}, seq) "  # noqa: S608
    f"VALUES ({', '.join(f':{c}' for c in COLUMNS)}, {_NEXT_SEQ})"
)
#: A new job's first record, in one statement: nothing when the job has a row (read it then).
_INSERT_NEW: Final = (
    f"INSERT INTO immortus_jobs ({', '.join(COLUMNS)}, seq) "  # noqa: S608
    f"VALUES ({', '.join(f':{c}' for c in COLUMNS)}, {_NEXT_SEQ}) ON CONFLICT (job_id) DO NOTHING"
)
_TOP_SEQ: Final = "SELECT IFNULL(MAX(seq), 0) FROM immortus_jobs"
#: The top ``seq`` (the row whose ``job_id`` is NULL) and the rows above a cursor, in one
#: statement: one read of one snapshot.
_CHANGED: Final = (
    "SELECT NULL, IFNULL(MAX(seq), 0) FROM immortus_jobs UNION ALL SELECT * FROM "
    "(SELECT job_id, seq FROM immortus_jobs WHERE seq > ? ORDER BY seq LIMIT ?)"
)
_PRUNE: Final = (
    "DELETE FROM immortus_jobs WHERE rowid IN "
    "(SELECT rowid FROM immortus_jobs WHERE expires <= ? LIMIT ?) "
    "RETURNING job_class, state, group_id, progress_current, progress_total"
)
#: The class and state of a job's row, expired or not (a new record replaces an expired one).
#: A job's row, expired or not: a write takes an expired one off the counters as it replaces it.
_GET_ANY: Final = f"{_SELECT_ALL} WHERE job_id = ?"
_CREATED: Final = COLUMNS.index("created")
#: What each older layout version needs to become the current one.
_UPGRADES: Final = {
    1: ("ALTER TABLE immortus_jobs ADD COLUMN alive_until REAL",),
    2: ("ALTER TABLE immortus_jobs ADD COLUMN seq INTEGER",),
    3: (
        "ALTER TABLE immortus_jobs ADD COLUMN retry_at REAL",
        "ALTER TABLE immortus_jobs ADD COLUMN cancel_requested_at REAL",
        "ALTER TABLE immortus_jobs ADD COLUMN history TEXT",
    ),
    4: (),  # the counters' tables: created with the schema, then filled from the rows once
    5: ("ALTER TABLE immortus_jobs ADD COLUMN group_id TEXT",),  # and the groups' table, filled
}
# A started job whose lease ran out reads lost (records.lapse); the state filter agrees.
_RUNNING: Final = "(state = 'started' AND (alive_until IS NULL OR alive_until > ?))"
_LOST: Final = "(state = 'lost' OR (state = 'started' AND alive_until <= ?))"
# A job reaped lost for its lease, which a heartbeat revives (records.revive).
_REAPED: Final = f"state = 'lost' AND error_type = '{LOST_ERROR_TYPE}' AND {_LIVE}"
_REAPABLE: Final = f"{_SELECT_ALL} WHERE state = 'started' AND alive_until <= ? AND {_LIVE} LIMIT ?"


@functools.lru_cache(maxsize=128)
def _update(columns: frozenset[str]) -> str:
    """``UPDATE`` of just ``columns`` (names from :data:`COLUMNS`) and ``seq``."""
    assignments = ", ".join(f"{column} = :{column}" for column in sorted(columns))
    assignments += f", seq = {_NEXT_SEQ}"
    return f"UPDATE immortus_jobs SET {assignments} WHERE job_id = :job_id"  # noqa: S608


@functools.lru_cache(maxsize=8)
def _update_plain(columns: frozenset[str]) -> str:
    """``UPDATE`` of just ``columns``, leaving ``seq`` (a write that changes no status)."""
    assignments = ", ".join(f"{column} = :{column}" for column in sorted(columns))
    return f"UPDATE immortus_jobs SET {assignments} WHERE job_id = :job_id"  # noqa: S608


_BUSY: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


class _Handle:
    """One thread's connection, and the process that opened it.

    ``in_use`` is the lock the thread holds while it uses the connection
    (:meth:`SQLiteStore._translate`).
    """

    __slots__ = ("__weakref__", "_finalizer", "connection", "in_use", "pid")

    def __init__(self, connection: sqlite3.Connection, in_use: threading.RLock) -> None:
        self.connection: sqlite3.Connection | None = connection
        self.in_use = in_use
        self.pid = os.getpid()
        # Closes the connection when the owning thread ends and its thread-local goes, or when
        # the thread replaces a detached handle (:meth:`close_or_detach`).
        self._finalizer = weakref.finalize(self, connection.close)

    def close(self) -> None:
        self.connection = None
        self._finalizer()

    def close_or_detach(self) -> None:
        """Close the connection now if its thread is not using it; else let that thread do it.

        Closing a connection under a statement another thread is running crashes the
        interpreter (the sqlite3 module frees what the statement uses), so a busy connection is
        only detached: its thread opens a new one at its next call, and the old one closes when
        its handle goes (the thread is then between calls).
        """
        if self.in_use.acquire(blocking=False):
            try:
                self.close()
            finally:
                self.in_use.release()
        else:
            self.connection = None


class _Registry:
    """The connections one process opened for a store, across its threads."""

    __slots__ = ("handles", "lock", "pid")

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.handles: weakref.WeakSet[_Handle] = weakref.WeakSet()


class _Transaction:
    """Runs the ``with`` block in one ``BEGIN <mode>`` transaction; commits, or rolls back.

    A class rather than a generator-based context manager: every recorded event enters one, and
    a generator costs a few µs more a call.
    """

    __slots__ = ("_connection", "_mode")

    def __init__(self, connection: sqlite3.Connection, mode: str) -> None:
        self._connection, self._mode = connection, mode

    def __enter__(self) -> None:
        self._connection.execute(f"BEGIN {self._mode}")

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self._connection.execute("COMMIT")
        elif self._connection.in_transaction:
            self._connection.execute("ROLLBACK")


class _Translated:
    """Holds the thread's use lock over the ``with`` block; driver errors become StoreUnavailable.

    The lock is what :meth:`SQLiteStore.close` waits for. A class, as :class:`_Transaction` is.
    """

    __slots__ = ("_lock", "_store")

    def __init__(self, store: SQLiteStore) -> None:
        self._store, self._lock = store, store._in_use()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: object
    ) -> None:
        self._lock.release()
        if isinstance(error, sqlite3.Error):
            raise self._store._unavailable(error) from error


def _row(row: Sequence[Any]) -> dict[str, Any]:
    """A whole row (:data:`_SELECT_ALL`) by column name."""
    return dict(zip(COLUMNS, row, strict=True))


def _decode(row: Sequence[Any], now: float) -> JobStatus:
    """The status a reader sees at ``now``, from a row of :data:`_SELECT`."""
    return decode_read(row, now)


class SQLiteStore(Store):
    """Keeps records in one SQLite file; safe from many threads and many processes at once.

    ``path`` is the database file; it is created if missing, but its directory must exist.
    ``timeout`` is how long, in seconds, a call waits for another connection's lock before it
    raises :class:`~immortus.exceptions.StoreUnavailable`.

    Raises:
        InvalidInput: ``ttl`` or ``timeout`` is out of range, or ``path`` is ``":memory:"``.
        StoreUnavailable: the directory does not exist, or the file cannot be opened.
        ConfigurationError: the file was written by a newer immortus with another table layout.
    """

    supports_heartbeat: ClassVar[bool] = True
    tracks_changes: ClassVar[bool] = True
    keeps_history: ClassVar[bool] = True
    supports_counts: ClassVar[bool] = True
    supports_groups: ClassVar[bool] = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        ttl: float | timedelta | None = DEFAULT_TTL,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(ttl=ttl)
        seconds: object = timeout  # checked as given: untyped callers pass anything
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
            raise InvalidInput(f"timeout must be a number of seconds from 0, not {timeout!r}")
        if os.fspath(path) == ":memory:":
            raise InvalidInput(
                "an in-memory SQLite database is private to one connection; use MemoryStore"
            )
        #: The database file, made absolute so a later ``chdir`` cannot move the store.
        self.path = Path(path).absolute()
        #: Seconds to wait for a lock before giving up.
        self.timeout = float(timeout)
        self._local = threading.local()
        self._registry = _Registry()
        if not self.path.parent.is_dir():
            raise StoreUnavailable(
                f"cannot open the SQLite store {self.path}: "
                f"its directory {self.path.parent} does not exist"
            )
        try:
            self._create_private_file()
            self._create_schema()
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_url(cls, url: str, *, ttl: float | timedelta | None = DEFAULT_TTL) -> Self:
        """Open the file ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` names.

        A relative path is taken from the current directory at the time of the call.

        Raises:
            InvalidStoreURL: the URL has no path, a host or a query, or names ``:memory:``.
            StoreUnavailable: the file's directory does not exist or the file cannot be opened.
            ConfigurationError: the file was written by a newer immortus.
        """
        scheme, _, rest = url.partition("://")
        shown = redact_url(url)
        usage = "expected sqlite:///relative/path.db or sqlite:////absolute/path.db"
        if scheme.lower() != "sqlite":
            raise InvalidStoreURL(f"{shown!r} is not a SQLite URL; {usage}")
        if rest in {"", "/"}:
            raise InvalidStoreURL(f"{shown!r} names no file; {usage}")
        if not rest.startswith("/"):
            raise InvalidStoreURL(
                f"{shown!r} has a host part, which SQLite URLs do not take; {usage}"
            )
        path = rest[1:]
        if "?" in path or "#" in path:
            raise InvalidStoreURL(
                f"{shown!r} has a query or fragment, which SQLite URLs do not take"
            )
        if ":memory:" in path:
            raise InvalidStoreURL(
                f"{shown!r} names an in-memory database, which other processes (the workers, the "
                "web server) could never see; use memory:// for a store private to this process"
            )
        return cls(path, ttl=ttl)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    @property
    def location(self) -> str:
        """``sqlite:`` and the file's absolute path; see :attr:`Store.location`."""
        return f"sqlite:{self.path}"

    # -- connections --------------------------------------------------------------------------

    def _connection(self, *, nowait: bool = False) -> sqlite3.Connection:
        """Return this thread's connection in this process, opening it if needed.

        ``nowait`` gives the thread's second connection, whose busy timeout is 0: a statement
        that would wait for another connection's lock fails at once instead.
        """
        slot = "nowait" if nowait else "handle"
        handle: _Handle | None = getattr(self._local, slot, None)
        connection = None if handle is None or handle.pid != os.getpid() else handle.connection
        return (
            self._connect(slot, 0 if nowait else self.timeout) if connection is None else connection
        )

    def _connect(self, slot: str, timeout: float) -> sqlite3.Connection:
        registry = self._registry
        if registry.pid != os.getpid():
            # First call in a forked child: close the parent's connections (module docstring).
            self._registry = _Registry()
            for inherited in list(registry.handles):
                inherited.close()
            registry = self._registry
        connection = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        handle = _Handle(connection, self._in_use())
        with registry.lock:
            registry.handles.add(handle)
        setattr(self._local, slot, handle)
        connection.execute("PRAGMA synchronous = NORMAL")
        return connection

    def _in_use(self) -> threading.RLock:
        """This thread's lock, held while it uses its connections (see :meth:`close`)."""
        lock: threading.RLock | None = getattr(self._local, "in_use", None)
        if lock is None:
            lock = self._local.in_use = threading.RLock()
        return lock

    def _translate(self) -> _Translated:
        """Use this thread's connections in the ``with`` block (see :class:`_Translated`)."""
        return _Translated(self)

    def _unavailable(self, exc: sqlite3.Error) -> StoreUnavailable:
        """The error to raise for a driver error (chain it: ``raise ... from exc``)."""
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _BUSY:
            return StoreUnavailable(
                f"the SQLite store {self.path} stayed locked by another connection for more "
                f"than {self.timeout:g} s ({exc})"
            )
        return StoreUnavailable(f"cannot use the SQLite store {self.path}: {exc}")

    def _create_private_file(self) -> None:
        """Create the database file with mode 0600 unless it exists (its journals follow it)."""
        try:
            descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the SQLite store {self.path}: {exc}") from exc
        os.close(descriptor)

    def _create_schema(self) -> None:
        with self._translate():
            connection = self._connection()
            # A file already at this layout (and so in WAL mode, which persists) is opened with
            # a read, not the write lock: workers starting while others write need not wait.
            if connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                return
            connection.execute("PRAGMA journal_mode = WAL")
            with _Transaction(connection, "IMMEDIATE"):
                version = connection.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise ConfigurationError(
                        f"the SQLite store {self.path} has table layout version {version}, "
                        f"written by a newer immortus; this one knows up to {SCHEMA_VERSION}. "
                        "Upgrade immortus, or point it at another file"
                    )
                if version > 0:  # an existing table: upgrade it first (its indexes exist)
                    for older in range(version, SCHEMA_VERSION):
                        for statement in _UPGRADES[older]:
                            connection.execute(statement)
                for statement in _SCHEMA:
                    connection.execute(statement)
                if version < SCHEMA_VERSION:
                    sqlite_counts.rebuild(connection, time.time())
                    sqlite_groups.rebuild(connection)
                    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- the contract -------------------------------------------------------------------------

    def record(self, event: Event) -> JobStatus | None:
        """Apply ``event`` in one ``BEGIN IMMEDIATE`` transaction; see :meth:`Store.record`.

        An expired record counts as absent: the event starts a new record that replaces it.
        """
        with self._translate():
            connection = self._connection()
            with _Transaction(connection, "IMMEDIATE"):
                return self._apply(connection, event)

    def _apply(self, connection: sqlite3.Connection, event: Event) -> JobStatus | None:
        """Apply ``event`` in the caller's transaction; return what :meth:`record` returns."""
        now = time.time()
        if event.kind is EventKind.ENQUEUED:
            new = self._insert(connection, event, now)
            if new is not None:
                return new
        found = connection.execute(_GET_ANY, (event.job_id,)).fetchone()
        stored = None if found is None else _row(found)
        expired = None
        if stored is not None and stored["expires"] is not None and stored["expires"] <= now:
            expired, stored = stored, None
        current = None if stored is None else decode(stored)
        lease = None if stored is None else lease_of(stored)
        outcome = advance(current, lease, event, now)
        if outcome is None:
            return None
        if expired is not None:
            sqlite_counts.add(
                connection,
                gone(expired["job_class"], State(expired["state"]), member_of(expired)),
            )
        self._write(connection, stored, outcome, now, before=current)
        return None if outcome.status is current else outcome.status  # else: a lease only

    def _insert(self, connection: sqlite3.Connection, event: Event, now: float) -> JobStatus | None:
        """Record ``event`` as a new job's first record with one ``INSERT``, without a read.

        ``None``: the job has a row (live or expired), which the caller reads and applies
        ``event`` to as to any other. A job's ``enqueued`` is nearly always its first event.
        """
        outcome = advance(None, None, event, now)
        if outcome is None:
            return None
        values = encode(
            outcome.status,
            created=now,
            expires=self.expires_at(now),
            alive_until=outcome.alive_until,
            entries=outcome.entries,
        )
        if not connection.execute(_INSERT_NEW, values).rowcount:
            return None
        sqlite_counts.add(connection, change(None, outcome.status))
        return outcome.status

    def _write(
        self,
        connection: sqlite3.Connection,
        stored: dict[str, Any] | None,
        outcome: Outcome,
        now: float,
        *,
        before: JobStatus | None,
    ) -> None:
        """Write ``outcome`` over the ``stored`` row (``None``: a new one), changed columns only.

        ``before`` is the stored row decoded; the counters change from it to the outcome in
        the same transaction (:mod:`immortus.stores.counting`).
        """
        if outcome.status is not before:
            sqlite_counts.add(connection, change(before, outcome.status))
        created = now if stored is None else stored["created"]
        values = encode(
            outcome.status,
            created=created,
            expires=self.expires_at(now),
            alive_until=outcome.alive_until,
            kept=stored,
            entries=outcome.entries,
        )
        if stored is None:
            connection.execute(_INSERT, values)
        elif changes := changed(stored, values):
            connection.execute(_update(frozenset(changes)), {**changes, "job_id": values["job_id"]})

    def get(self, job_id: str) -> JobStatus | None:
        """Return the job's status; see :meth:`Store.get`."""
        check_job_id(job_id)
        now = time.time()
        try:  # what _translate does, inline: a context manager costs µs a call
            with self._in_use():
                row = self._connection().execute(_GET, (job_id, now)).fetchone()
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        return None if row is None else decode_read(row, now)

    def history(self, job_id: str) -> tuple[HistoryEntry, ...]:
        """Return the job's history, oldest first; see :meth:`Store.history`."""
        check_job_id(job_id)
        now = time.time()
        with self._translate():
            row = self._connection().execute(_GET_ALL, (job_id, now)).fetchone()
        return () if row is None else history_of(_row(row), now)

    def request_cancel(self, job_id: str) -> bool:
        """Record a cancel request on the job's live, unended record in one transaction.

        See :class:`~immortus.cancel_requests.CancelRequestStore`. A request is not a change
        of status: it does not count in :meth:`changes_since`.
        """
        check_job_id(job_id)
        with self._translate():
            connection = self._connection()
            with _Transaction(connection, "IMMEDIATE"):
                now = time.time()
                found = connection.execute(_GET_ALL, (job_id, now)).fetchone()
                stored = None if found is None else _row(found)
                seen = None if stored is None else decode(stored, now=now)
                fields = cancel_request(stored, seen, now)
                if fields:
                    connection.execute(
                        _update_plain(frozenset(fields)), {**fields, "job_id": job_id}
                    )
        return fields is not None

    def cancel_requested(self, job_id: str) -> bool:
        """Tell whether the job's live record carries a cancel request (one indexed read)."""
        check_job_id(job_id)
        with self._translate():
            row = self._connection().execute(_GET_CANCEL, (job_id, time.time())).fetchone()
        return row is not None and row[0] is not None

    def get_nowait(self, job_id: str) -> JobStatus | None:
        """Return the job's status unless reading it would wait; see :meth:`Store.get_nowait`.

        The file is in WAL mode, where a reader never waits for a writer; the read is one
        primary-key lookup in a local file (tens of microseconds). It runs on a connection whose
        busy timeout is 0, so in the rare cases where a reader would wait (another connection
        holds an exclusive lock, or is recovering the WAL after a crash) it gives up at once.
        """
        check_job_id(job_id)
        now = time.time()
        try:
            with self._translate():
                row = self._connection(nowait=True).execute(_GET, (job_id, now)).fetchone()
        except StoreUnavailable as exc:
            code = getattr(exc.__cause__, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in _BUSY:
                raise BlockingIOError(f"the SQLite store {self.path} is locked") from exc
            raise
        return None if row is None else _decode(row, now)

    def get_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Return the known statuses among ``job_ids`` in one query per 900 ids.

        The answer is one consistent snapshot: a single query is its own, and more share one
        read transaction (a single query, the common case, needs none). See
        :meth:`Store.get_many`.
        """
        ids = list(dict.fromkeys(check_job_id(job_id) for job_id in job_ids))
        if not ids:
            return {}
        chunks = [ids[start : start + _CHUNK] for start in range(0, len(ids), _CHUNK)]
        with self._translate():
            connection = self._connection()
            now = time.time()

            def select(chunk: list[str]) -> list[Any]:
                sql = f"{_SELECT} WHERE job_id IN ({', '.join('?' * len(chunk))}) AND {_LIVE}"
                return connection.execute(sql, (*chunk, now)).fetchall()

            if len(chunks) == 1:
                rows = select(chunks[0])
            else:
                with _Transaction(connection, "DEFERRED"):
                    rows = [row for chunk in chunks for row in select(chunk)]
        return {row[0]: _decode(row, now) for row in rows}

    def changes_since(self, cursor: int | None) -> Changes:
        """Name the jobs written after ``cursor`` with one statement on the ``seq`` index.

        See :meth:`Store.changes_since` and the module docstring. The table's highest ``seq``
        and the rows above the cursor are read together, from one snapshot (one read
        transaction, the dearest part of a read). A cursor above that highest ``seq`` (its
        newest rows were pruned, or the file was replaced) answers ``None``.
        """
        with self._translate():
            connection = self._connection()
            if cursor is None:
                return int(connection.execute(_TOP_SEQ).fetchone()[0]), frozenset()
            found = connection.execute(_CHANGED, (cursor, MAX_CHANGES + 1)).fetchall()
        top = max(int(seq) for job_id, seq in found if job_id is None)
        changed = [job_id for job_id, _ in found if job_id is not None]
        if cursor > top or len(changed) > MAX_CHANGES:
            return top, None
        return top, frozenset(changed)

    def list_jobs(
        self, *, state: State | None = None, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        """Return recent jobs, newest first, walking an index; see :meth:`Store.list_jobs`."""
        check_page_size(limit)
        after = None if cursor is None else Cursor.decode(cursor)
        clauses: list[str] = []
        params: list[Any] = []
        now = time.time()
        if state is not None:
            wanted = State.parse(state)
            clauses.append({State.STARTED: _RUNNING, State.LOST: _LOST}.get(wanted, "state = ?"))
            params.append(now if wanted in (State.STARTED, State.LOST) else wanted.value)
        clauses.append(_LIVE)
        params.append(now)
        if after is not None:
            clauses.append("(created, job_id) < (?, ?)")
            params += [after.created, after.job_id]
        sql = f"{_SELECT} WHERE {' AND '.join(clauses)} ORDER BY created DESC, job_id DESC LIMIT ?"
        params.append(limit + 1)
        with self._translate():
            rows = self._connection().execute(sql, params).fetchall()
        jobs = tuple(_decode(row, now) for row in rows[:limit])
        if len(rows) <= limit:
            return JobPage(jobs, None)
        last = rows[limit - 1]
        return JobPage(jobs, Cursor(last[_CREATED], last[0]).encode())

    def prune(self, *, now: datetime | None = None) -> int:
        """Delete expired records in short batches; see :meth:`Store.prune`."""
        moment = time.time() if now is None else now.timestamp()

        def batch(connection: sqlite3.Connection) -> tuple[int, int]:
            deleted = connection.execute(_PRUNE, (moment, _PRUNE_BATCH)).fetchall()
            removed: dict[tuple[str, State], int] = {}
            left: list[GroupChange] = []
            for job_class, state, group_id, current, of in deleted:
                for key, number in gone(job_class, State(state)).jobs.items():
                    removed[key] = removed.get(key, 0) + number
                if group_id is not None:
                    running = running_of(State(state), current, of)
                    left.append(group_gone(Member(group_id, State(state), running)))
            sqlite_counts.add(connection, Change(removed, groups=tuple(left)))
            if len(deleted) < _PRUNE_BATCH:
                sqlite_counts.prune_ended(connection, time.time())
            return len(deleted), len(deleted)

        return self._in_batches(batch)

    def tally(self, *, since: datetime) -> Tally:
        """Return the counters, ``ended`` from ``since`` on; see :mod:`immortus.stores.counting`.

        Three small reads in one read transaction, whatever the number of jobs.
        """
        with self._translate():
            connection = self._connection()
            with _Transaction(connection, "DEFERRED"):
                return sqlite_counts.read(connection, since)

    def group(self, group_id: str) -> GroupStatus | None:
        """Return the group's answer from its one row; see :meth:`Store.group`."""
        check_group_id(group_id)
        with self._translate():
            return sqlite_groups.read(self._connection(), group_id)

    def beat(self, job_ids: Sequence[str], alive_until: datetime) -> int:
        """Extend the running jobs' leases with one ``UPDATE`` per 900 ids, in one transaction.

        See :meth:`Store.beat`.
        """
        ids, lease = check_beat(job_ids, alive_until)
        if not ids:
            return 0
        touched = 0
        with self._translate():
            connection = self._connection()
            with _Transaction(connection, "IMMEDIATE"):
                now = time.time()
                for start in range(0, len(ids), _CHUNK):
                    chunk = ids[start : start + _CHUNK]
                    sql = (
                        "UPDATE immortus_jobs SET alive_until = ?, expires = ? "  # noqa: S608
                        f"WHERE job_id IN ({', '.join('?' * len(chunk))}) "
                        f"AND state = 'started' AND {_LIVE}"
                    )
                    params = (lease, self.expires_at(now), *chunk, now)
                    touched += connection.execute(sql, params).rowcount
                    marks = ", ".join("?" * len(chunk))
                    reaped = f"{_SELECT_ALL} WHERE job_id IN ({marks}) AND {_REAPED}"
                    for found in connection.execute(reaped, (*chunk, now)).fetchall():
                        stored = _row(found)
                        before = decode(stored)
                        outcome = revive(before, lease, now)
                        if outcome is not None:
                            self._write(connection, stored, outcome, now, before=before)
                            touched += 1
        return touched

    def reap_lost(self, *, now: datetime | None = None) -> int:
        """Record ``lost`` for running jobs whose lease ran out, in short transactions.

        Each batch is read and rewritten inside one ``BEGIN IMMEDIATE``, so a heartbeat or an
        event landing meanwhile is seen and no other reaper counts the same job. See
        :meth:`Store.reap_lost`.
        """
        moment = time.time() if now is None else now.timestamp()

        def batch(connection: sqlite3.Connection) -> tuple[int, int]:
            clock = time.time()
            rows = connection.execute(_REAPABLE, (moment, clock, _PRUNE_BATCH)).fetchall()
            reaped = 0
            for found in rows:
                stored = _row(found)
                before = decode(stored)
                outcome = reap(before, lease_of(stored), moment)
                if outcome is not None:
                    self._write(connection, stored, outcome, clock, before=before)
                    reaped += 1
            return len(rows), reaped

        return self._in_batches(batch)

    def _in_batches(self, batch: Callable[[sqlite3.Connection], tuple[int, int]]) -> int:
        """Run ``batch`` in ``BEGIN IMMEDIATE`` transactions until one sees a short batch.

        ``batch`` returns how many rows it saw (fewer than :data:`_PRUNE_BATCH`: the last) and
        how many it changed; returns the sum of the changes. Batches done before an error stay
        done.
        """
        total = 0
        with self._translate():
            connection = self._connection()
            while True:
                with _Transaction(connection, "IMMEDIATE"):
                    seen, done = batch(connection)
                total += done
                if seen < _PRUNE_BATCH:
                    return total

    def close(self) -> None:
        """Close the connections this store opened, in every thread.

        A connection another thread is using at that moment is closed by that thread when its
        call ends instead (closing it under a running statement would crash the interpreter).
        The store stays usable: a later call opens a new connection.
        """
        registry = self._registry
        with registry.lock:
            handles = list(registry.handles)
            registry.handles.clear()
        for handle in handles:
            handle.close_or_detach()
