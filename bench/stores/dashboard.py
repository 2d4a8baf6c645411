"""The dashboard's overview and first list page on a large store (``make bench``).

Each store (SQLite, Redis, PostgreSQL) is seeded with the jobs of the store scaling benchmark
(``bench/stores/dataset.py``, loaded in bulk by ``bench/stores/backends.py``, then counted once
as a store upgraded from before the counters would be), and six calls of the dashboard's own
core are timed, interleaved (``bench/stores/measure.py``), no HTTP:

- **overview**: :func:`immortus.web.dashboard.counts.read_counts`, from the store's counters;
- **scan (before)**: the bounded scan of the 1 000 newest jobs the overview read before the
  stores kept counters (what a store without them still costs);
- **list page**: :func:`immortus.web.dashboard.listing.list_jobs`, the first page, no filter;
- **failed page**: the first page of the failed jobs (5 % of them: the store filters by state);
- **class page**: the first page of one job class (a fifth of them: filtered on store pages);
- **bare list_jobs**: the store's own ``list_jobs(limit=50)`` the list page is made of.

The issue's target: the overview and the first list page each under 50 ms (p99) with 1 000 000
jobs (``--full``); ``--quick`` seeds 100 000. The counters' read costs the same at any size.

Run ``python -m bench.stores.dashboard [--quick | --full] [--stores sqlite,redis,postgresql]``
from the repository root; the figures go to stdout and ``bench/results/latest.json`` (section
``dashboard_scale``).
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bench.common import BenchError, add_modes, log, table
from bench.results import save
from bench.stores.backends import Backend, PostgresBackend, RedisBackend, start_backends
from bench.stores.common import add_stores_option, chosen_stores
from bench.stores.dataset import JOB_CLASSES, Dataset
from bench.stores.measure import _interleave, _Task, percentile
from immortus.status import State
from immortus.stores.base import Store
from immortus.web.dashboard.counts import BUCKET_SECONDS, BUCKETS, read_counts, scan_tally
from immortus.web.dashboard.filters import JobFilter
from immortus.web.dashboard.listing import PAGE_SIZE, list_jobs

#: The issue's target for the overview and the first list page, in milliseconds (p99).
TARGET_MS: Final = 50.0
STORES: Final = ("sqlite", "redis", "postgresql")
#: (jobs seeded, calls timed per operation) in each mode.
QUICK: Final = (100_000, 300)
FULL: Final = (1_000_000, 500)
SEED: Final = 20261207
LABELS: Final = (
    "overview",
    "scan (before)",
    "list page",
    "failed page",
    "class page",
    "bare list_jobs",
)
#: The filters of the two filtered pages.
FAILED: Final = JobFilter(state=State.FAILED)
ONE_CLASS: Final = JobFilter(job_class=JOB_CLASSES[0])


def count_seeded(backend: Backend, store: Store) -> float:
    """Count the bulk-loaded rows into the store's counters once; return the seconds it took."""
    started = time.perf_counter()
    if isinstance(backend, PostgresBackend):
        from immortus.stores import sql_counts
        from immortus.stores.sql import SQLStore

        assert isinstance(store, SQLStore)
        with store.engine.begin() as conn:
            sql_counts.rebuild(conn, store.table, store.counters, time.time())
    elif isinstance(backend, RedisBackend):
        store.tally(since=datetime.now(UTC))  # the first read counts the seeded jobs once
    else:
        from immortus.stores import sqlite_counts
        from immortus.stores.sqlite import SQLiteStore

        assert isinstance(store, SQLiteStore)
        connection = sqlite3.connect(store.path, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            sqlite_counts.rebuild(connection, time.time())
            connection.execute("COMMIT")
        finally:
            connection.close()
    return time.perf_counter() - started


def measure_store(backend: Backend, data: Dataset, *, calls: int) -> dict[str, Any]:
    """Seed one store, count it, then time the six calls."""
    store = backend.open(data)
    try:
        log(f"{backend.name}: seeding {data.size:,} jobs")
        backend.seed(store, data)
        counted_s = count_seeded(backend, store)
        now = datetime.now(UTC)
        since = now - timedelta(seconds=BUCKETS * BUCKET_SECONDS)
        total = sum(read_counts(store, now=now).by_state.values())
        if total != data.size:
            raise BenchError(f"{backend.name}: the counters hold {total} jobs, not {data.size}")
        tasks = [
            _Task(LABELS[0], lambda _: read_counts(store), range(calls), _exact(data.size)),
            _Task(LABELS[1], lambda _: scan_tally(store, since=since), range(calls), _any),
            _Task(LABELS[2], lambda _: list_jobs(store, JobFilter(), now=now), range(calls), _any),
            _Task(LABELS[3], lambda _: list_jobs(store, FAILED, now=now), range(calls), _full),
            _Task(LABELS[4], lambda _: list_jobs(store, ONE_CLASS, now=now), range(calls), _full),
            _Task(LABELS[5], lambda _: store.list_jobs(limit=50), range(calls), _any),
        ]
        warm = [_Task(task.label, task.call, range(20), task.check) for task in tasks]
        log(f"{backend.name}: warming up, then {calls} calls of each")
        _interleave(warm, "warm-up")
        _interleave(tasks, "call")
    finally:
        store.close()
        _wipe(backend)
    figures: dict[str, Any] = {
        task.label: {
            "samples": len(task.durations),
            "p50_ms": percentile(task.durations, 50) / 1e6,
            "p99_ms": percentile(task.durations, 99) / 1e6,
        }
        for task in tasks
    }
    worst = max(figures[label]["p99_ms"] for label in ("overview", "list page"))
    return {
        "version": backend.version(),
        "counted_once_s": counted_s,
        **figures,
        "target_met": worst < TARGET_MS,
    }


def _wipe(backend: Backend) -> None:
    """Empty the store; a failure is only logged (its private server is stopped anyway).

    Flushing a million Redis keys may outlast the client's timeout on a loaded machine, and
    the figures measured before it must not be lost with it.
    """
    try:
        backend.wipe()
    except Exception as exc:  # noqa: BLE001 - clean-up only
        log(f"{backend.name}: emptying the store failed ({type(exc).__name__}: {exc})")


def _exact(size: int) -> Any:
    return lambda _, counts: not counts.approximate and counts.counted == size


def _any(_: Any, answer: Any) -> bool:
    return answer is not None


def _full(_: Any, page: Any) -> bool:
    return len(page.jobs) >= PAGE_SIZE


def render(results: dict[str, dict[str, Any]], jobs: int) -> str:
    """The report: p50 / p99 of each call in ms, and the verdict."""
    head = ["store", *(f"{label} p50/p99 ms" for label in LABELS), f"target < {TARGET_MS:g} ms"]
    rows = [
        [
            name,
            *(
                f"{figures[label]['p50_ms']:.2f} / {figures[label]['p99_ms']:.2f}"
                for label in LABELS
            ),
            "met" if figures["target_met"] else "missed",
        ]
        for name, figures in results.items()
    ]
    lines = [f"dashboard overview and first list page: {jobs:,} jobs seeded, no HTTP", ""]
    lines += table(head, rows)
    lines += ["", "counted once after the bulk load (s): "]
    lines[-1] += ", ".join(f"{name} {fig['counted_once_s']:.2f}" for name, fig in results.items())
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.stores.dashboard", description=__doc__)
    add_modes(
        parser,
        quick=f"{QUICK[0]:,} jobs, {QUICK[1]} calls of each",
        full=f"{FULL[0]:,} jobs, {FULL[1]} calls of each",
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
    jobs, calls = FULL if args.full else QUICK
    data = Dataset(jobs, SEED)
    results: dict[str, dict[str, Any]] = {}
    try:
        with contextlib.ExitStack() as stack:
            for backend in start_backends(names, stack):
                results[backend.name] = measure_store(backend, data, calls=calls)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(render(results, jobs))
    print(f"\n({'full' if args.full else 'quick'} mode: {jobs:,} jobs; --full seeds 1,000,000)")
    save("dashboard_scale", {"target_ms": TARGET_MS, "jobs": jobs, "stores": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
