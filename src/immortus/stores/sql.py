"""A store in a SQL database through SQLAlchemy 2: PostgreSQL, MySQL / MariaDB, SQLite.

One row per job, one column per field of :data:`immortus.stores.records.COLUMNS`. ``record()``
is one transaction that locks the job's row (``SELECT ... FOR UPDATE``), applies the event with
:func:`immortus.transitions.apply` and writes the row back, so any number of processes and
connections can record the same job. ``list_jobs`` pages by the index on ``(created, job_id)``.

By default the store creates its table (``CREATE TABLE`` only if missing) on first use. An
application that manages its schema with migrations passes ``create_table=False`` and creates
the table itself: add :func:`jobs_table` to its own ``MetaData`` (Alembic's autogenerate then
writes the migration), or run this DDL (PostgreSQL; MySQL spells ``DOUBLE PRECISION`` as
``DOUBLE`` and gives ``job_id`` the ``utf8mb4_bin`` collation so that ids are case-sensitive)::

    CREATE TABLE immortus_jobs (
        job_id VARCHAR(255) NOT NULL PRIMARY KEY, job_class VARCHAR(255),
        state VARCHAR(32) NOT NULL, attempts INTEGER NOT NULL,
        progress_current DOUBLE PRECISION, progress_total DOUBLE PRECISION, progress_message TEXT,
        error_type VARCHAR(255), error_message TEXT, error_traceback TEXT, meta TEXT,
        enqueued_at DOUBLE PRECISION, started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION, updated_at DOUBLE PRECISION,
        alive_until DOUBLE PRECISION, created DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION,
        retry_at DOUBLE PRECISION, cancel_requested_at DOUBLE PRECISION, history TEXT,
        group_id VARCHAR(255)
    );
    CREATE INDEX ix_immortus_jobs_created ON immortus_jobs (created, job_id);
    CREATE INDEX ix_immortus_jobs_state_created ON immortus_jobs (state, created, job_id);
    CREATE INDEX ix_immortus_jobs_expires ON immortus_jobs (expires);
    CREATE TABLE immortus_jobs_counts (
        job_class VARCHAR(255) NOT NULL, state VARCHAR(32) NOT NULL, n BIGINT NOT NULL,
        PRIMARY KEY (job_class, state)
    );
    CREATE TABLE immortus_jobs_ended (
        minute BIGINT NOT NULL, state VARCHAR(32) NOT NULL, n BIGINT NOT NULL,
        PRIMARY KEY (minute, state)
    );
    CREATE TABLE immortus_jobs_durations (
        bucket INTEGER NOT NULL PRIMARY KEY, n BIGINT NOT NULL, total DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE immortus_jobs_groups (
        group_id VARCHAR(255) NOT NULL PRIMARY KEY, created BIGINT NOT NULL,
        started BIGINT NOT NULL, retrying BIGINT NOT NULL, finished BIGINT NOT NULL,
        failed BIGINT NOT NULL, cancelled BIGINT NOT NULL, lost BIGINT NOT NULL,
        running DOUBLE PRECISION NOT NULL, error_type VARCHAR(255), error_message TEXT,
        updated_at DOUBLE PRECISION
    );

The ``_counts``, ``_ended`` and ``_durations`` tables hold the dashboard's counters
(:mod:`immortus.stores.counting`), changed in the transaction of every write;
:func:`~immortus.stores.sql_counts.counter_tables` defines them for Alembic. ``_groups`` holds
each group's counters (:mod:`immortus.groups`), changed the same way;
:func:`~immortus.stores.sql_groups.group_table` defines it. A store that creates its tables and
finds no counters (a table from an older immortus) creates them and counts the rows once;
with ``create_table=False`` the migration creates them, and fills them with ``INSERT INTO
immortus_jobs_counts SELECT COALESCE(job_class, ''), state, COUNT(*) FROM immortus_jobs GROUP
BY 1, 2``.

Times are UTC epoch seconds, taken from the clock of the process that writes.

A table made by an older immortus lacks some of the columns added since: ``alive_until``
(workers' leases), then ``retry_at``, ``cancel_requested_at`` and ``history`` (the job's
history, JSON, read only by :meth:`SQLStore.history`), then ``group_id`` (its group). The
store adds them on first use (``ALTER TABLE ... ADD COLUMN``) unless ``create_table=False``; a
migration then adds them, all nullable, with the types above.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, ClassVar, Final, Self, TypeVar, cast

from immortus.exceptions import MissingDependency, StoreError, StoreUnavailable

try:
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.dialects import mysql
    from sqlalchemy.engine import URL, Connection, Engine
except ImportError as exc:
    raise MissingDependency("SQLAlchemy", "sql") from exc

from immortus.grouping import GroupStatus
from immortus.status import HistoryEntry, JobStatus, State
from immortus.stores import notify, notify_postgres, records, sql_counts, sql_groups
from immortus.stores.base import (
    DEFAULT_TTL,
    Cursor,
    JobPage,
    Store,
    check_beat,
    check_page_size,
)
from immortus.stores.counting import Tally, change, gone
from immortus.stores.group_counts import Member, running_of
from immortus.stores.sql_engine import engine_of, reason, unreachable, where
from immortus.stores.sql_reads import THROUGH_ENGINE, KeptReads
from immortus.strategy import ChangeSource
from immortus.transitions import Event
from immortus.validation import check_group_id, check_job_id

__all__ = ["SQLStore", "jobs_table"]

logger = logging.getLogger("immortus")

_T = TypeVar("_T")

#: How many passes creating the tables may make while other processes create them too.
_CREATE_TRIES: Final = 5
#: How many times ``record()`` runs its transaction when it loses a race to another writer.
RECORD_ATTEMPTS: Final = 5
#: Ids per ``IN (...)`` query in ``get_many`` and ``beat``.
CHUNK: Final = 500
#: Rows ``reap_lost`` locks and rewrites per transaction.
REAP_BATCH: Final = 500
#: Rows ``prune`` locks and deletes per transaction.
PRUNE_BATCH: Final = 1000
#: Columns added since the first table layout, which ``create_table`` adds to an older table.
_ADDED_COLUMNS: Final = ("alive_until", "retry_at", "cancel_requested_at", "history", "group_id")
# Dialects without row locks: ``record()`` takes the database's write lock with a no-op UPDATE.
_LOCK_BY_WRITING: Final = frozenset({"sqlite"})
_MOMENTS: Final = ("enqueued", "started", "finished", "updated")


def jobs_table(metadata: sa.MetaData, name: str = "immortus_jobs") -> sa.Table:
    """Return the table :class:`SQLStore` keeps records in, defined on ``metadata``.

    Add it to an application's own metadata to create it with the application's migrations.
    """
    job_id = sa.String(255).with_variant(
        mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql", "mariadb"
    )
    return sa.Table(
        name,
        metadata,
        sa.Column("job_id", job_id, primary_key=True),
        sa.Column("job_class", sa.String(255)),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("progress_current", sa.Double),
        sa.Column("progress_total", sa.Double),
        sa.Column("progress_message", sa.Text),
        sa.Column("error_type", sa.String(255)),
        sa.Column("error_message", sa.Text),
        sa.Column("error_traceback", sa.Text),
        sa.Column("meta", sa.Text),
        *(sa.Column(f"{moment}_at", sa.Double) for moment in _MOMENTS),
        sa.Column("alive_until", sa.Double),
        sa.Column("created", sa.Double, nullable=False),
        sa.Column("expires", sa.Double),
        sa.Column("retry_at", sa.Double),
        sa.Column("cancel_requested_at", sa.Double),
        sa.Column("history", sa.Text),
        sa.Column("group_id", sa.String(255)),
        sa.Index(f"ix_{name}_created", "created", "job_id"),
        sa.Index(f"ix_{name}_state_created", "state", "created", "job_id"),
        sa.Index(f"ix_{name}_expires", "expires"),
    )


def _lost_race(exc: sa_exc.DBAPIError) -> bool:
    """Whether a transaction failed only because another writer got there first."""
    if isinstance(exc, sa_exc.IntegrityError):  # a concurrent INSERT of the same new job
        return True
    code = getattr(exc.orig, "sqlstate", None)  # psycopg: serialization failure, deadlock
    if code in ("40001", "40P01"):
        return True
    args: tuple[Any, ...] = getattr(exc.orig, "args", ())
    return bool(args) and args[0] == 1213  # MySQL / MariaDB: deadlock, try again


class SQLStore(Store):
    """Keeps records in one table of a SQL database, through a SQLAlchemy engine.

    ``engine_or_url`` is an :class:`~sqlalchemy.engine.Engine` (which the application keeps
    and disposes) or a SQLAlchemy URL (the store makes an engine with ``pool_pre_ping`` and
    disposes it on :meth:`close`). ``postgres://`` and ``postgresql://`` without a driver use
    psycopg 3. ``table_name`` names the table; with ``create_table=False`` the store never
    issues DDL (see the module docstring for the table to create). Nothing connects before the
    first operation. Besides what each method lists, any operation raises
    :class:`~immortus.exceptions.StoreError` when the database refuses a statement (a missing
    table with ``create_table=False``, missing permissions).

    On PostgreSQL through psycopg, :meth:`get` runs on up to
    :data:`~immortus.stores.sql_reads.KEPT` connections the store keeps beside the engine's pool,
    without a ping per lookup (:mod:`immortus.stores.sql_reads`); :meth:`close` closes them.

    Raises:
        InvalidStoreURL: the URL is malformed or names a dialect SQLAlchemy does not know.
        MissingDependency: the URL's database driver is not installed.
    """

    supports_heartbeat: ClassVar[bool] = True
    keeps_history: ClassVar[bool] = True
    supports_counts: ClassVar[bool] = True
    supports_groups: ClassVar[bool] = True

    def __init__(
        self,
        engine_or_url: Engine | URL | str,
        *,
        ttl: float | timedelta | None = DEFAULT_TTL,
        table_name: str = "immortus_jobs",
        create_table: bool = True,
    ) -> None:
        super().__init__(ttl=ttl)
        #: The engine every operation checks a connection out of.
        self.engine: Engine
        self.engine, self._owns_engine = engine_of(engine_or_url)
        #: The table of records (see :func:`jobs_table`).
        self.table: sa.Table = jobs_table(sa.MetaData(), table_name)
        #: The dashboard's counters (see :func:`~immortus.stores.sql_counts.counter_tables`).
        self.counters = sql_counts.counter_tables(self.table.metadata, table_name)
        self._table_ready = not create_table
        # Whether the counter tables exist: known once the store made its tables, else looked
        # up on first use (a migration may not have created them yet).
        self._counting: bool | None = True if create_table else None
        #: Each group's counters (see :func:`~immortus.stores.sql_groups.group_table`).
        self.groups = sql_groups.group_table(self.table.metadata, table_name)
        # Whether the groups' table exists: looked up as the counter tables are.
        self._grouping: bool | None = True if create_table else None
        self._ddl_lock = threading.Lock()
        self._where = where(self.engine.url)
        # get()'s connections, kept beside the engine's pool (immortus.stores.sql_reads).
        self._kept_reads = (
            KeptReads(self.engine, self._get_query) if KeptReads.fits(self.engine) else None
        )
        self._lock_by_writing = self.engine.dialect.name in _LOCK_BY_WRITING
        # FOR UPDATE must read the latest commit; SQLite's level is the one with transactions.
        self._isolation = "SERIALIZABLE" if self._lock_by_writing else "READ COMMITTED"
        #: PostgreSQL: the channel each write notifies with the job's id, in its transaction
        #: (:mod:`immortus.stores.notify_postgres`); ``None`` elsewhere.
        self.change_channel: str | None = (
            f"{table_name}_changes" if self.engine.dialect.name == "postgresql" else None
        )

    @classmethod
    def from_url(cls, url: str, *, ttl: float | timedelta | None = DEFAULT_TTL) -> Self:
        """Open the store a SQLAlchemy URL names; see :class:`SQLStore` for what it raises."""
        return cls(url, ttl=ttl)

    @property
    def location(self) -> str:
        """The database URL (no password) and the table; see :attr:`Store.location`."""
        return f"{self._where} {self.table.name}"

    def record(self, event: Event) -> JobStatus | None:
        """Apply ``event`` in one transaction that locks the job's row; see :meth:`Store.record`.

        The transaction runs at READ COMMITTED whatever the engine's default, so the lock
        always reads the latest committed row (SQLite has no row locks: a no-op ``UPDATE``
        takes the database's write lock first). One that loses a race (two processes creating
        the same job, a deadlock) is run again, up to :data:`RECORD_ATTEMPTS` times.
        """
        return self._transact(lambda conn: self._record_in(conn, event))

    def _transact(self, work: Callable[[Connection], _T]) -> _T:
        """Run ``work`` in one transaction at the store's isolation level.

        A transaction that loses a race is run again, up to :data:`RECORD_ATTEMPTS` times.
        """
        with self._errors():
            self._ensure_table()
            self._ensure_counting()
            attempt = 1
            while True:
                try:
                    with self.engine.connect() as conn:
                        conn.execution_options(isolation_level=self._isolation)
                        with conn.begin():
                            return work(conn)
                except sa_exc.DBAPIError as exc:
                    if attempt >= RECORD_ATTEMPTS or not _lost_race(exc):
                        raise
                    attempt += 1

    def _record_in(self, conn: Connection, event: Event) -> JobStatus | None:
        table, key = self.table, self.table.c.job_id == event.job_id
        if self._lock_by_writing:
            conn.execute(sa.update(table).where(key).values(expires=table.c.expires))
        locked = sa.select(table).where(key).with_for_update()
        row = cast("Mapping[str, Any] | None", conn.execute(locked).mappings().first())
        now = time.time()
        current, lease = None, None
        if row is not None and (row["expires"] is None or row["expires"] > now):
            current, lease = records.decode(row), records.lease_of(row)
        outcome = records.advance(current, lease, event, now)
        if outcome is None:
            return None
        created = now if row is None or current is None else row["created"]
        pending = sql_counts.Pending()
        self._write(
            conn, row, outcome, created=created, now=now, renewed=current is None, pending=pending
        )
        self._flush(conn, pending)
        return None if outcome.status is current else outcome.status  # else: a lease only

    def _write(
        self,
        conn: Connection,
        row: Mapping[str, Any] | None,
        outcome: records.Outcome,
        *,
        created: float,
        now: float,
        pending: sql_counts.Pending,
        renewed: bool = False,
    ) -> None:
        """Write ``outcome`` over ``row`` (``None``: insert a new one), changed columns only.

        An expired row is ``renewed`` in place: a new ``created``, no history, no cancel request.
        What the write does to the counters is added to ``pending``, which the caller flushes
        in the same transaction.
        """
        before = None if row is None or renewed else records.decode(row)
        if row is not None and renewed:
            pending.add(gone(row["job_class"], State(row["state"]), records.member_of(row)))
        if outcome.status is not before:
            pending.add(change(before, outcome.status))
        values = records.encode(
            outcome.status,
            created=created,
            expires=self.expires_at(now),
            alive_until=outcome.alive_until,
            kept=None if renewed else row,
            entries=outcome.entries,
        )
        if row is None:
            write: sa.Insert | sa.Update = sa.insert(self.table).values(values)
        elif changes := records.changed(row, values):
            key = self.table.c.job_id == row["job_id"]
            write = sa.update(self.table).where(key).values(changes)
        else:
            return
        if self.change_channel is not None:  # the notice leaves with the commit
            write = write.returning(sa.func.pg_notify(self.change_channel, outcome.status.job_id))
        conn.execute(write)

    def get(self, job_id: str) -> JobStatus | None:
        """Return the job's status in one indexed query; see :meth:`Store.get`."""
        check_job_id(job_id)
        now = time.time()
        params = {"job_id": job_id, "now": now}
        if self._kept_reads is not None:
            try:  # what _errors does, inline: a context manager costs µs a call
                self._ensure_table()
                row = self._kept_reads.fetch_one(params)
            except sa_exc.SQLAlchemyError as exc:
                raise self._error(exc) from exc
            if row is not THROUGH_ENGINE:
                return None if row is None else records.decode_read(row, now)
        rows = self._read(self._get_query, params)
        return records.decode(rows[0], now=now) if rows else None

    def history(self, job_id: str) -> tuple[HistoryEntry, ...]:
        """Return the job's history in one indexed query; see :meth:`Store.history`."""
        check_job_id(job_id)
        now = time.time()
        query = sa.select(self.table).where(self.table.c.job_id == job_id, self._live(now))
        rows = self._read(query)
        return records.history_of(rows[0], now) if rows else ()

    def request_cancel(self, job_id: str) -> bool:
        """Record a cancel request on the job's live, unended row, locked ``FOR UPDATE``.

        See :class:`~immortus.cancel_requests.CancelRequestStore`.
        """
        check_job_id(job_id)

        def request(conn: Connection) -> bool:
            table, key = self.table, self.table.c.job_id == job_id
            if self._lock_by_writing:
                conn.execute(sa.update(table).where(key).values(expires=table.c.expires))
            now = time.time()
            locked = sa.select(table).where(key, self._live(now)).with_for_update()
            row = cast("Mapping[str, Any] | None", conn.execute(locked).mappings().first())
            seen = None if row is None else records.decode(row, now=now)
            fields = records.cancel_request(row, seen, now)
            if fields:
                conn.execute(sa.update(table).where(key).values(fields))
            return fields is not None

        return self._transact(request)

    def cancel_requested(self, job_id: str) -> bool:
        """Tell whether the job's live row carries a cancel request (one indexed query)."""
        check_job_id(job_id)
        columns = self.table.c
        query = sa.select(columns.cancel_requested_at).where(
            columns.job_id == job_id, self._live(time.time())
        )
        rows = self._read(query)
        return bool(rows) and rows[0]["cancel_requested_at"] is not None

    def get_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Return the known statuses among ``job_ids`` with one ``IN`` query per 500 ids."""
        wanted = list(dict.fromkeys([check_job_id(job_id) for job_id in job_ids]))
        found: dict[str, JobStatus] = {}
        now = time.time()
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            query = self._select_status.where(self.table.c.job_id.in_(chunk), self._live(now))
            for row in self._read(query):
                found[row["job_id"]] = records.decode(row, now=now)
        return {job_id: found[job_id] for job_id in wanted if job_id in found}

    def list_jobs(
        self, *, state: State | None = None, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        """Return recent jobs, newest first, a keyset page a query; see :meth:`Store.list_jobs`."""
        check_page_size(limit)
        after = None if cursor is None else Cursor.decode(cursor)
        columns = self.table.c
        now = time.time()
        query = self._select_status.where(self._live(now))
        if state is not None:
            query = query.where(self._in_state(State.parse(state), now))
        if after is not None:  # (created, job_id) < cursor, spelled so every index can serve it
            query = query.where(
                columns.created <= after.created,
                sa.or_(columns.created < after.created, columns.job_id < after.job_id),
            )
        query = query.order_by(columns.created.desc(), columns.job_id.desc()).limit(limit + 1)
        rows = self._read(query)
        jobs = tuple(records.decode(row, now=now) for row in rows[:limit])
        last = rows[limit - 1] if len(rows) > limit else None
        next_cursor = None if last is None else Cursor(last["created"], last["job_id"]).encode()
        return JobPage(jobs, next_cursor)

    def prune(self, *, now: datetime | None = None) -> int:
        """Delete expired records, a locked batch per transaction; see :meth:`Store.prune`.

        Each batch takes its records off the counters in the same transaction.
        """
        moment = time.time() if now is None else now.timestamp()
        columns = self.table.c

        def prune_batch(conn: Connection) -> int:
            expired = (
                sa.select(
                    columns.job_id,
                    columns.job_class,
                    columns.state,
                    columns.group_id,
                    columns.progress_current,
                    columns.progress_total,
                )
                .where(columns.expires <= moment)
                .limit(PRUNE_BATCH)
                .with_for_update()
            )
            rows = conn.execute(expired).all()
            pending = sql_counts.Pending()
            for _, job_class, state, group_id, current, total in rows:
                member = None
                if group_id is not None:
                    share = running_of(State(state), current, total)
                    member = Member(group_id, State(state), share)
                pending.add(gone(job_class, State(state), member))
            ids = [row[0] for row in rows]
            if ids:
                deleted = sa.delete(self.table).where(columns.job_id.in_(ids))
                conn.execute(deleted.where(columns.expires <= moment))
            self._flush(conn, pending)
            if len(rows) < PRUNE_BATCH:
                sql_counts.prune_ended(conn, self.counters, time.time())
            return len(rows)

        total = 0
        while True:
            pruned = self._transact(prune_batch)
            total += pruned
            if pruned < PRUNE_BATCH:
                return total

    def group(self, group_id: str) -> GroupStatus | None:
        """Return the group's answer from its one row; see :meth:`Store.group`."""
        check_group_id(group_id)
        return self._transact(lambda conn: sql_groups.read(conn, self.groups, group_id))

    def tally(self, *, since: datetime) -> Tally:
        """Return the counters, ``ended`` from ``since`` on; see :mod:`immortus.stores.counting`.

        Three small reads in one transaction, whatever the number of jobs; without the counter
        tables (``create_table=False`` and a migration that did not create them), a count of
        every row instead.
        """

        def read(conn: Connection) -> Tally:
            if self._counting:
                return sql_counts.read(conn, self.counters, since)
            return sql_counts.count_rows(conn, self.table, since)

        return self._transact(read)

    def beat(self, job_ids: Sequence[str], alive_until: datetime) -> int:
        """Extend the running jobs' leases with one ``UPDATE`` per 500 ids, in one transaction.

        See :meth:`Store.beat`.
        """
        ids, lease = check_beat(job_ids, alive_until)
        if not ids:
            return 0
        columns = self.table.c

        def extend(conn: Connection) -> int:
            now = time.time()
            touched = 0
            pending = sql_counts.Pending()
            for start in range(0, len(ids), CHUNK):
                statement = (
                    sa.update(self.table)
                    .where(
                        columns.job_id.in_(ids[start : start + CHUNK]),
                        columns.state == State.STARTED.value,
                        self._live(now),
                    )
                    .values(alive_until=lease, expires=self.expires_at(now))
                )
                touched += conn.execute(statement).rowcount
                reaped = (
                    sa.select(self.table)
                    .where(
                        columns.job_id.in_(ids[start : start + CHUNK]),
                        columns.state == State.LOST.value,
                        columns.error_type == records.LOST_ERROR_TYPE,
                        self._live(now),
                    )
                    .with_for_update()
                )
                rows = cast("Sequence[Mapping[str, Any]]", conn.execute(reaped).mappings().all())
                for row in rows:
                    outcome = records.revive(records.decode(row), lease, now)
                    if outcome is not None:
                        created = row["created"]
                        self._write(conn, row, outcome, created=created, now=now, pending=pending)
                        touched += 1
            self._flush(conn, pending)
            return touched

        return self._transact(extend)

    def reap_lost(self, *, now: datetime | None = None) -> int:
        """Record ``lost`` for running jobs whose lease ran out, a locked batch at a time.

        Each batch is selected ``FOR UPDATE`` and rewritten in one transaction, so a heartbeat
        or an event landing meanwhile is seen and no other reaper counts the same job. See
        :meth:`Store.reap_lost`.
        """
        moment = time.time() if now is None else now.timestamp()
        columns = self.table.c
        total = 0

        def reap_batch(conn: Connection) -> tuple[int, int]:
            clock = time.time()
            due = sa.and_(
                columns.state == State.STARTED.value,
                columns.alive_until <= moment,
                self._live(clock),
            )
            if self._lock_by_writing:
                conn.execute(sa.update(self.table).where(due).values(expires=columns.expires))
            query = sa.select(self.table).where(due).limit(REAP_BATCH).with_for_update()
            rows = cast("Sequence[Mapping[str, Any]]", conn.execute(query).mappings().all())
            reaped = 0
            pending = sql_counts.Pending()
            for row in rows:
                outcome = records.reap(records.decode(row), records.lease_of(row), moment)
                if outcome is not None:
                    created = row["created"]
                    self._write(conn, row, outcome, created=created, now=clock, pending=pending)
                    reaped += 1
            self._flush(conn, pending)
            return len(rows), reaped

        while True:
            seen, reaped = self._transact(reap_batch)
            total += reaped
            if seen < REAP_BATCH:
                return total

    def change_source(self) -> ChangeSource:
        """Return the store's changes: pushed by ``NOTIFY`` on PostgreSQL with psycopg 3.

        Its watches share one ``LISTEN`` connection per store and process, opened by the first
        (:mod:`immortus.stores.notify_postgres`). Other databases and drivers are polled.
        """
        channel = self.change_channel
        if channel is None or self.engine.dialect.driver != "psycopg":
            return super().change_source()

        def make(store: Store) -> notify_postgres.PostgresSource:
            listener = notify_postgres.PostgresListener(self.engine, channel, self.location)
            return notify_postgres.PostgresSource(listener)

        return notify.shared(self, make)

    def close(self) -> None:
        """Close the connections kept for lookups; dispose of the engine if the store made it."""
        if self._kept_reads is not None:
            self._kept_reads.close()
        if self._owns_engine:
            self.engine.dispose()

    # -- helpers ---------------------------------------------------------------------------

    def _live(self, now: float) -> sa.ColumnElement[bool]:
        """The condition that keeps only rows unexpired at ``now``."""
        expires = self.table.c.expires
        return sa.or_(expires.is_(None), expires > now)

    @functools.cached_property
    def _select_status(self) -> sa.Select[Any]:
        """``SELECT`` of the columns a status read needs: never the history."""
        return sa.select(*(self.table.c[name] for name in records.READ_COLUMNS))

    @functools.cached_property
    def _get_query(self) -> sa.Select[Any]:
        """:meth:`get`'s query, built once: its ``job_id`` and ``now`` are bound per call.

        Building and hashing a new statement at every lookup cost as much as the round trip.
        """
        columns = self.table.c
        expires = columns.expires
        now = sa.bindparam("now", type_=sa.Double)
        return self._select_status.where(
            columns.job_id == sa.bindparam("job_id", type_=columns.job_id.type),
            sa.or_(expires.is_(None), expires > now),
        )

    def _in_state(self, state: State, now: float) -> sa.ColumnElement[bool]:
        """The condition that keeps the rows that read as ``state`` at ``now`` (records.lapse)."""
        columns = self.table.c
        if state is State.STARTED:
            alive = sa.or_(columns.alive_until.is_(None), columns.alive_until > now)
            return sa.and_(columns.state == State.STARTED.value, alive)
        if state is State.LOST:
            lapsed = sa.and_(columns.state == State.STARTED.value, columns.alive_until <= now)
            return sa.or_(columns.state == State.LOST.value, lapsed)
        return columns.state == state.value

    def _read(
        self, query: sa.Select[Any], params: Mapping[str, Any] | None = None
    ) -> Sequence[Mapping[str, Any]]:
        with self._errors():
            self._ensure_table()
            with self.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")  # one query: no BEGIN
                found = conn.execute(query, params).mappings().all()
                return cast("Sequence[Mapping[str, Any]]", found)

    def _ensure_table(self) -> None:
        """Create the table on first use, unless told not to."""
        if self._table_ready:
            return
        with self._ddl_lock:
            with self.engine.connect() as conn:
                counted = sa.inspect(conn).has_table(self.counters.counts.name)
                grouped = sa.inspect(conn).has_table(self.groups.name)
            self._create_tables()
            self._add_missing_columns()
            if not counted:
                self._rebuild_counters()
            if not grouped:
                self._rebuild_groups()
            self._table_ready = True

    def _create_tables(self) -> None:
        """Create the tables that are missing, while other processes may be creating them.

        A ``CREATE`` that fails because another process made that table a moment ago is
        followed by another pass (each skips what exists), so no table is left to the other
        process's pace: the last pass ends with every table there, or raises its error.
        """
        for tries_left in reversed(range(_CREATE_TRIES)):
            try:
                self.table.metadata.create_all(self.engine, checkfirst=True)
            except sa_exc.DBAPIError:
                if not tries_left:
                    raise
            else:
                return

    def _ensure_counting(self) -> None:
        """Look up once whether a table the application made has its counter tables."""
        if self._counting is not None:
            return
        with self.engine.connect() as conn:
            self._counting = sa.inspect(conn).has_table(self.counters.counts.name)
            self._grouping = sa.inspect(conn).has_table(self.groups.name)
        if not self._grouping:
            logger.warning(
                "immortus: the SQL store's table %s has no groups' table %s: writes keep no "
                "group counters and group reads fail; create it in a migration (see "
                "immortus.stores.sql)",
                self.table.name,
                self.groups.name,
            )
        if not self._counting:
            logger.warning(
                "immortus: the SQL store's table %s has no counter table %s: writes keep no "
                "counters and the dashboard counts the rows at each read; create the counter "
                "tables in a migration (see immortus.stores.sql)",
                self.table.name,
                self.counters.counts.name,
            )

    def _flush(self, conn: Connection, pending: sql_counts.Pending) -> None:
        """Write a transaction's counter changes, then its groups', when their tables exist."""
        if self._counting:
            pending.flush(conn, self.counters)
        if pending.groups and self._grouping:
            sql_groups.add(conn, self.groups, list(pending.groups.values()))

    def _rebuild_counters(self) -> None:
        """Fill the counters from the rows once (a table from before them): a write lock held.

        On PostgreSQL the counts table is locked first, so writers' changes wait for the
        rebuild (and land on top of it) and a second rebuild starts from the first's result.
        """
        with self.engine.connect() as conn:
            conn.execution_options(
                isolation_level="READ COMMITTED" if not self._lock_by_writing else "SERIALIZABLE"
            )
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    name = self.engine.dialect.identifier_preparer.format_table(
                        self.counters.counts
                    )
                    conn.exec_driver_sql(f"LOCK TABLE {name} IN EXCLUSIVE MODE")
                sql_counts.rebuild(conn, self.table, self.counters, time.time())

    def _rebuild_groups(self) -> None:
        """Fill the groups' table from the rows once (a table from before groups).

        On PostgreSQL the groups' table is locked first, so writers' changes wait for it.
        """
        with self.engine.connect() as conn:
            conn.execution_options(
                isolation_level="READ COMMITTED" if not self._lock_by_writing else "SERIALIZABLE"
            )
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    name = self.engine.dialect.identifier_preparer.format_table(self.groups)
                    conn.exec_driver_sql(f"LOCK TABLE {name} IN EXCLUSIVE MODE")
                sql_groups.rebuild(conn, self.table, self.groups)

    def _add_missing_columns(self) -> None:
        """Add the columns a table made by an older immortus lacks (:data:`_ADDED_COLUMNS`)."""
        with self.engine.connect() as conn:
            present = {column["name"] for column in sa.inspect(conn).get_columns(self.table.name)}
        for name in _ADDED_COLUMNS:
            if name in present:
                continue
            column = self.table.c[name]
            kind = column.type.compile(dialect=self.engine.dialect)
            table = self.engine.dialect.identifier_preparer.format_table(self.table)
            try:
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
            except sa_exc.DBAPIError:
                # Another process may have added it at the same moment: fine if it is there.
                with self.engine.connect() as conn:
                    columns = sa.inspect(conn).get_columns(self.table.name)
                    if name not in {column["name"] for column in columns}:
                        raise

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate SQLAlchemy's exceptions into immortus's, without the URL's password."""
        try:
            yield
        except sa_exc.SQLAlchemyError as exc:
            raise self._error(exc) from exc

    def _error(self, exc: sa_exc.SQLAlchemyError) -> StoreError:
        """The error to raise for ``exc`` (chain it: ``raise ... from exc``)."""
        why = reason(exc, self.engine.url)
        if unreachable(exc):
            return StoreUnavailable(f"cannot reach the SQL store at {self._where}: {why}")
        return StoreError(f"the SQL store at {self._where} failed: {why}")
