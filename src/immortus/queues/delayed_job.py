"""Rails' Delayed::Job, read from its ``delayed_jobs`` table, with no callbacks.

This is the Delayed::Job strategy of the Ruby gem immortus, with its false positives fixed. A
Python application that shares a database with a Rails application whose ActiveJob jobs are
queued with ``config.active_job.queue_adapter = :delayed_job`` tracks them with
:class:`DelayedJobStrategy` (``immortus.declare("ReportJob", queue="delayed_job")`` or
``immortus.configure(strategy="delayed_job")``). It only reads the table; the Ruby side runs the
jobs. Needs the ``immortus[sql]`` extra (and a driver: ``immortus[postgresql]`` for psycopg).

A job is found by its ActiveJob ``job_id``, which lives only inside the row's YAML ``handler``.
Its state is read from the row:

=========================================================  ====================================
the row                                                    state
=========================================================  ====================================
gone, after the strategy (or the journal) saw it           ``finished``, ``certain=False``,
                                                           ``success`` ``null``
gone, and never seen                                       ``unknown``
``failed_at`` set (``destroy_failed_jobs = false``)        ``failed``, ``last_error``'s first
                                                           line as the error message
``locked_at`` set                                          ``started``
``attempts > 0``, or re-enqueued by ActiveJob's            ``retrying`` (``run_at`` says when
``retry_on`` (``executions > 0`` in the handler)           the next attempt is due)
otherwise                                                  ``created`` (scheduled when
                                                           ``run_at`` is in the future)
=========================================================  ====================================

Delayed::Job deletes a row when its job succeeds, and by default also when its job has failed
for good: a gone row says the job ended, not how, and only for a job that was seen. What a
strategy saw stays in its process unless it has a journal (a Redis:
:mod:`immortus.queues.rails.journal`), which every web process then shares; Rails jobs that
include the Ruby module of the docs write their events there and read exactly, with progress.

Finding the row: by default a ``LIKE`` scan of ``handler`` for the id's line, every candidate
then checked by parsing its handler (so the answer is exact whatever ``LIKE`` matched). On
PostgreSQL, the index :func:`lookup_index_sql` writes turns it into one index look-up; the
strategy finds the index in the catalog (re-checked every ``index_check_interval`` seconds) and
uses it when present. Handlers are never loaded as YAML: :func:`parse_handler` reads the few
plain lines it needs, so nothing in a row can construct an object or run code.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final

from immortus import runtime
from immortus.exceptions import (
    ConfigurationError,
    MissingDependency,
    StoreError,
    StoreUnavailable,
)

try:
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc
except ImportError as exc:
    raise MissingDependency("SQLAlchemy", "sql") from exc

from immortus.queues.rails.journal import DEFAULT_PREFIX, Journal, connect
from immortus.queues.rails.notes import Seen
from immortus.queues.rails.reader import Found, RailsReader
from immortus.status import JobError, JobStatus, State
from immortus.stores.sql_engine import engine_of, reason, unreachable, where
from immortus.validation import check_job_id

if TYPE_CHECKING:
    import redis

__all__ = [
    "DEFAULT_TABLE",
    "JOURNAL_ENV_VAR",
    "LOOKUP_PATTERN",
    "URL_ENV_VAR",
    "DelayedJobStrategy",
    "JobData",
    "configure",
    "jobs_table",
    "lookup_index_sql",
    "parse_handler",
]

#: The environment variable a strategy made without arguments reads its database URL from.
URL_ENV_VAR: Final = "IMMORTUS_DELAYED_JOB_URL"
#: The environment variable naming the Redis of the journal, when not given nor configured.
JOURNAL_ENV_VAR: Final = "IMMORTUS_DELAYED_JOB_JOURNAL_URL"
#: The table Delayed::Job's migration creates.
DEFAULT_TABLE: Final = "delayed_jobs"
#: The PostgreSQL regular expression that extracts ActiveJob's ``job_id`` from a handler: the
#: ``job_id`` key of ``job_data``, the one key indented by exactly two spaces.
LOOKUP_PATTERN: Final = "\\n  job_id: ['\"]?([^'\"\\n]+)"
#: The error type of a failed job: Delayed::Job keeps the message and backtrace, not the class.
ERROR_TYPE: Final = "DelayedJobError"
#: Ids the index expression extracts exactly: psych writes them on one line, unescaped.
_INDEXABLE_ID: Final = re.compile(r"[!#-&(-\[\]-~]+")
_SQL_PATTERN: Final = "'" + LOOKUP_PATTERN.replace("'", "''") + "'"
_KEY_LINE: Final = re.compile(r"  ([A-Za-z_]\w*):(?: (.*))?")
_DOUBLE_QUOTED: Final = re.compile(r'"(?:[^"\\]|\\.)*"')
_DOUBLE_QUOTED_ESCAPE: Final = re.compile(
    r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)", re.S
)
_ESCAPES: Final = {
    "0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
    "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85",
    "_": "\xa0", "L": "\u2028", "P": "\u2029",
}  # fmt: skip


class DelayedJobSettings:
    """What :func:`configure` set: an :mod:`immortus.runtime` part.

    A reset keeps it, as the queues' installs: it is the application's wiring, which
    ``configure(None)`` forgets.
    """

    def __init__(self) -> None:
        self.configured: dict[str, Any] = {}

    def reset(self) -> None:
        """Keep the setting."""

    def after_fork(self) -> None:
        """Nothing to drop: settings only."""


_configured: Final = runtime.part(DelayedJobSettings).configured


def configure(
    url: str | sa.URL | sa.Engine | None,
    *,
    table_name: str = DEFAULT_TABLE,
    journal: str | None = None,
) -> None:
    """Set what a :class:`DelayedJobStrategy` made without arguments reads.

    ``url`` is the Rails database, ``journal`` the Redis of the journal (optional).

    Call it at start-up, before the first status question (the strategy reads it when it is
    made). ``None`` forgets it (the environment variables apply again).
    """
    _configured.clear()
    if url is not None:
        _configured.update(url=url, table_name=table_name)
    if journal is not None:
        _configured.update(journal=journal)


def lookup_index_sql(
    table_name: str = DEFAULT_TABLE, index_name: str | None = None, *, concurrently: bool = True
) -> str:
    """Return the PostgreSQL DDL of the index that makes :meth:`DelayedJobStrategy.find` fast.

    A b-tree on the ``job_id`` extracted from ``handler``; Rails and Delayed::Job ignore it.
    ``CONCURRENTLY`` builds it without blocking the workers (outside a transaction).
    """
    name = index_name or f"index_{table_name}_on_active_job_id"
    how = "CONCURRENTLY " if concurrently else ""
    return f"CREATE INDEX {how}{name} ON {table_name} ((substring(handler from {_SQL_PATTERN})))"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobData:
    """What :func:`parse_handler` reads from ActiveJob's ``job_data`` in a handler."""

    job_id: str
    job_class: str | None = None
    queue_name: str | None = None
    priority: int | None = None
    executions: int = 0


def _scalar(text: str | None) -> str | None:
    """Decode one single-line YAML scalar; ``None`` for null or anything not a plain string."""
    if text is None or text in ("", "~", "null"):
        return None
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if _DOUBLE_QUOTED.fullmatch(text):
        return _DOUBLE_QUOTED_ESCAPE.sub(_unescape, text[1:-1])
    if text[0] in "'\"!&*|>@`{[%" or " #" in text:  # unclosed, tagged, alias, block, flow...
        return None
    return text.rstrip()


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if len(code) > 1:
        return chr(int(code[1:], 16))
    return _ESCAPES.get(code, match.group(0))


def _integer(text: str | None) -> int | None:
    value = _scalar(text)
    return int(value) if value is not None and re.fullmatch(r"-?\d+", value) else None


def parse_handler(handler: str) -> JobData | None:
    """Read ActiveJob's ``job_data`` from a Delayed::Job handler, without loading YAML.

    Reads only the keys of ``job_data`` (the lines indented by exactly two spaces under the
    top-level ``job_data:`` line) that hold single-line scalars, and decodes them as YAML
    would. Returns ``None`` for a handler that holds no ActiveJob job (a ``.delay`` call, a
    custom payload) or whose ``job_id`` is not a single-line string. Never raises.
    """
    lines = iter(handler.splitlines())
    if not any(line.rstrip() == "job_data:" for line in lines):
        return None
    raw: dict[str, str | None] = {}
    for line in lines:
        if line and not line.startswith(" "):
            break  # the next top-level key: job_data has ended
        match = _KEY_LINE.fullmatch(line)
        if match is not None:
            raw.setdefault(match.group(1), match.group(2))
    job_id = _scalar(raw.get("job_id"))
    if job_id is None:
        return None
    return JobData(
        job_id=job_id,
        job_class=_scalar(raw.get("job_class")),
        queue_name=_scalar(raw.get("queue_name")),
        priority=_integer(raw.get("priority")),
        executions=_integer(raw.get("executions")) or 0,
    )


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _renderings(job_id: str) -> list[str]:
    """The ways psych can write ``job_id:`` with this id on one line: plain, '...', "..."."""
    double = job_id.replace("\\", "\\\\").replace('"', '\\"')
    forms = [job_id, "'" + job_id.replace("'", "''") + "'", f'"{double}"']
    return [f"\n  job_id: {form}\n" for form in dict.fromkeys(forms)]


def _utc(moment: datetime | None) -> datetime | None:
    """Rails writes UTC without a zone (its default ``default_timezone = :utc``)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def jobs_table(metadata: sa.MetaData, name: str = DEFAULT_TABLE) -> sa.Table:
    """Return the ``delayed_jobs`` table as Delayed::Job's Active Record migration creates it.

    Only read: immortus never creates or writes it (tests and benchmarks do).
    """
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("priority", sa.Integer, nullable=False, default=0),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("handler", sa.Text, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("run_at", sa.DateTime),
        sa.Column("locked_at", sa.DateTime),
        sa.Column("failed_at", sa.DateTime),
        sa.Column("locked_by", sa.String(255)),
        sa.Column("queue", sa.String(255)),
        sa.Column("created_at", sa.DateTime),
        sa.Column("updated_at", sa.DateTime),
    )


class DelayedJobStrategy(RailsReader):
    """Tracks ActiveJob jobs queued with Delayed::Job by reading the ``delayed_jobs`` table.

    ``engine_or_url`` is a SQLAlchemy :class:`~sqlalchemy.engine.Engine` (the application keeps
    and disposes it) or URL (``sqlite:///path``, ``postgresql+psycopg://...``; a driverless
    ``postgresql://`` uses psycopg 3). Without it, the strategy uses what :func:`configure` set,
    else the :data:`URL_ENV_VAR` environment variable, so that the finder can make it from the
    name ``"delayed_job"``. Nothing connects before the first question. Statuses carry the
    queue, priority and ``run_at`` (ISO 8601, UTC) and the row's id as ``meta`` keys ``queue``,
    ``priority``, ``run_at`` and ``delayed_job_id``; ``attempts`` counts the attempts made,
    including one running now.

    ``journal`` is a Redis (URL or ``redis.Redis`` made with ``decode_responses=True``) where
    the strategy shares what it saw with every web process, and where the Rails jobs may write
    their events (the exact mode); without it (and without :func:`configure`'s or
    :data:`JOURNAL_ENV_VAR`), what the strategy saw stays in its process.

    Raises:
        ConfigurationError: no URL was given, configured or found in the environment.
        InvalidStoreURL: a URL is malformed.
        MissingDependency: SQLAlchemy, the URL's driver, or redis-py for a journal is missing.
    """

    certain: ClassVar[bool] = False

    def __init__(
        self,
        engine_or_url: str | sa.URL | sa.Engine | None = None,
        *,
        table_name: str | None = None,
        index_check_interval: float = 300.0,
        journal: str | redis.Redis | None = None,
        journal_prefix: str = DEFAULT_PREFIX,
    ) -> None:
        super().__init__()
        journal = journal or _configured.get("journal") or os.environ.get(JOURNAL_ENV_VAR)
        self._journal = (
            None
            if journal is None
            else Journal(
                connect(journal, "Delayed::Job journal") if isinstance(journal, str) else journal,
                prefix=journal_prefix,
            )
        )
        if engine_or_url is None:
            engine_or_url = _configured.get("url") or os.environ.get(URL_ENV_VAR) or None
            table_name = table_name or _configured.get("table_name")
        if engine_or_url is None:
            raise ConfigurationError(
                "DelayedJobStrategy needs the Rails database: pass its URL, call "
                "immortus.queues.delayed_job.configure(url=...) at start-up, or set "
                f"{URL_ENV_VAR}"
            )
        #: The engine every question checks a connection out of.
        self.engine: sa.Engine
        self.engine, self._owns_engine = engine_of(engine_or_url)
        #: The ``delayed_jobs`` table (see :func:`jobs_table`).
        self.table = jobs_table(sa.MetaData(), table_name or DEFAULT_TABLE)
        self.index_check_interval = index_check_interval
        self._postgres = self.engine.dialect.name == "postgresql"
        self._index: str | None = None
        self._index_checked = -float("inf")
        self._index_lock = threading.Lock()
        self._where = where(self.engine.url)
        self._extracted_id: sa.ColumnClause[str] = sa.literal_column(
            f"substring(handler from {_SQL_PATTERN})", sa.Text
        )

    # -- finding rows ----------------------------------------------------------------------

    def lookup_index(self, *, refresh: bool = False) -> str | None:
        """Return the name of the index :func:`lookup_index_sql` makes, if the table has it.

        Asks PostgreSQL's catalog at most every ``index_check_interval`` seconds (at once with
        ``refresh=True``); always ``None`` on other databases.

        Raises:
            StoreUnavailable: the database cannot be reached.
        """
        if not self._postgres:
            return None
        with self._index_lock:
            if refresh or time.monotonic() - self._index_checked >= self.index_check_interval:
                self._index = self._find_index()
                self._index_checked = time.monotonic()
            return self._index

    def _find_index(self) -> str | None:
        target = self.engine.dialect.identifier_preparer.format_table(self.table)
        query = sa.text(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid, 1, false) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = to_regclass(:target) AND i.indisvalid AND i.indisready"
            " AND i.indpred IS NULL AND i.indexprs IS NOT NULL ORDER BY c.relname"
        )
        for name, definition in self._read(query, {"target": target}):
            text = str(definition)
            if "substring" in text.lower() and "handler" in text and _SQL_PATTERN in text:
                return str(name)
        return None

    def find(self, job_id: str) -> Mapping[str, Any] | None:
        """Return the newest ``delayed_jobs`` row of the ActiveJob job ``job_id``, or ``None``.

        The row is a mapping of its columns, plus ``job_data``: its handler's :class:`JobData`.

        The ``find`` of the Ruby gem immortus: through the look-up index when PostgreSQL has
        it, else a ``LIKE`` scan for the id's line. Either way every candidate's handler is
        parsed and only a row whose ``job_data`` holds exactly this ``job_id`` is returned.

        Raises:
            InvalidJobId: ``job_id`` is malformed.
            StoreUnavailable: the database cannot be reached.
            StoreError: the database refused the query (no such table, no permission).
        """
        return self._find_many([check_job_id(job_id)]).get(job_id)

    def _find_many(self, job_ids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        wanted = set(job_ids)
        indexed = [job_id for job_id in wanted if _INDEXABLE_ID.fullmatch(job_id)]
        conditions: list[sa.ColumnElement[bool]] = []
        if indexed and self.lookup_index() is not None:
            conditions.append(self._extracted_id.in_(sorted(indexed)))
            scanned = sorted(wanted - set(indexed))
        else:
            scanned = sorted(wanted)
        handler = self.table.c.handler
        for job_id in scanned:
            conditions += [
                handler.like(f"%{_like_escape(form)}%", escape="\\") for form in _renderings(job_id)
            ]
        query = sa.select(self.table).where(sa.or_(*conditions)).order_by(self.table.c.id)
        found: dict[str, Mapping[str, Any]] = {}
        for row in self._read(query):
            data = parse_handler(row.handler)
            if data is not None and data.job_id in wanted:
                found[data.job_id] = {**row._mapping, "job_data": data}  # the newest wins
        return found

    # -- what the Rails reader asks -------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[Journal | None]:
        yield self._journal

    def _find_in_queue(self, job_ids: list[str]) -> dict[str, Found]:
        found = {}
        for job_id, row in self._find_many(job_ids).items():
            status = self._status(job_id, row)
            seen = {State.FAILED: Seen.FAILED, State.STARTED: Seen.RUNNING}.get(
                status.state, Seen.WAITING
            )
            found[job_id] = Found(status, seen)
        return found

    def _status(self, job_id: str, row: Mapping[str, Any]) -> JobStatus:
        data: JobData = row["job_data"]
        running = row["locked_at"] is not None and row["failed_at"] is None
        error = None
        if row["last_error"]:
            first_line = str(row["last_error"]).split("\n", 1)[0]
            error = JobError(type=ERROR_TYPE, message=first_line.rstrip("\r"))
        if row["failed_at"] is not None:
            state = State.FAILED
        elif running:
            state = State.STARTED
        elif row["attempts"] > 0 or data.executions > 0:
            state = State.RETRYING
        else:
            state = State.CREATED
        run_at = _utc(row["run_at"])
        return JobStatus(
            job_id=job_id,
            state=state,
            job_class=data.job_class,
            error=error if state in (State.FAILED, State.RETRYING) else None,
            attempts=max(row["attempts"], data.executions) + (1 if running else 0),
            enqueued_at=_utc(row["created_at"]),
            started_at=_utc(row["locked_at"]),
            finished_at=_utc(row["failed_at"]),
            updated_at=_utc(row["updated_at"]),
            meta={
                "queue": row["queue"],
                "priority": row["priority"],
                "run_at": None if run_at is None else run_at.isoformat().replace("+00:00", "Z"),
                "delayed_job_id": row["id"],
            },
        )

    def close(self) -> None:
        """Dispose of the engine's connections if the strategy made the engine."""
        if self._owns_engine:
            self.engine.dispose()
        if self._journal is not None:
            self._journal.client.close()

    # -- helpers ---------------------------------------------------------------------------

    def _read(self, query: sa.Executable, params: Mapping[str, Any] | None = None) -> list[Any]:
        with self._errors(), self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")  # one query: no BEGIN
            return list(conn.execute(query, params or {}).all())

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate SQLAlchemy's exceptions into immortus's, without the URL's password."""
        try:
            yield
        except sa_exc.SQLAlchemyError as exc:
            why = reason(exc, self.engine.url)
            if unreachable(exc):
                raise StoreUnavailable(
                    f"cannot reach the Delayed::Job database at {self._where}: {why}"
                ) from exc
            raise StoreError(f"reading {self.table.name} at {self._where} failed: {why}") from exc
