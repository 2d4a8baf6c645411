"""Store scaling: does a store answer as fast with a million tracked jobs as with a thousand?

For each store (memory, SQLite, Redis, PostgreSQL) and each size (1 000 and 1 000 000 jobs by
default) the benchmark bulk-loads that many records, checks that the store reads them back, then
measures from one client thread:

- ``get()`` of random existing ids (p50 and p99) and of unknown ids (p50),
- ``record()`` of progress events (events per second): one on each of many random running
  jobs, and bursts of successive events on one job after another,
- ``get_many()`` of 100 random ids (p50),
- ``list_jobs(limit=50)``: the first page and page 50, reached by following cursors (p50).

The sizes of one store are measured in alternation, 50 calls at a time, so that a machine that
slows down for a while (a busy neighbour on a VM) slows them alike. Looked-up ids are fresh
strings, as a request would bring them. The benchmark prints one table with the ratio
largest/smallest size for lookups and writes (target: at most 1.5 for lookups) and writes every
figure to ``bench/results/store_scaling.json``.

Redis and PostgreSQL are private servers from ``tests/services/``; they are stopped, and
every file removed, at the end, on error and on Ctrl-C.

This module is the report (the table, the JSON file) and the command. The rest lives beside it:
:mod:`bench.dataset` (the jobs), :mod:`bench.backends` (seeding each store, and checking it
reads them back), :mod:`bench.measure` (the timed calls) and :mod:`bench.common`.

Run it from the repository root: ``make bench`` or ``.venv/bin/python -m bench.store_scaling
[--stores memory,sqlite] [--sizes 1000,1000000 | --quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Final

from bench.backends import start_backends
from bench.common import (
    DEEP_PAGE,
    PAGE,
    STARTED,
    STOP,
    BenchError,
    deep_page,
    go_on,
    log,
    size_label,
)
from bench.dataset import Dataset
from bench.measure import (
    BATCHES,
    BURST_JOBS,
    BURST_LENGTH,
    LOOKUPS,
    ROUND,
    WRITES,
    Result,
    bench_backend,
    percentile,
)

STORES: Final = ("memory", "sqlite", "redis", "postgresql")
DEFAULT_SIZES: Final = (1_000, 1_000_000)
QUICK_SIZES: Final = (1_000, 100_000)
#: Largest accepted ratio of lookup latency (largest size / smallest size).
TARGET: Final = 1.5
RESULTS: Final = Path(__file__).resolve().parent / "results" / "store_scaling.json"
#: ``tests.services`` honours these to use outside servers; the benchmark wipes what it runs
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


def _burst_cost(result: Result) -> float:
    return 1 / result.burst_writes_per_s


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
        ("record random/s", lambda r: f"{r.writes_per_s:.0f}", _write_cost),
        ("record burst/s", lambda r: f"{r.burst_writes_per_s:.0f}", _burst_cost),
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
        f"{BATCHES} get_many / list calls. record random/s: {WRITES} progress events back to "
        f"back, each on a random running job; record burst/s: {BURST_LENGTH} successive events "
        f"on each of {BURST_JOBS} running jobs, one job after the other.",
        f"x: cost at {large} / cost at {small} (record: rate at {small} / rate at {large}); above "
        f"1 is slower with more jobs. The sizes are measured in alternation, {ROUND} calls at a "
        "time (record burst: whole bursts).",
        f"<={TARGET:g}x: PASS when both get ratios are at most {TARGET:g}.",
        f"{os.cpu_count()} CPUs; "
        + ", ".join(f"{name} {version}" for name, version in report.versions.items())
        + ".",
        f"Whole run, seeding included: {report.duration_s:.0f} s.",
    ]
    if deep_page(sizes[0]) < DEEP_PAGE:
        notes[2] += f" At {small}, list page 50 is page {deep_page(sizes[0])}, the last."
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
                "record_burst": round(report.ratio(store, _burst_cost), 3),
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
        results = {backend.name: bench_backend(backend, datasets) for backend in backends}
        del datasets
        go_on()
        report = Report(args.stores, args.sizes, versions, results)
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
    write_json(report, args.json)
    log(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
