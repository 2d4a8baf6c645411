"""How fast does DelayedJobStrategy find a job in a big ``delayed_jobs`` table?

A private PostgreSQL (:mod:`devservices`) gets Delayed::Job's table, as its Active Record
migration creates it, filled by ``COPY`` with 100 000 rows whose handlers are written exactly as
ActiveJob 6.1's delayed_job adapter writes them (the YAML of its ``JobWrapper``: job_data with
job_class, job_id, queue_name, arguments...), then ``VACUUM ANALYZE``. Two strategies answer the
same look-ups, round after round, interleaved so that a noisy neighbour hurts both alike:

- ``LIKE scan``: the fallback, a ``LIKE`` on ``handler`` for the id's line (a sequential scan);
- ``index``: the same strategy once the index of ``lookup_index_sql()`` exists (the scanning one
  checked the catalog before it was made and caches "no index" for the whole run).

Each look-up is ``strategy.status(job_id)``: half of the ids are in the table, half are not, and
were never seen, so each of their look-ups runs the query (a job that was seen and then left the
table is answered from memory after its first miss). Before timing, both must give the same
answer for every id. With ``--trigram`` (and in ``--full`` mode), the ``LIKE`` scan is
then timed again with a ``pg_trgm`` GIN index on ``handler``, the other index the docs mention.

Run ``python -m bench.delayed_job_lookup [--quick | --full] [--rows N] [--trigram]``: quick
(the default) times 3 rounds, full 7 rounds and the trigram index. Nothing is asserted: the
medians and the ratio are printed (target: index at least 100x the LIKE scan) and added to
``bench/results/latest.json`` (:func:`bench.results.save`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
import sqlalchemy as sa

from bench import results
from bench.common import BenchError, add_modes, log
from immortus.queues.delayed_job import DelayedJobStrategy, jobs_table, lookup_index_sql
from immortus.status import JobStatus, State

#: Rows of the table (the issue's size).
ROWS: Final = 100_000
#: Target of the issue: the index path at least this many times faster than the LIKE scan.
TARGET: Final = 100.0
INDEX_NAME: Final = "index_delayed_jobs_on_active_job_id"
_CLASSES: Final = ("ReportJob", "MailerJob", "ExportJob", "Billing::InvoiceJob", "CleanupJob")
_QUEUES: Final = ("default", "mailers", "exports", "billing")
_HANDLER: Final = """\
--- !ruby/object:ActiveJob::QueueAdapters::DelayedJobAdapter::JobWrapper
job_data:
  job_class: {job_class}
  job_id: {job_id}
  provider_job_id:
  queue_name: {queue}
  priority:
  arguments:
  - {number}
  - report {number} for account {account}
  - account_id: {account}
    _aj_symbol_keys: []
  executions: 0
  exception_executions: {{}}
  locale: en
  timezone: UTC
  enqueued_at: '{enqueued_at}'
"""


def handler(job_id: str, number: int, enqueued: datetime) -> str:
    """Return the handler ActiveJob 6.1's delayed_job adapter writes for such a job."""
    return _HANDLER.format(
        job_class=_CLASSES[number % len(_CLASSES)],
        job_id=job_id,
        queue=_QUEUES[number % len(_QUEUES)],
        number=number,
        account=number % 977,
        enqueued_at=enqueued.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def _copy_field(value: object) -> str:
    if value is None:
        return "\\N"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def seed(url: str, dsn: str, rows: int) -> list[str]:
    """Create the table and fill it with ``rows`` jobs by ``COPY``; return their job ids."""
    engine = sa.create_engine(url)
    try:
        metadata = sa.MetaData()
        table = jobs_table(metadata)
        sa.Index("delayed_jobs_priority", table.c.priority, table.c.run_at)
        metadata.create_all(engine)
    finally:
        engine.dispose()
    generator = random.Random(4)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    job_ids: list[str] = []
    buffer = io.StringIO()
    for number in range(rows):
        job_id = str(uuid.UUID(int=generator.getrandbits(128), version=4))
        job_ids.append(job_id)
        enqueued = start + timedelta(seconds=number)
        moment = enqueued.replace(tzinfo=None)
        fields = (0, 0, handler(job_id, number, enqueued), None, moment, None, None, None,
                  _QUEUES[number % len(_QUEUES)], moment, moment)  # fmt: skip
        buffer.write("\t".join(_copy_field(field) for field in fields) + "\n")
    columns = (
        "priority, attempts, handler, last_error, run_at, locked_at, failed_at, locked_by, "
        "queue, created_at, updated_at"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY delayed_jobs ({columns}) FROM STDIN") as copy,
        ):
            copy.write(buffer.getvalue())
        conn.execute("VACUUM ANALYZE delayed_jobs")
    return job_ids


def check_answers(a: DelayedJobStrategy, b: DelayedJobStrategy, ids: Sequence[str]) -> None:
    """Both strategies must answer alike: created for a row, unknown for an id never seen.

    Raises:
        BenchError: an answer differs or is not what was seeded.
    """
    for job_id, present in ids_with_presence(ids):
        first, second = a.status(job_id), b.status(job_id)
        wanted = State.CREATED if present else State.UNKNOWN
        if first != second or first.state is not wanted:
            raise BenchError(f"{job_id}: the two paths answered {first} and {second}")


def ids_with_presence(ids: Sequence[str]) -> list[tuple[str, bool]]:
    """Pair every id with whether it is in the table (the odd positions are fresh UUIDs)."""
    return [(job_id, index % 2 == 0) for index, job_id in enumerate(ids)]


def sample(job_ids: Sequence[str], count: int) -> list[str]:
    """``count`` ids: every other one seeded (spread over the table), the rest absent."""
    generator = random.Random(7)
    present = generator.sample(list(job_ids), count - count // 2)
    absent = [str(uuid.UUID(int=generator.getrandbits(128), version=4)) for _ in present]
    return [job_id for pair in zip(present, absent, strict=True) for job_id in pair][:count]


def per_lookup(strategy: DelayedJobStrategy, ids: Sequence[str]) -> float:
    """Seconds per ``status()`` over ``ids``."""
    started = time.perf_counter()
    for job_id in ids:
        status: JobStatus = strategy.status(job_id)
        del status
    return (time.perf_counter() - started) / len(ids)


def measure(
    paths: dict[str, tuple[DelayedJobStrategy, Sequence[str]]], rounds: int
) -> dict[str, list[float]]:
    """Time every path ``rounds`` times, interleaved, after one warm-up; seconds per look-up."""
    timings: dict[str, list[float]] = {name: [] for name in paths}
    for strategy, ids in paths.values():
        per_lookup(strategy, ids[:4])
    for number in range(1, rounds + 1):
        for name, (strategy, ids) in paths.items():
            timings[name].append(per_lookup(strategy, ids))
            log(f"round {number}/{rounds}: {name} {timings[name][-1] * 1000:.3f} ms per look-up")
    return timings


def figures(
    timings: dict[str, list[float]], rows: int, version: str, duration_s: float
) -> dict[str, Any]:
    """Every figure of the run, for ``bench/results/latest.json``."""
    median = {name: statistics.median(values) for name, values in timings.items()}
    body: dict[str, Any] = {
        "rows": rows,
        "postgresql": version,
        "rounds": len(next(iter(timings.values()))),
        "duration_s": round(duration_s, 1),
        "target_ratio": TARGET,
        "median_ms_per_lookup": {name: round(value * 1000, 4) for name, value in median.items()},
        "rounds_ms_per_lookup": {
            name: [round(value * 1000, 4) for value in values] for name, values in timings.items()
        },
        "index_vs_like_scan": round(median["LIKE scan"] / median["index"], 1),
    }
    if "LIKE + pg_trgm GIN" in median:
        body["trigram_vs_like_scan"] = round(median["LIKE scan"] / median["LIKE + pg_trgm GIN"], 1)
    return body


def render(timings: dict[str, list[float]], rows: int, version: str) -> str:
    """Return the report: each path's median time per look-up and the ratio."""
    median = {name: statistics.median(values) for name, values in timings.items()}
    lines = [
        f"delayed_job look-up: PostgreSQL ({version}), {rows:,} rows, status() per job id "
        "(half present, half gone)",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "",
        f"{'path':<30}{'median ms/look-up':>19}{'look-ups/s':>12}{'spread':>8}",
    ]
    for name, values in timings.items():
        spread = (max(values) - min(values)) / median[name] if median[name] else 0.0
        lines.append(
            f"{name:<30}{median[name] * 1000:>19.3f}{1 / median[name]:>12,.0f}{spread:>8.0%}"
        )
    ratio = median["LIKE scan"] / median["index"]
    verdict = "PASS" if ratio >= TARGET else "MISS"
    lines += ["", f"index / LIKE scan: {ratio:,.0f}x faster  (target >= {TARGET:g}x: {verdict})"]
    if "LIKE + pg_trgm GIN" in median:
        trigram = median["LIKE scan"] / median["LIKE + pg_trgm GIN"]
        lines.append(f"pg_trgm GIN / LIKE scan: {trigram:,.0f}x faster")
    return "\n".join(lines)


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise BenchError(problem)


def _execute(url: str, statement: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def _timed(what: str, action: Callable[[], object]) -> None:
    started = time.perf_counter()
    action()
    log(f"{what} in {time.perf_counter() - started:.1f} s")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rails.delayed_job_lookup",
        description="Delayed::Job look-ups in a big table: the LIKE scan against the index.",
    )
    add_modes(parser, quick="3 rounds", full="7 rounds, and the pg_trgm GIN index too")
    parser.add_argument("--rows", type=int, default=ROWS, help=f"rows in the table ({ROWS:,})")
    parser.add_argument("--trigram", action="store_true", help="also time a pg_trgm GIN index")
    args = parser.parse_args(argv)
    args.trigram = args.trigram or args.full
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the report; return 0 (or 1 if it could not be measured)."""
    from devservices import PostgresServer

    args = _parse(argv)
    started = time.perf_counter()
    rounds = 7 if args.full else 3
    with contextlib.ExitStack() as stack:
        log("starting a private PostgreSQL")
        server = stack.enter_context(PostgresServer())
        server.start()
        with psycopg.connect(server.dsn) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            version = "?" if row is None else str(row[0])
        log(f"seeding {args.rows:,} delayed_jobs rows")
        job_ids = seed(server.url, server.dsn, args.rows)
        scanning = stack.enter_context(
            contextlib.closing(DelayedJobStrategy(server.url, index_check_interval=1e9))
        )
        indexed = stack.enter_context(contextlib.closing(DelayedJobStrategy(server.url)))
        slow_ids = sample(job_ids, 20 if args.full else 10)
        fast_ids = sample(job_ids, 2000 if args.full else 500)
        try:
            _require(scanning.lookup_index() is None, "the fresh table has the look-up index")
            _timed("built the look-up index", lambda: _execute(server.url, lookup_index_sql()))
            _execute(server.url, "ANALYZE delayed_jobs")
            _require(indexed.lookup_index() == INDEX_NAME, "the look-up index was not found")
            check_answers(scanning, indexed, slow_ids)
            timings = measure(
                {"LIKE scan": (scanning, slow_ids), "index": (indexed, fast_ids)}, rounds
            )
            if args.trigram:
                _execute(server.url, f"DROP INDEX {INDEX_NAME}")
                _execute(server.url, "CREATE EXTENSION IF NOT EXISTS pg_trgm")
                _timed(
                    "built the pg_trgm GIN index",
                    lambda: _execute(
                        server.url,
                        "CREATE INDEX delayed_jobs_handler_trgm ON delayed_jobs "
                        "USING gin (handler gin_trgm_ops)",
                    ),
                )
                _execute(server.url, "ANALYZE delayed_jobs")
                trigram_ids = sample(job_ids, 200 if args.full else 40)
                check_answers(scanning, scanning, trigram_ids[:20])
                trigram = measure({"LIKE + pg_trgm GIN": (scanning, trigram_ids)}, rounds)
                timings.update(trigram)
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
    print(render(timings, args.rows, version))
    duration_s = time.perf_counter() - started
    path = results.save("delayed_job_lookup", figures(timings, args.rows, version, duration_s))
    log(f"whole run {duration_s:.0f} s; figures written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
