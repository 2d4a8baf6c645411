"""A store lookup next to a bare client round trip to the same server (``make bench``).

Each store (SQLite, Redis, PostgreSQL) is seeded with the jobs of the store scaling benchmark
(``bench/stores/dataset.py``, loaded by ``bench/stores/backends.py``), then three operations are
timed on the same ids, interleaved 50 calls at a time with the order reversed every turn
(``bench/stores/measure.py``), so a noisy neighbour slows them alike:

- **store**: the store's own ``get(job_id)``: what every verify request of the job costs.
- **bare key**: the smallest round trip the same client library makes to the same server for
  the same key, as the issue defines it: Redis ``GET`` of a string value as long as the job's
  hash (redis-py, with the store's ``decode_responses``); ``SELECT 1 FROM <table> WHERE job_id =
  %s`` by primary key on one psycopg connection (the store's driver) in autocommit; the same
  ``SELECT 1`` through ``sqlite3`` on the same file.
- **bare row**: the same round trip fetching what the store fetches: ``HMGET`` of the status
  fields of the job's hash, ``SELECT`` of the same columns by primary key (every column but the
  history, which status reads leave alone). The store's cost over it is its own Python:
  statement building, connection checkout, decoding.
- **floor**: the bare row, then the ``JobStatus`` built from it anew
  (:func:`immortus.stores.records.build_read`: its progress, error, meta and times, checked as
  their constructors check them): the least any store that answers a status does, with no
  kept record to reuse and nothing else (no id check, no connection checkout, no lease).

Two ratios of the median times, each with a target of at least 0.7:

- ``bare key / store`` says how much of a lookup is the server's smallest round trip. Its
  **limit**, ``bare key / bare row``, is the ratio of a store that added nothing to fetching its
  record.
- ``bare row / store`` says how much of a lookup is fetching the record. Its **limit**,
  ``bare row / floor``, is the ratio of a store that added nothing to building the status.

Where a limit is below 0.7, the target is out of reach for any store that reads and answers
the record that way, and the verdict says ``LIMIT`` rather than ``MISS``.

The ids are drawn at random among every seeded job, so a store rarely reads a record it read
recently. A second, **polled** measurement draws the same number of lookups among
:data:`POLLED` jobs, as pages watching their running jobs read them: the stores keep the last
decoded records, so it shows a lookup without the decoding.

Run ``python -m bench.stores.lookup [--quick | --full] [--stores sqlite,redis,postgresql]``
from the repository root: it starts a private redis-server and PostgreSQL (:mod:`devservices`),
keeps SQLite in a temporary directory and removes everything at the end. The figures go to
stdout and ``bench/results/latest.json`` (section ``store_lookup``).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from bench.common import BenchError, add_modes, log
from bench.results import save
from bench.stores.backends import (
    Backend,
    PostgresBackend,
    RedisBackend,
    SQLiteBackend,
    start_backends,
)
from bench.stores.backends import verify as verify_seeded
from bench.stores.common import add_stores_option, chosen_stores
from bench.stores.dataset import Dataset
from bench.stores.measure import _interleave, _Task, percentile
from immortus.status import JobStatus
from immortus.stores import records
from immortus.stores.base import Store

#: Target of the issue: a bare round trip takes at least this fraction of a store lookup.
TARGET: Final = 0.7
STORES: Final = ("sqlite", "redis", "postgresql")
#: (jobs seeded, lookups timed per operation, warm-up calls per operation) in each mode.
QUICK: Final = (10_000, 3_000, 300)
FULL: Final = (100_000, 20_000, 1_000)
SEED: Final = 20261128
#: How many jobs the polled lookups read, again and again.
POLLED: Final = 100

Call = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class Bare:
    """The bare client's two round trips for one store, and what each must answer."""

    key: Call
    key_answer: Callable[[str, Any], bool]
    row: Call
    what: str
    close: Callable[[], None]


def _fresh(job_id: str) -> str:
    """A copy of ``job_id``, as a request brings it (no cached hash, no shared object)."""
    return "".join(job_id)


def _sqlite_bare(store: Store) -> Bare:
    from immortus.stores.sqlite import SQLiteStore

    assert isinstance(store, SQLiteStore)
    connection = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    key_sql = "SELECT 1 FROM immortus_jobs WHERE job_id = ?"
    row_sql = f"SELECT {', '.join(records.READ_COLUMNS)} FROM immortus_jobs WHERE job_id = ?"
    return Bare(
        key=lambda job_id: connection.execute(key_sql, (job_id,)).fetchone(),
        key_answer=lambda _, answer: answer == (1,),
        row=lambda job_id: connection.execute(row_sql, (job_id,)).fetchone(),
        what="sqlite3 SELECT 1 by primary key",
        close=connection.close,
    )


def _postgres_bare(backend: PostgresBackend, store: Store) -> Bare:
    import psycopg
    from psycopg import sql

    from immortus.stores.sql import SQLStore

    assert isinstance(store, SQLStore)
    connection = psycopg.connect(backend.server.dsn, autocommit=True)
    table = sql.Identifier(store.table.name)
    columns = sql.SQL(", ").join(map(sql.Identifier, records.READ_COLUMNS))
    # Rendered once, and run on one cursor: the least a psycopg round trip costs (composing the
    # query or making a cursor at each call would cost the bare client more than the store).
    key_sql = sql.SQL("SELECT 1 FROM {} WHERE job_id = %s").format(table).as_string(connection)
    row_sql = sql.SQL("SELECT {} FROM {} WHERE job_id = %s").format(columns, table)
    row_text = row_sql.as_string(connection)
    cursor = connection.cursor()

    def run(query: str, job_id: str) -> Any:
        return cursor.execute(query, (job_id,)).fetchone()

    return Bare(
        key=lambda job_id: run(key_sql, job_id),
        key_answer=lambda _, answer: answer == (1,),
        row=lambda job_id: run(row_text, job_id),
        what="psycopg SELECT 1 by primary key",
        close=connection.close,
    )


def _redis_bare(backend: RedisBackend, store: Store, job_ids: Sequence[str]) -> Bare:
    """GET of a string as long as each job's hash (written here), and HMGET of its fields."""
    import redis

    from immortus.stores.redis import RedisStore

    assert isinstance(store, RedisStore)
    url = f"redis://{backend.host}:{backend.port}/{backend.databases[store]}"
    client = redis.Redis.from_url(url, decode_responses=True)
    job_key = f"{store.prefix}job:"  # the key layout of the store's module docstring
    value_key = "bench:value:"
    sizes: dict[str, int] = {}
    with client.pipeline(transaction=False) as pipe:
        for job_id in dict.fromkeys(job_ids):
            pipe.hgetall(job_key + job_id)
        hashes: list[dict[str, str]] = pipe.execute()
    with client.pipeline(transaction=False) as pipe:
        for job_id, fields in zip(dict.fromkeys(job_ids), hashes, strict=True):
            size = sum(len(name) + len(value) for name, value in fields.items())
            sizes[job_id] = size
            pipe.set(value_key + job_id, "x" * size)
        pipe.execute()
    return Bare(
        key=lambda job_id: client.get(value_key + job_id),
        key_answer=lambda job_id, answer: answer is not None and len(answer) == sizes[job_id],
        row=lambda job_id: client.hmget(job_key + job_id, records.READ_COLUMNS),
        what="redis-py GET of a value as long as the job's hash",
        close=client.close,
    )


def _bare(backend: Backend, store: Store, job_ids: Sequence[str]) -> Bare:
    if isinstance(backend, SQLiteBackend):
        return _sqlite_bare(store)
    if isinstance(backend, PostgresBackend):
        return _postgres_bare(backend, store)
    if isinstance(backend, RedisBackend):
        return _redis_bare(backend, store, job_ids)
    raise BenchError(f"no bare client for the {backend.name} store")


def _found(job_id: str, status: JobStatus | None) -> bool:
    return status is not None and status.job_id == job_id


def _row_found(job_id: str, row: Any) -> bool:
    return row is not None and row[0] == job_id  # the first column or field is the job's id


def _floor(row: Call) -> Call:
    """The bare ``row`` read, then the status built from it anew (no cache, no lease)."""

    def read(job_id: str) -> JobStatus | None:
        values = row(job_id)
        return None if values is None else records.build_read(values)

    return read


def _summary(samples: Sequence[int]) -> dict[str, float]:
    return {
        "samples": len(samples),
        "p50_us": percentile(samples, 50) / 1e3,
        "p99_us": percentile(samples, 99) / 1e3,
    }


def measure_store(backend: Backend, data: Dataset, *, lookups: int, warmup: int) -> dict[str, Any]:
    """Seed one store, check it, then time its lookups against the bare client's."""
    store = backend.open(data)
    try:
        log(f"{backend.name}: seeding {data.size:,} jobs")
        verify_seeded(store, data, backend.seed(store, data))
        rng = random.Random(f"{SEED}/{backend.name}")
        job_ids = [_fresh(job_id) for job_id in rng.choices(data.ids, k=lookups + warmup)]
        watched = rng.sample(data.ids, POLLED)
        polled_ids = [_fresh(job_id) for job_id in rng.choices(watched, k=lookups)]
        bare = _bare(backend, store, [*job_ids, *polled_ids])
        try:
            tasks = [
                _Task("store", store.get, job_ids[warmup:], _found),
                _Task("bare key", bare.key, job_ids[warmup:], bare.key_answer),
                _Task("bare row", bare.row, job_ids[warmup:], _row_found),
                _Task("floor", _floor(bare.row), job_ids[warmup:], _found),
            ]
            warm = [_Task(task.label, task.call, job_ids[:warmup], task.check) for task in tasks]
            polled = [_Task(task.label, task.call, polled_ids, task.check) for task in tasks]
            log(f"{backend.name}: warming up, then {lookups:,} lookups of each kind, twice")
            _interleave(warm, "warm-up")
            _interleave(tasks, "lookup")
            _interleave(polled, "polled lookup")
        finally:
            bare.close()
    finally:
        store.close()
        backend.wipe()
    figures = {task.label: _summary(task.durations) for task in tasks}
    watching = {task.label: _summary(task.durations) for task in polled}
    store_p50, store_p99 = figures["store"]["p50_us"], figures["store"]["p99_us"]
    return {
        "bare_key": bare.what,
        "version": backend.version(),
        **figures,
        "ratio_p50": figures["bare key"]["p50_us"] / store_p50,
        "ratio_p99": figures["bare key"]["p99_us"] / store_p99,
        "row_ratio_p50": figures["bare row"]["p50_us"] / store_p50,
        "limit_p50": figures["bare key"]["p50_us"] / figures["bare row"]["p50_us"],
        "row_limit_p50": figures["bare row"]["p50_us"] / figures["floor"]["p50_us"],
        "ours_p50_us": store_p50 - figures["bare row"]["p50_us"],
        "polled": {
            **watching,
            "ratio_p50": watching["bare key"]["p50_us"] / watching["store"]["p50_us"],
            "row_ratio_p50": watching["bare row"]["p50_us"] / watching["store"]["p50_us"],
        },
    }


def _verdict(ratio: float, limit: float) -> str:
    """PASS at the target; LIMIT below it where even the limit is; else MISS."""
    if ratio >= TARGET:
        return "PASS"
    return "LIMIT" if limit < TARGET else "MISS"


def render(results: dict[str, dict[str, Any]], jobs: int) -> str:
    """The report: each operation's p50 and p99, and the ratios with their limits."""
    labels = ("store", "bare key", "bare row", "floor")
    lines = [
        f"store lookup vs a bare client round trip: {jobs:,} jobs seeded, one client thread",
        "",
        f"{'':<11}|{'store get µs':^15}|{'bare key µs':^15}|{'bare row µs':^15}|"
        f"{'floor µs':^15}|{'bare key / store':^22}|{'bare row / store':^22}",
        f"{'store':<11}|"
        + f"{'p50':>7}{'p99':>8}|" * len(labels)
        + f"{'p50':>6}{'limit':>7}{'>=0.7':>8} |" * 2,
        "-" * 122,
    ]
    for name, figures in results.items():
        cells = "".join(
            f"{figures[label]['p50_us']:>7.1f}{figures[label]['p99_us']:>8.1f}|" for label in labels
        )
        ratios = "".join(
            f"{figures[ratio]:>6.2f}{figures[limit]:>7.2f}"
            f"{_verdict(figures[ratio], figures[limit]):>8} |"
            for ratio, limit in (("ratio_p50", "limit_p50"), ("row_ratio_p50", "row_limit_p50"))
        )
        lines.append(f"{name:<11}|{cells}{ratios}")
    lines += [
        "",
        "floor: the bare row, then the status built from it anew (no kept record, no id check,",
        "no lease): the least a store answering a status does.",
        "limit: of bare key / store, bare key / bare row (a store adding nothing to fetching its",
        "record); of bare row / store, bare row / floor (a store adding nothing to building the",
        "status). LIMIT: below 0.7 even at the limit (out of reach for this server and client).",
        "",
        f"polled: the same lookups among {POLLED} jobs (records the store decoded lately)",
        f"{'store':<11}|{'store µs':>9}{'key µs':>9}{'row µs':>9} |"
        f"{'key/store':>10}{'row/store':>10}",
    ]
    for name, figures in results.items():
        polled = figures["polled"]
        times = "".join(
            f"{polled[label]['p50_us']:>9.1f}" for label in ("store", "bare key", "bare row")
        )
        lines.append(
            f"{name:<11}|{times} |{polled['ratio_p50']:>10.2f}{polled['row_ratio_p50']:>10.2f}"
        )
    lines += ["", "bare key:"]
    lines += [f"  {name}: {figures['bare_key']}" for name, figures in results.items()]
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.stores.lookup", description=__doc__)
    add_modes(
        parser,
        quick=f"{QUICK[0]:,} jobs, {QUICK[1]:,} lookups of each kind",
        full=f"{FULL[0]:,} jobs, {FULL[1]:,} lookups of each kind",
    )
    add_stores_option(parser, STORES)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the report; return 0 (or 1 if it could not be measured)."""
    args = _parse(argv)
    names = chosen_stores(args.stores, STORES)
    if names is None:
        print(f"bench: --stores takes names among {', '.join(STORES)}", file=sys.stderr)
        return 1
    jobs, lookups, warmup = FULL if args.full else QUICK
    data = Dataset(jobs, SEED)
    results: dict[str, dict[str, Any]] = {}
    try:
        with contextlib.ExitStack() as stack:
            for backend in start_backends(names, stack):
                results[backend.name] = measure_store(backend, data, lookups=lookups, warmup=warmup)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(render(results, jobs))
    save(
        "store_lookup",
        {"target": TARGET, "jobs": jobs, "lookups": lookups, "stores": results},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
