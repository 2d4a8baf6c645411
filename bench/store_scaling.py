"""Store scaling: does a store answer as fast with a million tracked jobs as with a thousand?

For each store (memory, SQLite, Redis, PostgreSQL) and each size (1 000 and 1 000 000 jobs by
default) the benchmark bulk-loads that many records, checks that the store reads them back, then
measures from one client thread:

- ``get()`` of random existing ids (p50 and p99) and of unknown ids (p50),
- ``record()`` of progress events on random running jobs (transitions per second),
- ``get_many()`` of 100 random ids (p50),
- ``list_jobs(limit=50)``: the first page and page 50, reached by following cursors (p50).

The sizes of one store are measured in alternation, 50 calls at a time, so that a machine that
slows down for a while (a busy neighbour on a VM) slows them alike. Looked-up ids are fresh
strings, as a request would bring them. The benchmark prints one table with the ratio
largest/smallest size for lookups and writes (target: at most 1.5 for lookups) and writes every
figure to ``bench/results/store_scaling.json``.

Seeding writes rows exactly as the stores write them (:func:`immortus.stores.records.encode`):
one ``executemany`` transaction for SQLite, ``COPY`` then ``VACUUM ANALYZE`` for PostgreSQL,
pipelined ``HSET`` + ``PEXPIRE`` + ``ZADD`` per the Redis store's key layout, and the memory
store's own ``record()``. Redis and PostgreSQL are private servers from ``tests/services.py``;
they are stopped, and every file removed, at the end, on error and on Ctrl-C.

Run it from the repository root: ``make bench`` or ``.venv/bin/python -m bench.store_scaling
[--stores memory,sqlite] [--sizes 1000,1000000 | --quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import random
import signal
import socket
import sqlite3
import statistics
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from immortus.exceptions import CorruptRecord
from immortus.status import JobError, JobStatus, Progress, State
from immortus.stores import records
from immortus.stores.base import DEFAULT_TTL, JobPage, Store
from immortus.stores.memory import MemoryStore
from immortus.stores.sqlite import SQLiteStore
from immortus.transitions import Event, EventKind

if TYPE_CHECKING:
    from tests.services import PostgresServer, RedisServer

    from immortus.stores.redis import RedisStore

STORES: Final = ("memory", "sqlite", "redis", "postgresql")
DEFAULT_SIZES: Final = (1_000, 1_000_000)
QUICK_SIZES: Final = (1_000, 100_000)
#: Largest accepted ratio of lookup latency (largest size / smallest size).
TARGET: Final = 1.5

LOOKUPS: Final = 3_000  # get() of existing ids, and again of unknown ids
WRITES: Final = 2_000  # record() of progress events
BATCHES: Final = 300  # get_many(100) calls, and list_jobs calls of each kind
BATCH_IDS: Final = 100
PAGE: Final = 50
DEEP_PAGE: Final = 50  # the page list_jobs reaches by following cursors (fewer at small sizes)
WARMUP_LOOKUPS: Final = 500
WARMUP_CALLS: Final = 30
WARMUP_WRITES: Final = 100
#: Seconds a measured operation may take in all; sampling stops early (never under MIN_SAMPLES).
BUDGET_S: Final = 30.0
MIN_SAMPLES: Final = 100
#: Calls of one size in a row before the next size's turn.
ROUND: Final = 50

#: Created times are spread over the last six days; records expire a week after their last write.
SPAN_S: Final = 6 * 86_400.0
TTL_S: Final = DEFAULT_TTL.total_seconds()
REDIS_BATCH: Final = 10_000
JOB_CLASSES: Final = (
    "reports.build",
    "mail.send_digest",
    "billing.charge",
    "media.transcode",
    "search.reindex",
)
TRACEBACK: Final = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/billing/tasks.py", line 88, in charge\n'
    "    response = gateway.charge(invoice)\n"
    "TimeoutError: the payment gateway did not answer within 30 s\n"
)
RESULTS: Final = Path(__file__).resolve().parent / "results" / "store_scaling.json"
#: ``tests.services`` honours these to use outside servers; the benchmark wipes what it runs
#: against, so it always runs private ones.
SERVER_URL_VARIABLES: Final = ("IMMORTUS_TEST_REDIS_URL", "IMMORTUS_TEST_POSTGRES_URL")

_STARTED = time.perf_counter()
#: Set by Ctrl-C or SIGTERM. The handler raises KeyboardInterrupt, but a raise that lands in a
#: ``__del__`` is swallowed, so the long loops also look at this between steps (:func:`_go_on`).
_STOP = threading.Event()


class BenchError(Exception):
    """A store read back something other than what was seeded: the figures would be void."""


def _go_on() -> None:
    """Raise KeyboardInterrupt if the run was interrupted."""
    if _STOP.is_set():
        raise KeyboardInterrupt


def _watched(rows: Sequence[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """Yield ``rows``, stopping (see :func:`_go_on`) when the run is interrupted."""
    for start in range(0, len(rows), 10_000):
        _go_on()
        yield from rows[start : start + 10_000]


def _log(message: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def size_label(size: int) -> str:
    """Return ``1k``, ``100k``, ``1M``, ``2.5k``...: short names for the table."""
    for unit, name in ((1_000_000, "M"), (1_000, "k")):
        if size >= unit:
            return f"{size / unit:g}{name}"
    return str(size)


# -- the data set -------------------------------------------------------------------------------


class Dataset:
    """``size`` jobs with uuid4 ids, oldest first, in a realistic mix of states.

    70 % finished (half with final progress, a fifth with meta), 20 % started with progress,
    5 % created, 5 % failed with an error after three attempts. :meth:`jobs` regenerates the
    same statuses on every call; :meth:`rows` encodes them once for all the stores that load
    rows.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.base = time.time() - SPAN_S
        self.step = SPAN_S / size
        rng = random.Random(f"{seed}/plan/{size}")
        self.ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(size)]
        if len(set(self.ids)) != size:
            raise BenchError("the generated job ids are not unique")
        self.states = [_pick_state(rng.random()) for _ in range(size)]
        self.started = [i for i, s in zip(self.ids, self.states, strict=True) if s is State.STARTED]
        self.failed = [i for i, s in zip(self.ids, self.states, strict=True) if s is State.FAILED]
        #: Indexes whose statuses verification compares field by field.
        self.checked = frozenset(rng.sample(range(size), k=min(size, 40)))
        self._rows: tuple[list[tuple[Any, ...]], dict[int, JobStatus]] | None = None

    @property
    def label(self) -> str:
        """The size, short: ``1k``, ``1M``."""
        return size_label(self.size)

    def jobs(self) -> Iterator[tuple[int, JobStatus, float, float]]:
        """Yield ``(index, status, created, expires)`` for every job, oldest first.

        ``created`` grows strictly with the index; ``expires`` is a week after the last write.
        """
        rng = random.Random(f"{self.seed}/jobs/{self.size}")
        for index, (job_id, state) in enumerate(zip(self.ids, self.states, strict=True)):
            created = self.base + index * self.step
            status, last_write = _status(rng, job_id, state, created)
            yield index, status, created, last_write + TTL_S

    def rows(self) -> tuple[list[tuple[Any, ...]], dict[int, JobStatus]]:
        """Every job as a row of :data:`records.COLUMNS`, as the stores write it themselves.

        Also returns what a store must read back for the :attr:`checked` indexes.
        """
        if self._rows is None:
            rows: list[tuple[Any, ...]] = []
            expected: dict[int, JobStatus] = {}
            for index, status, created, expires in self.jobs():
                if index % 10_000 == 0:
                    _go_on()
                row = records.encode(status, created=created, expires=expires)
                if index in self.checked:
                    expected[index] = records.decode(row)
                rows.append(tuple(row[column] for column in records.COLUMNS))
            self._rows = rows, expected
        return self._rows

    def newest(self, count: int, ids: Sequence[str] | None = None) -> list[str]:
        """The ``count`` newest ids of ``ids`` (default: all), newest first."""
        pool = self.ids if ids is None else ids
        return list(pool[: -count - 1 : -1])


def _pick_state(draw: float) -> State:
    if draw < 0.70:
        return State.FINISHED
    if draw < 0.90:
        return State.STARTED
    if draw < 0.95:
        return State.CREATED
    return State.FAILED


def _status(
    rng: random.Random, job_id: str, state: State, enqueued: float
) -> tuple[JobStatus, float]:
    """Return a job's status and the time of its last write."""
    job_class = rng.choice(JOB_CLASSES)
    if state is State.CREATED:
        status = JobStatus(
            job_id=job_id,
            job_class=job_class,
            state=state,
            enqueued_at=_at(enqueued),
            updated_at=_at(enqueued),
        )
        return status, enqueued
    started = enqueued + rng.uniform(0.005, 5.0)
    if state is State.STARTED:
        updated = started + rng.uniform(0.0, 300.0)
        current = rng.randrange(100)
        status = JobStatus(
            job_id=job_id,
            job_class=job_class,
            state=state,
            progress=Progress(current=current, total=100, message=f"chunk {current + 1} of 100"),
            attempts=1,
            enqueued_at=_at(enqueued),
            started_at=_at(started),
            updated_at=_at(updated),
        )
        return status, updated
    finished = started + rng.uniform(0.05, 600.0)
    if state is State.FAILED:
        error = JobError(
            type="TimeoutError",
            message="the payment gateway did not answer within 30 s",
            traceback=TRACEBACK,
        )
        status = JobStatus(
            job_id=job_id,
            job_class=job_class,
            state=state,
            error=error,
            attempts=3,
            enqueued_at=_at(enqueued),
            started_at=_at(started),
            finished_at=_at(finished),
            updated_at=_at(finished),
        )
        return status, finished
    progress = Progress(current=100, total=100, message="done") if rng.random() < 0.5 else None
    meta = {"rows": rng.randrange(1, 1_000_000)} if rng.random() < 0.2 else {}
    status = JobStatus(
        job_id=job_id,
        job_class=job_class,
        state=state,
        progress=progress,
        attempts=1,
        enqueued_at=_at(enqueued),
        started_at=_at(started),
        finished_at=_at(finished),
        updated_at=_at(finished),
        meta=meta,
    )
    return status, finished


def _events(status: JobStatus) -> list[Event]:
    """The lifecycle events that lead a new job to ``status`` (for the memory store)."""
    job_id, job_class = status.job_id, status.job_class
    assert status.enqueued_at is not None
    events = [
        Event(kind=EventKind.ENQUEUED, job_id=job_id, job_class=job_class, at=status.enqueued_at)
    ]
    if status.state is State.CREATED:
        return events
    assert status.started_at is not None
    assert status.updated_at is not None
    start = status.started_at
    events.append(Event(kind=EventKind.STARTED, job_id=job_id, at=start, attempt=status.attempts))
    end = status.updated_at
    if status.progress is not None:
        progress = status.progress
        events.append(Event(kind=EventKind.PROGRESS, job_id=job_id, at=end, progress=progress))
    if status.meta:
        events.append(Event(kind=EventKind.META, job_id=job_id, at=end, meta=status.meta))
    if status.state is State.FINISHED:
        events.append(Event(kind=EventKind.FINISHED, job_id=job_id, at=end))
    elif status.state is State.FAILED:
        events.append(Event(kind=EventKind.FAILED, job_id=job_id, at=end, error=status.error))
    return events


# -- the stores -----------------------------------------------------------------------------------


class Backend(ABC):
    """Opens one kind of store, once per size, seeds it in bulk, and wipes it all afterwards."""

    name: str

    @abstractmethod
    def open(self, data: Dataset) -> Store:
        """Return an empty store for ``data``, apart from the stores of the other sizes."""

    @abstractmethod
    def seed(self, store: Store, data: Dataset) -> dict[int, JobStatus]:
        """Load every job of ``data``; return the statuses expected for ``data.checked``."""

    @abstractmethod
    def wipe(self) -> None:
        """Delete everything the stores opened so far hold."""

    def version(self) -> str | None:
        """The version of the software behind the store (``None``: this Python)."""
        return None

    def footprint(self, store: Store) -> int | None:
        """Bytes the seeded store takes on disk or in the server (``None``: not known)."""
        return None


class MemoryBackend(Backend):
    name = "memory"

    def open(self, data: Dataset) -> Store:
        return MemoryStore()

    def seed(self, store: Store, data: Dataset) -> dict[int, JobStatus]:
        expected: dict[int, JobStatus] = {}
        for index, status, _, _ in data.jobs():
            if index % 1_000 == 0:
                _go_on()
            for event in _events(status):
                if store.record(event) is None:
                    raise BenchError(f"the memory store ignored the seeding event {event!r}")
            if index in data.checked:
                expected[index] = status
        return expected

    def wipe(self) -> None:
        """Nothing to do: a memory store goes with its last reference."""


class SQLiteBackend(Backend):
    name = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.paths: list[Path] = []

    def open(self, data: Dataset) -> Store:
        path = self.directory / f"immortus-{data.size}.sqlite3"
        self.paths.append(path)
        return SQLiteStore(path)

    def seed(self, store: Store, data: Dataset) -> dict[int, JobStatus]:
        assert isinstance(store, SQLiteStore)
        rows, expected = data.rows()
        columns = records.COLUMNS
        insert = (
            f"INSERT INTO immortus_jobs ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})"
        )
        connection = sqlite3.connect(store.path, isolation_level=None)
        try:
            connection.execute("PRAGMA cache_size = -262144")  # 256 MiB, for this load only
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(insert, _watched(rows))
            connection.execute("COMMIT")
            # Leave the file as a long-running store has it: everything in the main database.
            busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                raise BenchError("SQLite could not checkpoint the seeded rows out of the WAL")
            (count,) = connection.execute("SELECT count(*) FROM immortus_jobs").fetchone()
        finally:
            connection.close()
        if count != data.size:
            raise BenchError(f"SQLite holds {count} rows after seeding {data.size}")
        return expected

    def wipe(self) -> None:
        for path in self.paths:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        self.paths.clear()

    def version(self) -> str:
        return sqlite3.sqlite_version

    def footprint(self, store: Store) -> int:
        assert isinstance(store, SQLiteStore)
        return store.path.stat().st_size


def _bulk_string(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


def _resp(*parts: bytes) -> bytes:
    """One Redis command in the wire protocol (RESP)."""
    return b"*%d\r\n" % len(parts) + b"".join(map(_bulk_string, parts))


def _bulk(value: object) -> bytes:
    """A value as redis-py sends it: ``repr`` for numbers, UTF-8 for text."""
    return value.encode() if isinstance(value, str) else repr(value).encode()


class RedisBackend(Backend):
    """One Redis database per size, each a store with the default prefix.

    Seeding speaks the wire protocol on a plain socket: redis-py spends ~100 µs per row packing
    commands, which would make seeding a million jobs take minutes.
    """

    name = "redis"

    def __init__(self, server: RedisServer) -> None:
        parts = urlsplit(server.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 6379
        self.databases: dict[Store, int] = {}
        self.footprints: dict[Store, int] = {}

    def _url(self, database: int) -> str:
        return f"redis://{self.host}:{self.port}/{database}"

    def open(self, data: Dataset) -> Store:
        from immortus.stores.redis import RedisStore

        database = len(self.databases)
        store = RedisStore(self._url(database))
        self.databases[store] = database
        return store

    def seed(self, store: Store, data: Dataset) -> dict[int, JobStatus]:
        from immortus.stores.redis import RedisStore

        assert isinstance(store, RedisStore)
        prefix = store.prefix.encode()  # the key layout of the store's module docstring
        jobs_key = prefix + b"jobs"
        rows, expected = data.rows()
        heads = [_bulk_string(column.encode()) for column in records.COLUMNS]
        assert records.COLUMNS[0] == "job_id"
        assert records.COLUMNS[2] == "state"
        assert records.COLUMNS[-2] == "created"
        used = self._used_memory()
        with socket.create_connection((self.host, self.port), timeout=60) as connection:
            self._call(connection, [_resp(b"SELECT", b"%d" % self.databases[store])], b"+OK")
            for start in range(0, len(rows), REDIS_BATCH):
                _go_on()
                now = time.time()
                commands: list[bytes] = []
                index: list[bytes] = [b"ZADD", jobs_key]
                by_state: dict[str, list[bytes]] = {}
                for row in rows[start : start + REDIS_BATCH]:
                    job_id, created = row[0].encode(), _bulk(row[-2])
                    key = prefix + b"job:" + job_id
                    fields = [
                        head + _bulk_string(_bulk(value))
                        for head, value in zip(heads, row, strict=True)
                        if value is not None
                    ]
                    hset = b"*%d\r\n$4\r\nHSET\r\n" % (2 + 2 * len(fields))
                    commands.append(hset + _bulk_string(key) + b"".join(fields))
                    ttl_ms = max(1, round((row[-1] - now) * 1000))
                    commands.append(_resp(b"PEXPIRE", key, b"%d" % ttl_ms))
                    index += (created, job_id)
                    by_state.setdefault(row[2], []).extend((created, job_id))
                commands.append(_resp(*index))
                for state, members in by_state.items():
                    commands.append(_resp(b"ZADD", prefix + f"state:{state}".encode(), *members))
                self._call(connection, commands, b":")
        self._check(store, data)
        self.footprints[store] = self._used_memory() - used
        return expected

    def footprint(self, store: Store) -> int | None:
        return self.footprints.get(store)

    def _used_memory(self) -> int:
        import redis

        with redis.Redis.from_url(self._url(0)) as client:
            return int(client.info("memory")["used_memory"])

    @staticmethod
    def _call(connection: socket.socket, commands: list[bytes], reply: bytes) -> None:
        """Send ``commands``; check that each got a one-line reply starting with ``reply``."""
        connection.sendall(b"".join(commands))
        received = bytearray()
        while received.count(b"\r\n") < len(commands):
            chunk = connection.recv(1 << 20)
            if not chunk:
                raise BenchError("redis-server closed the connection while seeding")
            received += chunk
        lines = bytes(received).split(b"\r\n")[:-1]
        wrong = [line for line in lines if not line.startswith(reply)]
        if wrong or len(lines) != len(commands):
            raise BenchError(f"redis-server refused seeding commands: {wrong[:3]!r}")

    def _check(self, store: RedisStore, data: Dataset) -> None:
        import redis

        with redis.Redis.from_url(self._url(self.databases[store])) as client:
            indexed = client.zcard(f"{store.prefix}jobs")
            keys = client.dbsize()
        if indexed != data.size or keys != data.size + len(set(data.states)) + 1:
            raise BenchError(f"Redis indexes {indexed} jobs in {keys} keys, not {data.size}")

    def wipe(self) -> None:
        import redis

        with redis.Redis.from_url(self._url(0)) as client:
            client.flushall()
        self.databases.clear()
        self.footprints.clear()

    def version(self) -> str:
        import redis

        with redis.Redis.from_url(self._url(0)) as client:
            return str(client.info("server")["redis_version"])


class PostgresBackend(Backend):
    """One table per size (``immortus_jobs_<size>``), each a ``SQLStore`` of its own."""

    name = "postgresql"

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.tables: list[str] = []

    def open(self, data: Dataset) -> Store:
        from immortus.stores.sql import SQLStore

        table = f"immortus_jobs_{data.size}"
        self.tables.append(table)
        return SQLStore(self.server.url, table_name=table)

    def seed(self, store: Store, data: Dataset) -> dict[int, JobStatus]:
        import psycopg
        from psycopg import sql

        from immortus.stores.sql import SQLStore

        assert isinstance(store, SQLStore)
        store.get("bench-creates-the-table")  # the store makes its own table on first use
        table = sql.Identifier(store.table.name)
        columns = sql.SQL(", ").join(map(sql.Identifier, records.COLUMNS))
        rows, expected = data.rows()
        with psycopg.connect(self.server.dsn) as conn:
            copy = sql.SQL("COPY {} ({}) FROM STDIN").format(table, columns)
            with conn.cursor() as cursor, cursor.copy(copy) as load:
                for row in _watched(rows):
                    load.write_row(row)
            conn.commit()
        with psycopg.connect(self.server.dsn, autocommit=True) as conn:
            # What autovacuum does to a table soon after a bulk load: statistics, visibility map.
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(table))
            found = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
        if found is None or found[0] != data.size:
            raise BenchError(f"PostgreSQL holds {found} rows after seeding {data.size}")
        return expected

    def wipe(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.server.dsn, autocommit=True) as conn:
            for table in self.tables:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
        self.tables.clear()

    def version(self) -> str:
        import psycopg

        with psycopg.connect(self.server.dsn) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return "?" if row is None else str(row[0]).split()[0]

    def footprint(self, store: Store) -> int | None:
        import psycopg

        from immortus.stores.sql import SQLStore

        assert isinstance(store, SQLStore)
        with psycopg.connect(self.server.dsn) as conn:
            row = conn.execute("SELECT pg_total_relation_size(%s)", (store.table.name,)).fetchone()
        return None if row is None else int(row[0])


def _backends(names: Sequence[str], stack: contextlib.ExitStack) -> list[Backend]:
    """Start what the stores need (servers, a temp dir); ``stack`` undoes it all."""
    from tests.services import PostgresServer, RedisServer

    directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="immortus-bench-")))
    backends: list[Backend] = []
    for name in names:
        if name == "memory":
            backends.append(MemoryBackend())
        elif name == "sqlite":
            backends.append(SQLiteBackend(directory))
        elif name == "redis":
            _log("starting a private redis-server")
            backends.append(RedisBackend(stack.enter_context(RedisServer())))
        else:
            _log("starting a private PostgreSQL server")
            backends.append(PostgresBackend(stack.enter_context(PostgresServer())))
    return backends


# -- verification -------------------------------------------------------------------------------


def _verify(store: Store, data: Dataset, expected: dict[int, JobStatus]) -> str | None:
    """Check the store reads the seeded jobs back; return the cursor to the deep page.

    Raises:
        BenchError: a status, a listing or a cursor is not what was seeded.
    """
    if len(expected) != len(data.checked):
        raise BenchError(f"seeding expects {len(expected)} of {len(data.checked)} checked jobs")
    for index, want in sorted(expected.items()):
        got = store.get(data.ids[index])
        if got != want:
            raise BenchError(f"get({data.ids[index]!r}) read back\n  {got!r}\nnot\n  {want!r}")
    found = store.get_many([data.ids[index] for index in expected])
    if found != {data.ids[index]: status for index, status in expected.items()}:
        raise BenchError("get_many does not read back the seeded jobs")
    failed = store.list_jobs(state=State.FAILED, limit=20)
    if [job.job_id for job in failed.jobs] != data.newest(20, data.failed):
        raise BenchError("list_jobs(state=failed) does not list the newest failed jobs")
    depth = _deep_page(data.size)
    pages: list[JobPage] = []
    cursor: str | None = None
    for _ in range(depth):
        pages.append(store.list_jobs(limit=PAGE, cursor=cursor))
        cursor = pages[-1].next_cursor
    listed = [job.job_id for page in pages for job in page.jobs]
    if listed != data.newest(depth * PAGE):
        raise BenchError(f"the first {depth} pages of list_jobs are not the newest jobs in order")
    return None if depth == 1 else pages[-2].next_cursor


def _deep_page(size: int) -> int:
    """The page the deep listing measures: DEEP_PAGE, or the last full one of a small store."""
    return max(1, min(DEEP_PAGE, size // PAGE))


# -- measurement ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Result:
    """The raw durations (ns) measured for one store at one size."""

    store: str
    size: int
    seed_s: float
    deep_page: int
    footprint: int | None = None
    get_ns: list[int] = field(default_factory=list)
    unknown_ns: list[int] = field(default_factory=list)
    get_many_ns: list[int] = field(default_factory=list)
    list_first_ns: list[int] = field(default_factory=list)
    list_deep_ns: list[int] = field(default_factory=list)
    record_ns: list[int] = field(default_factory=list)

    @property
    def writes_per_s(self) -> float:
        """Transitions recorded per second, back to back."""
        return len(self.record_ns) / (sum(self.record_ns) / 1e9)

    def summary(self) -> dict[str, Any]:
        """Percentiles of every measurement, for the JSON report."""
        out: dict[str, Any] = {
            "size": self.size,
            "seed_s": round(self.seed_s, 3),
            "deep_page": self.deep_page,
            "footprint_bytes": self.footprint,
            "writes_per_s": round(self.writes_per_s, 1),
        }
        for name in METRICS:
            out[name] = _stats(getattr(self, f"{name}_ns"))
        return out


METRICS: Final = ("get", "unknown", "get_many", "list_first", "list_deep", "record")


def percentile(samples: Sequence[int], pct: float) -> int:
    """Nearest-rank percentile of ``samples``."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def _stats(samples: Sequence[int]) -> dict[str, float]:
    us = 1_000
    return {
        "samples": len(samples),
        "p50_us": percentile(samples, 50) / us,
        "p90_us": percentile(samples, 90) / us,
        "p99_us": percentile(samples, 99) / us,
        "max_us": max(samples) / us,
        "mean_us": round(statistics.fmean(samples) / us, 3),
    }


@dataclass(eq=False, slots=True)
class _Task:
    """Calls of one operation on one store: ``call(arg)`` for each of ``args``."""

    label: str
    call: Callable[[Any], Any]
    args: Sequence[Any]
    check: Callable[[Any, Any], bool]
    durations: list[int] = field(default_factory=list)


def _interleave(tasks: Sequence[_Task], what: str) -> None:
    """Time every task's calls, ROUND calls of each task in turn, the order reversed each round.

    The sizes share every stretch of time, so a machine that slows down for a while (a noisy
    neighbour on a VM) slows them alike and their ratio holds. Each answer is checked outside
    the timed span. Stops early once BUDGET_S is spent and every task has MIN_SAMPLES.
    """
    gc.collect()
    clock = time.perf_counter_ns
    deadline = clock() + int(BUDGET_S * 1e9)
    turn = 0
    while any(len(task.durations) < len(task.args) for task in tasks):
        for task in tasks if turn % 2 == 0 else tasks[::-1]:
            done = len(task.durations)
            for arg in task.args[done : done + ROUND]:
                start = clock()
                answer = task.call(arg)
                end = clock()
                task.durations.append(end - start)
                if not task.check(arg, answer):
                    raise BenchError(f"{task.label} {what}({arg!r}) answered {answer!r}")
        turn += 1
        _go_on()
        if clock() > deadline and min(len(task.durations) for task in tasks) >= MIN_SAMPLES:
            counts = ", ".join(f"{task.label}: {len(task.durations)}" for task in tasks)
            _log(f"  {what}: time budget spent after {counts} calls")
            return


@dataclass(eq=False)
class Subject:
    """One store seeded with one data set, and what is measured on it."""

    data: Dataset
    store: Store
    result: Result
    deep_cursor: str | None = None
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.data.seed}/measure/{self.data.size}")

    @property
    def label(self) -> str:
        return f"{self.result.store} {self.data.label}"

    def progress_events(self, first: int, count: int) -> list[Event]:
        """``count`` progress events on random running jobs, each a real change."""
        targets = [_fresh(self.rng.choice(self.data.started)) for _ in range(count)]
        return [
            Event(
                kind=EventKind.PROGRESS,
                job_id=job_id,
                progress=Progress(current=first + k, total=10**6, message=f"step {first + k}"),
            )
            for k, job_id in enumerate(targets)
        ]

    def warm_up(self) -> None:
        """Open connections, load scripts and caches before anything is timed."""
        store, ids = self.store, self.data.ids
        for job_id in self.rng.sample(ids, min(WARMUP_LOOKUPS, len(ids))):
            store.get(job_id)
        for _ in range(WARMUP_CALLS):
            store.get_many(self.rng.sample(ids, BATCH_IDS))
            store.list_jobs(limit=PAGE)
            store.list_jobs(limit=PAGE, cursor=self.deep_cursor)
        for event in self.progress_events(1_000, WARMUP_WRITES):
            store.record(event)


def _fresh(job_id: str) -> str:
    """A new string equal to ``job_id``, as a request would bring it: no cached hash, no identity
    with the store's own key, not kept warm in the CPU caches by the benchmark's id list."""
    return job_id.encode().decode()


def _found(job_id: str, status: JobStatus | None) -> bool:
    return status is not None and status.job_id == job_id


def _absent(_: str, status: JobStatus | None) -> bool:
    return status is None


def _all_found(batch: Sequence[str], found: dict[str, JobStatus]) -> bool:
    return len(found) == len(batch)


def _recorded(event: Event, status: JobStatus | None) -> bool:
    return status is not None and status.progress == event.progress


def _tasks(subjects: Sequence[Subject], metric: str) -> list[_Task]:
    """The calls that measure ``metric`` on each subject."""
    tasks = []
    for subject in subjects:
        store, data, rng = subject.store, subject.data, subject.rng
        if metric == "get":
            lookups = [_fresh(job_id) for job_id in rng.choices(data.ids, k=LOOKUPS)]
            task = _Task(subject.label, store.get, lookups, _found)
        elif metric == "unknown":
            unknown = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(LOOKUPS)]
            task = _Task(subject.label, store.get, unknown, _absent)
        elif metric == "get_many":
            batches = [list(map(_fresh, rng.sample(data.ids, BATCH_IDS))) for _ in range(BATCHES)]
            task = _Task(subject.label, store.get_many, batches, _all_found)
        elif metric == "list_first":
            task = _Task(subject.label, _lister(store), [None] * BATCHES, _page(data.ids[-1]))
        elif metric == "list_deep":
            first = data.newest((subject.result.deep_page - 1) * PAGE + 1)[-1]
            cursors = [subject.deep_cursor] * BATCHES
            task = _Task(subject.label, _lister(store), cursors, _page(first))
        else:
            events = subject.progress_events(10_000, WRITES)
            task = _Task(subject.label, store.record, events, _recorded)
        tasks.append(task)
    return tasks


def _lister(store: Store) -> Callable[[str | None], JobPage]:
    return lambda cursor: store.list_jobs(limit=PAGE, cursor=cursor)


def _page(first: str) -> Callable[[str | None, JobPage], bool]:
    return lambda _, page: len(page.jobs) == PAGE and page.jobs[0].job_id == first


def _bench(backend: Backend, datasets: Sequence[Dataset]) -> dict[int, Result]:
    """Seed one store per data set, verify them, then measure them all, interleaved."""
    subjects: list[Subject] = []
    try:
        for data in datasets:
            store = backend.open(data)
            started = time.perf_counter()
            try:
                expected = backend.seed(store, data)
            except BaseException:
                store.close()
                raise
            seed_s = time.perf_counter() - started
            footprint = backend.footprint(store)
            result = Result(backend.name, data.size, seed_s, _deep_page(data.size), footprint)
            subjects.append(Subject(data, store, result))
            size = "" if footprint is None else f" ({footprint / 2**20:,.1f} MiB)"
            _log(f"{backend.name} {data.label}: seeded in {seed_s:.1f} s{size}")
            try:
                subjects[-1].deep_cursor = _verify(store, data, expected)
            except CorruptRecord as exc:
                raise BenchError(f"{backend.name} cannot read the seeded records: {exc}") from exc
        started = time.perf_counter()
        for subject in subjects:
            subject.warm_up()
        for metric in METRICS:
            tasks = _tasks(subjects, metric)
            _interleave(tasks, metric)
            for subject, task in zip(subjects, tasks, strict=True):
                setattr(subject.result, f"{metric}_ns", task.durations)
            _go_on()
        _log(f"{backend.name}: verified and measured in {time.perf_counter() - started:.1f} s")
        return {subject.data.size: subject.result for subject in subjects}
    finally:
        for subject in subjects:
            subject.store.close()
        subjects.clear()
        try:
            backend.wipe()
        except Exception as exc:  # noqa: BLE001 - the servers and their files go at exit anyway
            _log(f"could not wipe the {backend.name} stores: {exc}")
        gc.collect()


# -- the report -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Report:
    """Everything one run measured."""

    stores: list[str]
    sizes: list[int]
    versions: dict[str, str]
    results: dict[str, dict[int, Result]]
    duration_s: float = 0.0

    def ratio(self, store: str, metric: Callable[[Result], float]) -> float:
        """``metric`` at the largest size over ``metric`` at the smallest."""
        by_size = self.results[store]
        return metric(by_size[self.sizes[-1]]) / metric(by_size[self.sizes[0]])


def _get_p50(result: Result) -> float:
    return percentile(result.get_ns, 50)


def _get_p99(result: Result) -> float:
    return percentile(result.get_ns, 99)


def _write_cost(result: Result) -> float:
    return 1 / result.writes_per_s


def _us(value: float) -> str:
    us = value / 1_000
    return f"{us:.2f}" if us < 10 else f"{us:.1f}" if us < 100 else f"{us:.0f}"


def _verdict(report: Report, store: str) -> str:
    ratios = (report.ratio(store, _get_p50), report.ratio(store, _get_p99))
    return "PASS" if max(ratios) <= TARGET else "MISS"


def render(report: Report) -> str:
    """The results as one aligned plain-text table, with its legend."""
    sizes = report.sizes
    ratio = len(sizes) > 1
    ratio_name = f"{size_label(sizes[-1])}/{size_label(sizes[0])}"

    def p50(attribute: str) -> Callable[[Result], str]:
        return lambda result: _us(percentile(getattr(result, attribute), 50))

    groups: list[tuple[str, Callable[[Result], str], Callable[[Result], float] | None]] = [
        ("get p50 µs", p50("get_ns"), _get_p50),
        ("get p99 µs", lambda r: _us(_get_p99(r)), _get_p99),
        ("record/s", lambda r: f"{r.writes_per_s:.0f}", _write_cost),
        ("unknown get µs", p50("unknown_ns"), None),
        ("get_many(100) µs", p50("get_many_ns"), None),
        ("list page 1 µs", p50("list_first_ns"), None),
        ("list page 50 µs", p50("list_deep_ns"), None),
    ]
    # Each group: a title over one sub-column per size (and the ratio where it has one).
    columns: list[list[tuple[str, list[str]]]] = []
    for _, cell, cost in groups:
        subs = [
            (size_label(size), [cell(report.results[s][size]) for s in report.stores])
            for size in sizes
        ]
        if ratio and cost is not None:
            subs.append(("x", [f"{report.ratio(s, cost):.2f}" for s in report.stores]))
        columns.append(subs)
    titles = [title for title, _, _ in groups]
    name_width = max(len("store"), *map(len, report.stores))
    if ratio:
        titles.append(f"<={TARGET:g}x")
        columns.append([(ratio_name, [_verdict(report, s) for s in report.stores])])

    widths: list[list[int]] = []
    for title, subs in zip(titles, columns, strict=True):
        sub_widths = [max(len(head), *map(len, cells)) for head, cells in subs]
        span = sum(sub_widths) + 2 * (len(sub_widths) - 1)
        sub_widths[0] += max(0, len(title) - span)
        widths.append(sub_widths)

    def line(first: str, cells: list[str]) -> str:
        return f"{first:<{name_width}} | " + " | ".join(cells)

    top = [title.center(sum(w) + 2 * (len(w) - 1)) for title, w in zip(titles, widths, strict=True)]
    heads = [
        "  ".join(f"{head:>{width}}" for (head, _), width in zip(subs, w, strict=True))
        for subs, w in zip(columns, widths, strict=True)
    ]
    out = [line("", top), line("store", heads)]
    out.append("-" * len(out[-1]))
    for row, store in enumerate(report.stores):
        cells = [
            "  ".join(f"{cells[row]:>{width}}" for (_, cells), width in zip(subs, w, strict=True))
            for subs, w in zip(columns, widths, strict=True)
        ]
        out.append(line(store, cells))
    small, large = size_label(sizes[0]), size_label(sizes[-1])
    notes = [
        f"p50 latencies (get: p50 and p99) from one client thread over {LOOKUPS} random ids and "
        f"{BATCHES} get_many / list calls; record/s: {WRITES} progress events back to back.",
        f"x: cost at {large} / cost at {small} (record: rate at {small} / rate at {large}); above "
        f"1 is slower with more jobs. The sizes are measured in alternation, {ROUND} calls at a "
        "time.",
        f"<={TARGET:g}x: PASS when both get ratios are at most {TARGET:g}.",
        f"{os.cpu_count()} CPUs; "
        + ", ".join(f"{name} {version}" for name, version in report.versions.items())
        + ".",
        f"Whole run, seeding included: {report.duration_s:.0f} s.",
    ]
    if _deep_page(sizes[0]) < DEEP_PAGE:
        notes[2] += f" At {small}, list page 50 is page {_deep_page(sizes[0])}, the last."
    legend = ["", *(textwrap.fill(note, width=100) for note in notes)]
    return "\n".join(out + legend)


def _machine() -> dict[str, Any]:
    memory = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        memory = f"{int(first.split()[1]) / 2**20:.1f} GiB"
    return {
        "cpus": os.cpu_count(),
        "memory": memory,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def write_json(report: Report, path: Path) -> None:
    """Write every figure of ``report`` to ``path`` (creating its directory)."""
    body: dict[str, Any] = {
        "benchmark": "store_scaling",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(report.duration_s, 1),
        "machine": _machine(),
        "versions": report.versions,
        "target_lookup_ratio": TARGET,
        "sizes": report.sizes,
        "stores": {},
    }
    for store in report.stores:
        entry: dict[str, Any] = {
            "sizes": {str(size): report.results[store][size].summary() for size in report.sizes}
        }
        if len(report.sizes) > 1:
            entry["ratios"] = {
                "get_p50": round(report.ratio(store, _get_p50), 3),
                "get_p99": round(report.ratio(store, _get_p99), 3),
                "record": round(report.ratio(store, _write_cost), 3),
            }
            entry["lookup_target"] = _verdict(report, store)
        body["stores"][store] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2) + "\n")


# -- the command ----------------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.store_scaling",
        description="Status lookups and transition writes of each store at growing sizes.",
    )
    parser.add_argument(
        "--stores",
        default=",".join(STORES),
        help=f"comma-separated stores among {', '.join(STORES)} (default: all)",
    )
    parser.add_argument(
        "--sizes",
        default=None,
        help="comma-separated numbers of tracked jobs (default: 1000,1000000)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="sizes 1000,100000: a run of a minute or two"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS,
        help=f"where to write the figures (default: {RESULTS})",
    )
    args = parser.parse_args(argv)
    stores = [name.strip() for name in args.stores.split(",") if name.strip()]
    unknown = sorted(set(stores) - set(STORES))
    if unknown or not stores:
        parser.error(f"--stores takes names among {', '.join(STORES)}, not {args.stores!r}")
    args.stores = list(dict.fromkeys(stores))
    if args.quick and args.sizes is not None:
        parser.error("--quick sets the sizes; pass either it or --sizes")
    sizes: tuple[int, ...] = QUICK_SIZES if args.quick else DEFAULT_SIZES
    if args.sizes is not None:
        try:
            sizes = tuple(int(size.replace("_", "")) for size in args.sizes.split(","))
        except ValueError:
            parser.error(f"--sizes takes whole numbers, not {args.sizes!r}")
        if any(size < 2 * PAGE for size in sizes):
            parser.error(f"every size must be at least {2 * PAGE} jobs")
    args.sizes = sorted(set(sizes))
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _STOP.set()
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    args = _parse(argv)
    for variable in SERVER_URL_VARIABLES:
        if os.environ.pop(variable, None):
            _log(f"ignoring {variable}: the benchmark wipes its servers, so it runs private ones")
    sizes = ", ".join(f"{size:,}" for size in args.sizes)
    _log(f"store scaling: {', '.join(args.stores)} at {sizes} jobs")
    stack = contextlib.ExitStack()
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    report: Report | None = None
    try:
        backends = _backends(args.stores, stack)
        versions = {"python": platform.python_version()}
        for backend in backends:
            version = backend.version()
            if version is not None:
                versions[backend.name] = version
        _log("generating the data sets")
        datasets = [Dataset(size, args.seed) for size in args.sizes]
        results = {backend.name: _bench(backend, datasets) for backend in backends}
        del datasets
        _go_on()
        report = Report(args.stores, args.sizes, versions, results)
    except KeyboardInterrupt:
        _log("interrupted: stopping the servers and deleting the temporary files")
        return 130
    except BenchError as exc:
        _log(f"FAILED: {exc}")
        return 1
    finally:
        # Cleanup must not be cut short by a second Ctrl-C.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            stack.close()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    assert report is not None
    report.duration_s = time.perf_counter() - _STARTED
    print(render(report))
    write_json(report, args.json)
    _log(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
