"""The floor under tracking: the least write that keeps its promise, on the store's own file.

Tracking promises that a job's ``created`` record is visible when the enqueue returns and that
each event is durable when its hook returns. So a tracked enqueue costs at least the queue's
own enqueue plus one store write, and a tracked job at least the untracked job plus its two
(``started``, ``finished``). The least such write on the SQLite store is :class:`BareWriter`'s:
``sqlite3`` straight, on the same file with the same pragmas (WAL, ``synchronous=NORMAL``), one
single-row ``INSERT ... ON CONFLICT DO UPDATE`` of a row the size of a record in its own
``BEGIN IMMEDIATE`` transaction, in a table of its own (no secondary index, no counters, no
history, no decoding). What immortus spends above it is its own.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

#: The floor's own table, in the store's file.
TABLE: Final = "immortus_bench_bare"
#: A row of about a record's size: a job id, a state and the rest of an encoded record
#: (class, attempts, four times, expiry, lease...), some 200 bytes.
_PAYLOAD: Final = "x" * 160
_CREATE: Final = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} "
    "(job_id TEXT PRIMARY KEY NOT NULL, state TEXT NOT NULL, payload TEXT, at REAL)"
)
_UPSERT: Final = (
    f"INSERT INTO {TABLE} (job_id, state, payload, at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (job_id) DO UPDATE SET state = excluded.state, at = excluded.at"
)


@dataclass(frozen=True, slots=True)
class BareTiming:
    """µs per bare write, on the wall clock and in this process's CPU time.

    ``insert``: a new row (what a ``created`` record is); ``update``: an existing row (what a
    job's ``started`` and ``finished`` are).
    """

    insert_us: float
    update_us: float
    insert_cpu_us: float
    update_cpu_us: float


class BareWriter:
    """Bare writes to the SQLite file at ``path`` (an existing store's file, in WAL mode)."""

    def __init__(self, path: str | Path, *, timeout: float = 5.0) -> None:
        self.connection = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        self.connection.execute("PRAGMA synchronous = NORMAL")
        self.connection.execute(_CREATE)

    def write(self, job_id: str, state: str) -> None:
        """One event's write: the upsert of ``job_id``'s row, in its own transaction."""
        execute = self.connection.execute
        execute("BEGIN IMMEDIATE")
        execute(_UPSERT, (job_id, state, _PAYLOAD, time.time()))
        execute("COMMIT")

    def measure(self, count: int) -> BareTiming:
        """Time ``count`` jobs' writes: a ``created`` each, then ``started`` and ``finished``."""
        ids = [str(uuid.uuid4()) for _ in range(count)]
        wall, cpu = time.perf_counter(), time.process_time()
        for job_id in ids:
            self.write(job_id, "created")
        inserted, inserted_cpu = time.perf_counter(), time.process_time()
        for job_id in ids:
            self.write(job_id, "started")
            self.write(job_id, "finished")
        updated, updated_cpu = time.perf_counter(), time.process_time()
        return BareTiming(
            insert_us=(inserted - wall) * 1e6 / count,
            update_us=(updated - inserted) * 1e6 / (2 * count),
            insert_cpu_us=(inserted_cpu - cpu) * 1e6 / count,
            update_cpu_us=(updated_cpu - inserted_cpu) * 1e6 / (2 * count),
        )

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()
