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
        created DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION
    );
    CREATE INDEX ix_immortus_jobs_created ON immortus_jobs (created, job_id);
    CREATE INDEX ix_immortus_jobs_state_created ON immortus_jobs (state, created, job_id);
    CREATE INDEX ix_immortus_jobs_expires ON immortus_jobs (expires);

Times are UTC epoch seconds, taken from the clock of the process that writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, ClassVar, Final, Self, cast

from immortus.exceptions import InvalidStoreURL, MissingDependency, StoreError, StoreUnavailable

try:
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.dialects import mysql
    from sqlalchemy.engine import URL, Connection, Engine
except ImportError as exc:
    raise MissingDependency("SQLAlchemy", "sql") from exc

from immortus.status import JobStatus, State
from immortus.stores import records
from immortus.stores.base import DEFAULT_TTL, Cursor, JobPage, Store, check_page_size
from immortus.transitions import Event, apply
from immortus.validation import check_job_id

__all__ = ["SQLStore", "jobs_table"]

#: How many times ``record()`` runs its transaction when it loses a race to another writer.
RECORD_ATTEMPTS: Final = 5
#: Ids per ``IN (...)`` query in ``get_many``.
CHUNK: Final = 500
#: Seconds to wait for a new PostgreSQL connection unless the URL sets ``connect_timeout``.
CONNECT_TIMEOUT: Final = 10
# The ``dialect+driver`` pairs an immortus extra installs; other drivers come from the user.
_EXTRAS: Final = {
    ("postgresql", "psycopg"): "postgresql",
    ("mysql", "pymysql"): "mysql",
    ("mariadb", "pymysql"): "mysql",
}
# Dialects without row locks: ``record()`` takes the database's write lock with a no-op UPDATE.
_LOCK_BY_WRITING: Final = frozenset({"sqlite"})
_MOMENTS: Final = ("enqueued", "started", "finished", "updated")
_UNREACHABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # no connection free in the pool
)


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
        sa.Column("created", sa.Double, nullable=False),
        sa.Column("expires", sa.Double),
        sa.Index(f"ix_{name}_created", "created", "job_id"),
        sa.Index(f"ix_{name}_state_created", "state", "created", "job_id"),
        sa.Index(f"ix_{name}_expires", "expires"),
    )


def _create_engine(url: str | URL) -> Engine:
    """Build an engine for ``url``; a driverless PostgreSQL URL gets psycopg 3."""
    try:
        parsed = sa.make_url(url)
    except (sa_exc.ArgumentError, ValueError) as exc:
        raise InvalidStoreURL(f"malformed SQL store URL: {exc}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgres", "postgresql"):
        parsed = parsed.set(drivername=f"postgresql+{driver or 'psycopg'}")
    options: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    try:
        return sa.create_engine(parsed, **options)
    except ImportError as exc:
        pair = (parsed.get_backend_name(), parsed.get_driver_name())
        raise MissingDependency(exc.name or pair[1], _EXTRAS.get(pair, "sql")) from exc
    except sa_exc.ArgumentError as exc:
        where = parsed.render_as_string(hide_password=True)
        raise InvalidStoreURL(f"SQLAlchemy cannot use {where}: {exc}") from None


def _lost_race(exc: sa_exc.DBAPIError) -> bool:
    """Whether a transaction failed only because another writer got there first."""
    if isinstance(exc, sa_exc.IntegrityError):  # a concurrent INSERT of the same new job
        return True
    code = getattr(exc.orig, "sqlstate", None)  # psycopg: serialization failure, deadlock
    if code in ("40001", "40P01"):
        return True
    args: tuple[Any, ...] = getattr(exc.orig, "args", ())
    return bool(args) and args[0] == 1213  # MySQL / MariaDB: deadlock, try again


def _unreachable(exc: sa_exc.SQLAlchemyError) -> bool:
    """Whether ``exc`` means the database cannot be reached (or is locked) right now."""
    if not isinstance(exc, _UNREACHABLE):
        return False
    # sqlite3 reports a missing table as an OperationalError too: its code is plain SQLITE_ERROR.
    code = getattr(getattr(exc, "orig", None), "sqlite_errorcode", None)
    return not isinstance(code, int) or code & 0xFF != 1


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

    Raises:
        InvalidStoreURL: the URL is malformed or names a dialect SQLAlchemy does not know.
        MissingDependency: the URL's database driver is not installed.
    """

    schemes: ClassVar[tuple[str, ...]] = ("postgresql", "postgres", "mysql", "mariadb")
    persistent: ClassVar[bool] = True
    batches_reads: ClassVar[bool] = True

    def __init__(
        self,
        engine_or_url: Engine | URL | str,
        *,
        ttl: float | timedelta | None = DEFAULT_TTL,
        table_name: str = "immortus_jobs",
        create_table: bool = True,
    ) -> None:
        super().__init__(ttl=ttl)
        self._owns_engine = not isinstance(engine_or_url, Engine)
        #: The engine every operation checks a connection out of.
        self.engine: Engine = (
            engine_or_url if isinstance(engine_or_url, Engine) else _create_engine(engine_or_url)
        )
        #: The table of records (see :func:`jobs_table`).
        self.table: sa.Table = jobs_table(sa.MetaData(), table_name)
        self._table_ready = not create_table
        self._ddl_lock = threading.Lock()
        url = self.engine.url
        secrets = (url.password, url.query.get("password"))  # libpq also takes ?password=
        self._secrets = [secret for secret in secrets if isinstance(secret, str) and secret]
        if "password" in url.query:
            url = url.update_query_dict({"password": "***"})
        self._where = url.render_as_string(hide_password=True)
        self._lock_by_writing = self.engine.dialect.name in _LOCK_BY_WRITING
        # FOR UPDATE must read the latest commit; SQLite's level is the one with transactions.
        self._isolation = "SERIALIZABLE" if self._lock_by_writing else "READ COMMITTED"

    @classmethod
    def from_url(cls, url: str, *, ttl: float | timedelta | None = DEFAULT_TTL) -> Self:
        """Open the store a SQLAlchemy URL names; see :class:`SQLStore` for what it raises."""
        return cls(url, ttl=ttl)

    def record(self, event: Event) -> JobStatus | None:
        """Apply ``event`` in one transaction that locks the job's row; see :meth:`Store.record`.

        The transaction runs at READ COMMITTED whatever the engine's default, so the lock
        always reads the latest committed row (SQLite has no row locks: a no-op ``UPDATE``
        takes the database's write lock first). One that loses a race (two processes creating
        the same job, a deadlock) is run again, up to :data:`RECORD_ATTEMPTS` times.

        Raises:
            StoreUnavailable: the database cannot be reached; nothing was written.
            CorruptRecord: the job's stored row cannot be decoded; it is left untouched.
        """
        with self._errors():
            self._ensure_table()
            attempt = 1
            while True:
                try:
                    with self.engine.connect() as conn:
                        conn.execution_options(isolation_level=self._isolation)
                        with conn.begin():
                            return self._record_in(conn, event)
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
        current, created = None, now
        if row is not None and (row["expires"] is None or row["expires"] > now):
            current, created = records.decode(row), row["created"]
        status = apply(current, event)
        if status is None:
            return None
        expires = self.expires_at(now)
        values = records.encode(status, created=created, expires=expires)
        if row is None:
            conn.execute(sa.insert(table).values(values))
        elif changes := records.changed(row, values):  # an expired row is renewed in place
            conn.execute(sa.update(table).where(key).values(changes))
        return status

    def get(self, job_id: str) -> JobStatus | None:
        """Return the job's status in one indexed query; see :meth:`Store.get`.

        Raises:
            InvalidJobId: ``job_id`` is malformed.
            StoreUnavailable: the database cannot be reached.
            CorruptRecord: the job's row cannot be decoded.
        """
        check_job_id(job_id)
        query = sa.select(self.table).where(self.table.c.job_id == job_id, self._live())
        rows = self._read(query)
        return records.decode(rows[0]) if rows else None

    def get_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Return the known statuses among ``job_ids`` with one ``IN`` query per 500 ids.

        Raises:
            InvalidJobId: an id is malformed (checked before any query).
            StoreUnavailable: the database cannot be reached.
            CorruptRecord: a row cannot be decoded.
        """
        wanted = list(dict.fromkeys([check_job_id(job_id) for job_id in job_ids]))
        found: dict[str, JobStatus] = {}
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            query = sa.select(self.table).where(self.table.c.job_id.in_(chunk), self._live())
            for row in self._read(query):
                found[row["job_id"]] = records.decode(row)
        return {job_id: found[job_id] for job_id in wanted if job_id in found}

    def list_jobs(
        self, *, state: State | None = None, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        """Return recent jobs, newest first, a keyset page at a time; see :meth:`Store.list_jobs`.

        Raises:
            InvalidInput: ``limit`` is out of range, ``cursor`` is malformed or ``state`` is
                not a state.
            StoreUnavailable: the database cannot be reached.
            CorruptRecord: a row cannot be decoded.
        """
        check_page_size(limit)
        after = None if cursor is None else Cursor.decode(cursor)
        columns = self.table.c
        query = sa.select(self.table).where(self._live())
        if state is not None:
            query = query.where(columns.state == State.parse(state).value)
        if after is not None:  # (created, job_id) < cursor, spelled so every index can serve it
            query = query.where(
                columns.created <= after.created,
                sa.or_(columns.created < after.created, columns.job_id < after.job_id),
            )
        query = query.order_by(columns.created.desc(), columns.job_id.desc()).limit(limit + 1)
        rows = self._read(query)
        jobs = tuple(records.decode(row) for row in rows[:limit])
        last = rows[limit - 1] if len(rows) > limit else None
        next_cursor = None if last is None else Cursor(last["created"], last["job_id"]).encode()
        return JobPage(jobs, next_cursor)

    def prune(self, *, now: datetime | None = None) -> int:
        """Delete expired records with one ``DELETE``; see :meth:`Store.prune`.

        Raises:
            StoreUnavailable: the database cannot be reached.
        """
        moment = time.time() if now is None else now.timestamp()
        with self._errors():
            self._ensure_table()
            with self.engine.begin() as conn:
                expired = sa.delete(self.table).where(self.table.c.expires <= moment)
                return conn.execute(expired).rowcount

    def close(self) -> None:
        """Dispose of the engine's connections if the store made the engine."""
        if self._owns_engine:
            self.engine.dispose()

    # -- helpers ---------------------------------------------------------------------------

    def _live(self) -> sa.ColumnElement[bool]:
        """The condition that keeps only unexpired rows."""
        expires = self.table.c.expires
        return sa.or_(expires.is_(None), expires > time.time())

    def _read(self, query: sa.Select[Any]) -> Sequence[Mapping[str, Any]]:
        with self._errors():
            self._ensure_table()
            with self.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")  # one query: no BEGIN
                return cast("Sequence[Mapping[str, Any]]", conn.execute(query).mappings().all())

    def _ensure_table(self) -> None:
        """Create the table on first use, unless told not to."""
        if self._table_ready:
            return
        with self._ddl_lock:
            try:
                self.table.metadata.create_all(self.engine, checkfirst=True)
            except sa_exc.DBAPIError:
                # Another process may have created it at the same moment: fine if it is there.
                with self.engine.connect() as conn:
                    if not sa.inspect(conn).has_table(self.table.name):
                        raise
            self._table_ready = True

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate SQLAlchemy's exceptions into immortus's, without the URL's password."""
        try:
            yield
        except sa_exc.SQLAlchemyError as exc:
            if _unreachable(exc):
                message = f"cannot reach the SQL store at {self._where}: {self._reason(exc)}"
                raise StoreUnavailable(message) from exc
            message = f"the SQL store at {self._where} failed: {self._reason(exc)}"
            raise StoreError(message) from exc

    def _reason(self, exc: sa_exc.SQLAlchemyError) -> str:
        cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
        lines = str(cause).strip().splitlines()
        reason = lines[0] if lines else type(cause).__name__
        for secret in self._secrets:
            reason = reason.replace(secret, "***")
        return reason
