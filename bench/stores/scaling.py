"""Store scaling: does a store answer as fast with a million tracked jobs as with a thousand?

For each store (memory, SQLite, Redis, PostgreSQL) and each size (1 000, 10 000 and 100 000 jobs
in quick mode, the default; up to 1 000 000 with ``--full``) the benchmark bulk-loads that many
records, checks that the store reads them back, then measures from one client thread:

- ``get()`` of random existing ids (p50 and p99) and of unknown ids (p50),
- ``record()`` of progress events (events per second): one on each of many random running
  jobs, and bursts of successive events on one job after another,
- ``get_many()`` of 100 random ids (p50),
- ``list_jobs(limit=50)``: the first page and page 50, reached by following cursors (p50).

The sizes of one store are measured in alternation, 50 calls at a time, so that a machine that
slows down for a while (a busy neighbour on a VM) slows them alike. Looked-up ids are fresh
strings, as a request would bring them. The benchmark prints two tables: the slope of lookups
(p50 and p99 at every size, the least-squares µs per tenfold growth, the ratio largest/smallest
size, target: at most 1.5), then every metric at every size with each store's ratio; and it
adds every figure to ``bench/results/latest.json`` (:func:`bench.results.save`).

Redis and PostgreSQL are private servers from :mod:`devservices`; they are stopped, and
every file removed, at the end, on error and on Ctrl-C.

This module is the report (the tables, the figures) and the command. The rest lives beside it:
:mod:`bench.stores.dataset` (the jobs), :mod:`bench.stores.backends` (seeding each store, and
checking it reads them back), :mod:`bench.stores.measure` (the timed calls) and
:mod:`bench.stores.common`.

Run it from the repository root: ``make bench`` or ``.venv/bin/python -m bench.stores.scaling
[--quick | --full] [--stores memory,sqlite] [--sizes 1000,250000]``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import signal
import statistics
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Final

from bench import results
from bench.common import STARTED, BenchError, add_modes, log, table
from bench.stores.backends import start_backends
from bench.stores.common import DEEP_PAGE, PAGE, STOP, deep_page, go_on, size_label
from bench.stores.dataset import Dataset
from bench.stores.measure import (
    BATCHES,
    BUDGET_S,
    BURST_JOBS,
    BURST_LENGTH,
    LOOKUPS,
    MIN_SAMPLES,
    QUICK_BUDGET_S,
    ROUND,
    WRITES,
    Result,
    bench_backend,
    percentile,
)

STORES: Final = ("memory", "sqlite", "redis", "postgresql")
QUICK_SIZES: Final = (1_000, 10_000, 100_000)
FULL_SIZES: Final = (1_000, 10_000, 100_000, 1_000_000)
#: Largest accepted ratio of lookup latency (largest size / smallest size).
TARGET: Final = 1.5
#: ``devservices`` honours these to use outside servers; the benchmark wipes what it runs
#: against, so it always runs private ones.
SERVER_URL_VARIABLES: Final = ("IMMORTUS_TEST_REDIS_URL", "IMMORTUS_TEST_POSTGRES_URL")


# -- the report -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Report:
    """Everything one run measured."""

    stores: list[str]
    sizes: list[int]
    versions: dict[str, str]
    results: dict[str, dict[int, Result]]
    #: Seconds each operation of a store could take, over every size (then sampling stops).
    budget_s: float = BUDGET_S
    duration_s: float = 0.0

    def ratio(self, store: str, metric: Callable[[Result], float]) -> float:
        """``metric`` at the largest size over ``metric`` at the smallest."""
        by_size = self.results[store]
        return metric(by_size[self.sizes[-1]]) / metric(by_size[self.sizes[0]])

    def slope(self, store: str, metric: Callable[[Result], float]) -> float:
        """µs per decade: the least-squares slope of ``metric`` (ns) against log10(size)."""
        by_size = self.results[store]
        decades = [math.log10(size) for size in self.sizes]
        costs = [metric(by_size[size]) / 1_000 for size in self.sizes]
        return statistics.linear_regression(decades, costs).slope


def _p50(attribute: str) -> Callable[[Result], float]:
    return lambda result: percentile(getattr(result, attribute), 50)


def _get_p99(result: Result) -> float:
    return percentile(result.get_ns, 99)


def _write_cost(result: Result) -> float:
    """ns per event, from the rate of ``record random``."""
    return 1e9 / result.writes_per_s


def _burst_cost(result: Result) -> float:
    """ns per event, from the rate of ``record burst``."""
    return 1e9 / result.burst_writes_per_s


#: Every metric of the table: its column, how to read its cost (ns) from a result, and how to
#: show the result in a cell (rates as events per second, the rest as µs).
METRIC_COLUMNS: Final[tuple[tuple[str, str, Callable[[Result], float]], ...]] = (
    ("get_p50", "get p50", _p50("get_ns")),
    ("get_p99", "get p99", _get_p99),
    ("unknown_p50", "unknown", _p50("unknown_ns")),
    ("get_many_p50", "get_many", _p50("get_many_ns")),
    ("list_first_p50", "page 1", _p50("list_first_ns")),
    ("list_deep_p50", "page 50", _p50("list_deep_ns")),
    ("record", "random/s", _write_cost),
    ("record_burst", "burst/s", _burst_cost),
)
_RATES: Final = frozenset({"record", "record_burst"})


def _us(value: float) -> str:
    us = value / 1_000
    return f"{us:.2f}" if us < 10 else f"{us:.1f}" if us < 100 else f"{us:.0f}"


def _signed(value: float) -> str:
    return (
        f"{value:+.2f}"
        if abs(value) < 10
        else f"{value:+.1f}"
        if abs(value) < 100
        else f"{value:+.0f}"
    )


def _cell(key: str, cost: float) -> str:
    return f"{1e9 / cost:.0f}" if key in _RATES else _us(cost)


def _verdict(report: Report, store: str) -> str:
    ratios = (report.ratio(store, _p50("get_ns")), report.ratio(store, _get_p99))
    return "PASS" if max(ratios) <= TARGET else "MISS"


def render_slopes(report: Report) -> str:
    """The lookup slope table: get() p50 and p99 at every size, µs per decade, the ratio."""
    sizes, labels = report.sizes, [size_label(size) for size in report.sizes]
    head = ["store"]
    for name in ("p50", "p99"):
        head += [f"{name} {label}" for label in labels] + [f"{name} µs/dec", f"{name} x"]
    head.append(f"<={TARGET:g}x")
    rows = []
    for store in report.stores:
        row = [store]
        for metric in (_p50("get_ns"), _get_p99):
            row += [_us(metric(report.results[store][size])) for size in sizes]
            row += [_signed(report.slope(store, metric)), f"{report.ratio(store, metric):.2f}"]
        row.append(_verdict(report, store))
        rows.append(row)
    note = (
        "Lookup cost as the store grows: get() of a random existing id, p50 and p99 in µs at "
        "each number of tracked jobs. µs/dec: the least-squares slope of the latency against "
        "log10(jobs), fitted over every size: what each tenfold growth adds (0: flat). x: the "
        f"latency at {labels[-1]} / at {labels[0]}. <={TARGET:g}x: PASS when both x are at most "
        f"{TARGET:g}."
    )
    if sizes[-1] < 1_000_000:
        note += f" The target is set for 1M/1k; this run stops at {labels[-1]} (--full goes on)."
    notes = [note]
    return "\n".join([*table(head, rows), "", *(textwrap.fill(note, width=100) for note in notes)])


def render_sizes(report: Report) -> str:
    """Every metric at every size, one row per store and size, then each store's ratio."""
    sizes = report.sizes
    span = f"{size_label(sizes[-1])}/{size_label(sizes[0])}"
    head = ["store", "jobs", *(title for _, title, _ in METRIC_COLUMNS), "seed s", "MiB"]
    rows = []
    for store in report.stores:
        by_size = report.results[store]
        for number, size in enumerate(sizes):
            result = by_size[size]
            footprint = "-" if result.footprint is None else f"{result.footprint / 2**20:,.1f}"
            rows.append(
                [
                    store if number == 0 else "",
                    size_label(size),
                    *(_cell(key, cost(result)) for key, _, cost in METRIC_COLUMNS),
                    f"{result.seed_s:.1f}",
                    footprint,
                ]
            )
        if len(sizes) > 1:
            ratios = [f"{report.ratio(store, cost):.2f}" for _, _, cost in METRIC_COLUMNS]
            rows.append(["", f"x {span}", *ratios, "", ""])
    small, large = size_label(sizes[0]), size_label(sizes[-1])
    notes = [
        f"p50 latencies in µs (get: p50 and p99) from one client thread over {LOOKUPS} random "
        f"ids (unknown: ids never stored) and {BATCHES} get_many(100) / list_jobs(limit={PAGE}) "
        f"calls. random/s: {WRITES} progress events recorded back to back, each on a random "
        f"running job; burst/s: {BURST_LENGTH} successive events on each of {BURST_JOBS} "
        "running jobs, one job after the other.",
        f"x {span}: cost at {large} / cost at {small} for every column (the record columns: "
        f"rate at {small} / rate at {large}); above 1 is slower with more jobs. The sizes are "
        f"measured in alternation, {ROUND} calls at a time (record burst: whole bursts); an "
        f"operation stops after {report.budget_s:g} s once every size has {MIN_SAMPLES} calls "
        "(the JSON has each one's sample count).",
        f"{os.cpu_count()} CPUs; "
        + ", ".join(f"{name} {version}" for name, version in report.versions.items())
        + f". Whole run, seeding included: {report.duration_s:.0f} s.",
    ]
    if deep_page(sizes[0]) < DEEP_PAGE:
        notes[0] += f" At {small}, page 50 is page {deep_page(sizes[0])}, the last."
    return "\n".join(
        [*table(head, rows, left=2), "", *(textwrap.fill(note, width=100) for note in notes)]
    )


def render(report: Report) -> str:
    """The results: the lookup slope table, then every metric at every size."""
    return render_slopes(report) + "\n\n" + render_sizes(report)


def figures(report: Report) -> dict[str, Any]:
    """Every figure of ``report``, for ``bench/results/latest.json``."""
    body: dict[str, Any] = {
        "duration_s": round(report.duration_s, 1),
        "versions": report.versions,
        "target_lookup_ratio": TARGET,
        "budget_s": report.budget_s,
        "sizes": report.sizes,
        "stores": {},
    }
    for store in report.stores:
        entry: dict[str, Any] = {
            "sizes": {str(size): report.results[store][size].summary() for size in report.sizes}
        }
        if len(report.sizes) > 1:
            entry["ratios"] = {
                key: round(report.ratio(store, cost), 3) for key, _, cost in METRIC_COLUMNS
            }
            entry["slopes_us_per_decade"] = {
                key: round(report.slope(store, cost), 3) for key, _, cost in METRIC_COLUMNS
            }
            entry["lookup_target"] = _verdict(report, store)
        body["stores"][store] = entry
    return body


# -- the command ----------------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.stores.scaling",
        description="Status lookups and transition writes of each store at growing sizes.",
    )
    parser.add_argument(
        "--stores",
        default=",".join(STORES),
        help=f"comma-separated stores among {', '.join(STORES)} (default: all)",
    )
    add_modes(
        parser,
        quick=f"sizes {','.join(map(str, QUICK_SIZES))}, {QUICK_BUDGET_S:g} s at most for each "
        "operation of a store: a run of a few minutes",
        full=f"sizes {','.join(map(str, FULL_SIZES))}, {BUDGET_S:g} s at most for each operation "
        "of a store: a run of ten minutes or more",
    )
    parser.add_argument(
        "--sizes", default=None, help="comma-separated numbers of tracked jobs, instead of a mode's"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    args = parser.parse_args(argv)
    stores = [name.strip() for name in args.stores.split(",") if name.strip()]
    unknown = sorted(set(stores) - set(STORES))
    if unknown or not stores:
        parser.error(f"--stores takes names among {', '.join(STORES)}, not {args.stores!r}")
    args.stores = list(dict.fromkeys(stores))
    sizes: tuple[int, ...] = FULL_SIZES if args.full else QUICK_SIZES
    if args.sizes is not None:
        try:
            sizes = tuple(int(size.replace("_", "")) for size in args.sizes.split(","))
        except ValueError:
            parser.error(f"--sizes takes whole numbers, not {args.sizes!r}")
        if any(size < 2 * PAGE for size in sizes):
            parser.error(f"every size must be at least {2 * PAGE} jobs")
    args.sizes = sorted(set(sizes))
    if len(args.sizes) < 2:
        parser.error("--sizes takes two sizes or more: the figures are slopes and ratios")
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    STOP.set()
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    args = _parse(argv)
    for variable in SERVER_URL_VARIABLES:
        if os.environ.pop(variable, None):
            log(f"ignoring {variable}: the benchmark wipes its servers, so it runs private ones")
    sizes = ", ".join(f"{size:,}" for size in args.sizes)
    log(f"store scaling: {', '.join(args.stores)} at {sizes} jobs")
    stack = contextlib.ExitStack()
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    report: Report | None = None
    try:
        backends = start_backends(args.stores, stack)
        versions = {"python": platform.python_version()}
        for backend in backends:
            version = backend.version()
            if version is not None:
                versions[backend.name] = version
        log("generating the data sets")
        datasets = [Dataset(size, args.seed) for size in args.sizes]
        budget_s = BUDGET_S if args.full else QUICK_BUDGET_S
        measured = {
            backend.name: bench_backend(backend, datasets, budget_s=budget_s)
            for backend in backends
        }
        del datasets
        go_on()
        report = Report(args.stores, args.sizes, versions, measured, budget_s)
    except KeyboardInterrupt:
        log("interrupted: stopping the servers and deleting the temporary files")
        return 130
    except BenchError as exc:
        log(f"FAILED: {exc}")
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
    report.duration_s = time.perf_counter() - STARTED
    print(render(report))
    path = results.save("store_scaling", figures(report))
    log(f"figures written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
