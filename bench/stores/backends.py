"""The stores of the store scaling benchmark: each opened once per size, seeded in bulk, checked.

A :class:`Backend` per kind of store writes rows exactly as the store writes them
(:func:`immortus.stores.records.encode`): one ``executemany`` transaction for SQLite, ``COPY``
then ``VACUUM ANALYZE`` for PostgreSQL, pipelined ``HSET`` + ``PEXPIRE`` + ``ZADD`` per the
Redis store's key layout, and the memory store's own ``record()``. :func:`start_backends` starts
the private servers (:mod:`devservices`) and the temporary directory they need.
:func:`verify` checks that a seeded store reads its jobs back before anything is timed.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from bench.common import BenchError, log
from bench.stores.common import PAGE, deep_page, go_on
from bench.stores.dataset import Dataset, lifecycle_events
from immortus.status import JobStatus, State
from immortus.stores import records
from immortus.stores.base import JobPage, Store
from immortus.stores.memory import MemoryStore
from immortus.stores.sqlite import SQLiteStore

if TYPE_CHECKING:
    from devservices import PostgresServer, RedisServer
    from immortus.stores.redis import RedisStore

REDIS_BATCH: Final = 10_000


def _watched(rows: Sequence[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """Yield ``rows``, stopping (see :func:`go_on`) when the run is interrupted."""
    for start in range(0, len(rows), 10_000):
        go_on()
        yield from rows[start : start + 10_000]


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
                go_on()
            for event in lifecycle_events(status):
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
        job_at, state_at = records.COLUMNS.index("job_id"), records.COLUMNS.index("state")
        created_at, expires_at = records.COLUMNS.index("created"), records.COLUMNS.index("expires")
        used = self._used_memory()
        with socket.create_connection((self.host, self.port), timeout=60) as connection:
            self._call(connection, [_resp(b"SELECT", b"%d" % self.databases[store])], b"+OK")
            for start in range(0, len(rows), REDIS_BATCH):
                go_on()
                now = time.time()
                commands: list[bytes] = []
                index: list[bytes] = [b"ZADD", jobs_key]
                by_state: dict[str, list[bytes]] = {}
                for row in rows[start : start + REDIS_BATCH]:
                    job_id, created = row[job_at].encode(), _bulk(row[created_at])
                    key = prefix + b"job:" + job_id
                    fields = [
                        head + _bulk_string(_bulk(value))
                        for head, value in zip(heads, row, strict=True)
                        if value is not None
                    ]
                    hset = b"*%d\r\n$4\r\nHSET\r\n" % (2 + 2 * len(fields))
                    commands.append(hset + _bulk_string(key) + b"".join(fields))
                    ttl_ms = max(1, round((row[expires_at] - now) * 1000))
                    commands.append(_resp(b"PEXPIRE", key, b"%d" % ttl_ms))
                    index += (created, job_id)
                    by_state.setdefault(row[state_at], []).extend((created, job_id))
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


def start_backends(names: Sequence[str], stack: contextlib.ExitStack) -> list[Backend]:
    """Start what the stores need (servers, a temp dir); ``stack`` undoes it all."""
    from devservices import PostgresServer, RedisServer

    directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="immortus-bench-")))
    backends: list[Backend] = []
    for name in names:
        if name == "memory":
            backends.append(MemoryBackend())
        elif name == "sqlite":
            backends.append(SQLiteBackend(directory))
        elif name == "redis":
            log("starting a private redis-server")
            backends.append(RedisBackend(stack.enter_context(RedisServer())))
        else:
            log("starting a private PostgreSQL server")
            backends.append(PostgresBackend(stack.enter_context(PostgresServer())))
    return backends


# -- verification -------------------------------------------------------------------------------


def verify(store: Store, data: Dataset, expected: dict[int, JobStatus]) -> str | None:
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
    depth = deep_page(data.size)
    pages: list[JobPage] = []
    cursor: str | None = None
    for _ in range(depth):
        pages.append(store.list_jobs(limit=PAGE, cursor=cursor))
        cursor = pages[-1].next_cursor
    listed = [job.job_id for page in pages for job in page.jobs]
    if listed != data.newest(depth * PAGE):
        raise BenchError(f"the first {depth} pages of list_jobs are not the newest jobs in order")
    return None if depth == 1 else pages[-2].next_cursor
