"""What the tracking-overhead benchmark shares with its workers (``bench/overhead/*_app.py``).

The environment it gives them (:data:`OUT_ENV`...), their queues (:func:`queue_name`), the clock
their jobs read and the gate that holds a batch back (:class:`JobClock`), and the counter of the
calls immortus's store receives (:class:`StoreCalls`). This module imports nothing but the
standard library (immortus only inside :func:`watch_store_calls`), so a worker pays nothing for
it.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from bench.common import BenchError

#: The path prefix of a worker's reports: ``{prefix}-{batch}.timing.json`` for each batch of
#: jobs, ``{prefix}.calls.json`` at shutdown. A process without it is the benchmark's own.
OUT_ENV: Final = "IMMORTUS_BENCH_OUT"
#: ``1`` in a tracked worker (immortus's hooks installed), ``0`` in an untracked one.
TRACKED_ENV: Final = "IMMORTUS_BENCH_TRACKED"
#: Where the queues live: a Redis URL, or the path of Django's SQLite task database.
QUEUE_URL_ENV: Final = "IMMORTUS_BENCH_QUEUE_URL"
#: How long a gate job waits for its batch before it gives up (seconds).
GATE_TIMEOUT_S: Final = 600.0
#: Beside a gate's release file, a file of this suffix asks for a batch without job history.
NO_HISTORY_SUFFIX: Final = ".no-history"


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

        In a tracked worker, the batch runs without job history when the benchmark put a file
        named ``release`` + :data:`NO_HISTORY_SUFFIX` beside it (:func:`switch_history`).

        Raises:
            BenchError: ``release`` did not appear within :data:`GATE_TIMEOUT_S`.
        """
        if tracked_worker():
            switch_history(on=not os.path.exists(release + NO_HISTORY_SUFFIX))
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


def switch_history(*, on: bool) -> None:
    """Turn the job history the stores write on or off in this process, from the next write on.

    Off, :func:`immortus.transitions.archived`, as every store's write path calls it (through
    :mod:`immortus.stores.records`), gives no entry: no history is computed or written. The
    history's share of a job's tracking cost is the difference. In a forking worker only the
    gate's own work horse would be switched: the benchmark refuses ``--fork`` with it.
    """
    from immortus import transitions
    from immortus.stores import records

    setattr(records, "archived", transitions.archived if on else _no_history)  # noqa: B010


def _no_history(*args: object) -> tuple[()]:
    return ()


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
