"""What the benchmarks share.

Every benchmark: its error (:class:`BenchError`), its progress log on stderr (:func:`log`), its
two modes on the command line (:func:`add_modes`: ``--quick``, the default of ``make bench``,
and ``--full``), its aligned tables (:func:`table`), and the end of the servers it starts
(:func:`end_process`).

The store scaling benchmark: the flag that Ctrl-C and SIGTERM set (:data:`STOP`, checked by
:func:`go_on`), the short size names of the table (:func:`size_label`), and the shape of the
listings that verification, measurement and the report all page through (:data:`PAGE`,
:func:`deep_page`).

The tracking overhead benchmark's workers (``bench/*_overhead_app.py``): the environment it
gives them (:data:`OUT_ENV`...), their queues (:func:`queue_name`), the clock their jobs read
and the gate that holds a batch back (:class:`JobClock`), and the counter of the calls
immortus's store receives (:class:`StoreCalls`). This module imports nothing but the standard
library (immortus only inside :func:`watch_store_calls`), so a worker pays nothing for it.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

PAGE: Final = 50
DEEP_PAGE: Final = 50  # the page list_jobs reaches by following cursors (fewer at small sizes)

#: When the run started: the log and the report's duration count from it.
STARTED = time.perf_counter()
#: Set by Ctrl-C or SIGTERM. The handler raises KeyboardInterrupt, but a raise that lands in a
#: ``__del__`` is swallowed, so the long loops also look at this between steps (:func:`go_on`).
STOP = threading.Event()


class BenchError(Exception):
    """A run went wrong, so its figures would be void.

    A store read back something other than what was seeded, a worker did not run every job...
    """


def go_on() -> None:
    """Raise KeyboardInterrupt if the run was interrupted."""
    if STOP.is_set():
        raise KeyboardInterrupt


def log(message: str) -> None:
    """Print ``message`` to stderr, after the seconds since the run started."""
    print(f"[{time.perf_counter() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def add_modes(parser: argparse.ArgumentParser, *, quick: str, full: str) -> None:
    """Add ``--quick`` (the default) and ``--full`` to ``parser``; ``args.full`` says which.

    ``quick`` and ``full`` say what each measures (their help texts). ``make bench`` runs every
    benchmark in quick mode, and passes ``--full`` when ``BENCH_FULL=1``.
    """
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--quick", dest="full", action="store_false", help=f"{quick} (default)")
    modes.add_argument("--full", dest="full", action="store_true", help=full)
    parser.set_defaults(full=False)


def table(head: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """Align ``rows`` under ``head`` and a rule: the first ``left`` columns to the left."""
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]

    def line(row: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    out = [line(head)]
    out.append("-" * len(out[0]))
    out += [line(row) for row in rows]
    return out


def size_label(size: int) -> str:
    """Return ``1k``, ``100k``, ``1M``, ``2.5k``...: short names for the table."""
    for unit, name in ((1_000_000, "M"), (1_000, "k")):
        if size >= unit:
            return f"{size / unit:g}{name}"
    return str(size)


def deep_page(size: int) -> int:
    """The page the deep listing measures: DEEP_PAGE, or the last full one of a small store."""
    return max(1, min(DEEP_PAGE, size // PAGE))


# -- the tracking overhead's workers ------------------------------------------------------------

#: The path prefix of a worker's reports: ``{prefix}-{batch}.timing.json`` for each batch of
#: jobs, ``{prefix}.calls.json`` at shutdown. A process without it is the benchmark's own.
OUT_ENV: Final = "IMMORTUS_BENCH_OUT"
#: ``1`` in a tracked worker (immortus's hooks installed), ``0`` in an untracked one.
TRACKED_ENV: Final = "IMMORTUS_BENCH_TRACKED"
#: Where the queues live: a Redis URL, or the path of Django's SQLite task database.
QUEUE_URL_ENV: Final = "IMMORTUS_BENCH_QUEUE_URL"
#: How long a gate job waits for its batch before it gives up (seconds).
GATE_TIMEOUT_S: Final = 600.0


def queue_name(*, tracked: bool) -> str:
    """The queue of one kind of job: each kind has its own worker, listening to it alone."""
    return f"immortus-bench-{'tracked' if tracked else 'untracked'}"


def in_worker() -> bool:
    """Tell whether this process is a worker the benchmark started (else it is the benchmark)."""
    return OUT_ENV in os.environ


def tracked_worker() -> bool:
    """Tell whether this process is a worker the benchmark started to track its jobs."""
    return in_worker() and os.environ.get(TRACKED_ENV) == "1"


def write_report(path: str, report: dict[str, Any]) -> None:
    """Write ``report`` as JSON to ``path`` at once (a reader never sees half of it)."""
    partial = Path(f"{path}.partial")
    partial.write_text(json.dumps(report))
    partial.replace(path)


class JobClock:
    """A worker's clock, read by its jobs: from a batch's first job's start to its last's end.

    The benchmark enqueues a *gate* job first, whose body is :meth:`gate`: it arms the clock
    for the batch behind it (how many jobs, which batch) and holds the worker's only slot until
    the benchmark has enqueued the whole batch. Then every benchmark job, tracked or not, calls
    :meth:`tick` (it is the job's whole body). The batch's first tick reads the wall clock and
    the process's CPU clock; its last reads them again and writes
    ``{out}-{batch}.timing.json``: ``{"jobs", "seconds", "cpu"}``. So ``jobs - 1`` whole cycles
    of a warm worker are timed (each job's end, the next one's fetch and start, every hook on
    the way) and nothing else: not the worker's start-up, not the enqueueing.

    The clock lives in shared memory, so the ticks of work horses that a worker forks (RQ's
    default worker) add up too; ``cpu`` is then ``None``, as each horse's CPU clock is its
    own. ``perf_counter`` is the system's monotonic clock on Linux, the same in every process.
    """

    #: batch, jobs, count, first wall, first CPU, first pid.
    _LAYOUT: Final = struct.Struct("qqqddq")

    def __init__(self, out: str | None) -> None:
        self.out = out
        self._shared = mmap.mmap(-1, self._LAYOUT.size)  # MAP_SHARED: forks write to it too

    @classmethod
    def from_environment(cls) -> JobClock:
        """The clock of this worker (:data:`OUT_ENV`); it never reports outside one."""
        return cls(os.environ.get(OUT_ENV))

    def gate(self, jobs: int, batch: int, release: str) -> None:
        """The gate job's body: arm the clock for ``jobs`` jobs, then wait for ``release``.

        Raises:
            BenchError: ``release`` did not appear within :data:`GATE_TIMEOUT_S`.
        """
        self._LAYOUT.pack_into(self._shared, 0, batch, jobs, 0, 0.0, 0.0, 0)
        deadline = time.monotonic() + GATE_TIMEOUT_S
        while not os.path.exists(release):
            if time.monotonic() > deadline:
                raise BenchError(f"batch {batch} was never released ({release})")
            time.sleep(0.002)

    def tick(self) -> None:
        """Count a job; at a batch's first, read the clocks; at its last, read them and report."""
        wall, cpu = time.perf_counter(), time.process_time()
        batch, jobs, count, first_wall, first_cpu, pid = self._LAYOUT.unpack_from(self._shared)
        count += 1
        if count == 1:
            first_wall, first_cpu, pid = wall, cpu, os.getpid()
        self._LAYOUT.pack_into(self._shared, 0, batch, jobs, count, first_wall, first_cpu, pid)
        if count == jobs and self.out:
            report = {
                "jobs": count,
                "seconds": wall - first_wall,
                "cpu": cpu - first_cpu if pid == os.getpid() else None,
            }
            write_report(f"{self.out}-{batch}.timing.json", report)


class StoreCalls:
    """Counts the calls that immortus's store receives in a worker (each is one round trip).

    :meth:`watch` wraps the store's methods on the instance immortus opened from
    ``IMMORTUS_STORE``; :meth:`write` reports the counts (``{out}.calls.json``) when the worker
    stops, after its last job, whose ``finished`` record comes after the clock's last tick.
    """

    COUNTED: Final = ("record", "get", "get_many", "get_nowait")

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def watch(self, store: object) -> None:
        """Count every call of :data:`COUNTED` that ``store`` receives from now on."""
        for name in self.COUNTED:
            if hasattr(store, name):
                setattr(store, name, self._counted(getattr(store, name), name))

    def _counted(self, method: Callable[..., Any], name: str) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return method(*args, **kwargs)

        return counted

    def write(self) -> None:
        """Write the counts to ``{out}.calls.json`` (:data:`OUT_ENV`'s prefix)."""
        out = os.environ.get(OUT_ENV)
        if out:
            write_report(f"{out}.calls.json", dict(self.calls))


def watch_store_calls() -> StoreCalls:
    """Count the calls of the store immortus opened from ``IMMORTUS_STORE``, in this worker.

    Raises:
        BenchError: immortus has no store configured (the worker would track nothing).
    """
    import immortus

    store = immortus.get_store()
    if store is None:
        raise BenchError("the tracked worker has no store: set IMMORTUS_STORE")
    calls = StoreCalls()
    calls.watch(store)
    return calls


def end_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a server or worker the benchmark started: SIGTERM, then SIGKILL after ``timeout``."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
