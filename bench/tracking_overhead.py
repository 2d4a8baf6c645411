"""What does tracking cost a queue's worker? Jobs per second, untracked vs tracked.

For each queue (one function per queue, :data:`SECTIONS`; RQ for now), a real worker drains
``--jobs`` no-op jobs (2 000 by default) twice per round: **untracked** (the queue as it comes:
no hooks, ``os.getpid`` as the job) and **tracked** (immortus's hooks installed, the function
opted in with ``@immortus.track``, an SQLite store). Rounds alternate which goes first, so that a
noisy neighbour hurts both alike; the median rate of each is compared:

- ``tracked / untracked``: the worker's jobs per second with tracking over those without
  (target: at least 0.90);
- store round trips per job: every call the store received (``record``, ``get``...), counted
  by a wrapper around the SQLite store, divided by the jobs, in the enqueuing process and in the
  worker.

RQ's worker is ``SimpleWorker`` in burst mode, in this process: RQ's default worker forks a
work horse per job, and the fork costs far more than a no-op job or the tracking (``--fork``
measures ``rq worker --burst`` in a subprocess instead; the store is then counted from the
worker's events: one ``record`` each). Enqueueing is timed too, apart.

Run ``python -m bench.tracking_overhead [--quick] [--fork]`` from the repository root. Nothing
is asserted: the figures are printed, with the machine, and the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import immortus
from bench.common import BenchError, log
from immortus.status import JobStatus, State
from immortus.stores.sqlite import SQLiteStore
from immortus.transitions import Event

ROOT = Path(__file__).resolve().parents[1]
#: Target of the issue: a tracked worker keeps at least this fraction of its untracked rate.
TARGET: Final = 0.90
#: The module that holds the benchmark's jobs, imported by name so workers can import it too.
JOBS_MODULE: Final = "bench.tracking_overhead"
QUEUE_NAME: Final = "immortus-bench"


#: The untracked job: a function every worker has already imported, so that no run pays for
#: importing immortus in RQ's work horses but the tracked one (which needs it).
UNTRACKED_JOB: Final = "os.getpid"


@immortus.track(queue="rq")
def tracked_noop() -> None:
    """A job that does nothing, opted in to tracking."""


class CountingStore(SQLiteStore):
    """The SQLite store, counting every call it receives (each is one round trip)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)
        self.calls: Counter[str] = Counter()

    def record(self, event: Event) -> JobStatus | None:
        self.calls["record"] += 1
        return super().record(event)

    def get(self, job_id: str) -> JobStatus | None:
        self.calls["get"] += 1
        return super().get(job_id)

    def get_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        self.calls["get_many"] += 1
        return super().get_many(job_ids)


@dataclass(slots=True)
class Section:
    """What one queue's measurement found."""

    queue: str
    worker: str
    jobs: int
    #: Jobs per second, by kind of run ("untracked", "tracked").
    rates: dict[str, list[float]] = field(default_factory=lambda: {"untracked": [], "tracked": []})
    #: Jobs per CPU second of this process (in-process workers only: steadier on a busy host).
    cpu_rates: dict[str, list[float]] = field(
        default_factory=lambda: {"untracked": [], "tracked": []}
    )
    enqueue_rates: dict[str, list[float]] = field(
        default_factory=lambda: {"untracked": [], "tracked": []}
    )
    #: Store calls per job, by where they happen ("enqueue", "worker").
    round_trips: dict[str, float] = field(default_factory=dict)


# -- RQ ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _private_redis(url: str | None) -> Iterator[str]:
    """Yield ``url``, or the URL of a private redis-server stopped at the end."""
    if url:
        yield url
        return
    from tests.services import RedisServer

    with RedisServer() as server:
        yield server.url


@contextlib.contextmanager
def _signals_kept() -> Iterator[None]:
    """Restore SIGINT and SIGTERM handlers after an in-process RQ worker replaced them."""
    kept = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in kept.items():
            signal.signal(number, handler)


def rq_section(folder: Path, *, jobs: int, rounds: int, fork: bool, url: str | None) -> Section:
    """Measure RQ: ``rounds`` interleaved runs of ``jobs`` no-op jobs, untracked and tracked.

    Raises:
        BenchError: a run did not process every job, or the store's records are not finished.
    """
    from redis import Redis

    store_path = folder / "tracking.sqlite3"
    store = CountingStore(store_path)
    immortus.configure(store=store, progress_interval=0)
    bench = _RQBench(store, f"sqlite:///{store_path}", jobs=jobs, fork=fork)
    section = Section(queue="RQ", worker=bench.worker_name, jobs=jobs)
    with _private_redis(url) as redis_url:
        bench.url, bench.connection = redis_url, Redis.from_url(redis_url)
        log(f"RQ: warm-up, {bench.worker_name}")
        bench.run(tracked=False)
        bench.run(tracked=True)
        bench.calls = {"enqueue": Counter(), "worker": Counter()}
        for number in range(1, rounds + 1):
            for tracked in (False, True) if number % 2 else (True, False):
                kind = "tracked" if tracked else "untracked"
                rate, cpu_rate, enqueue_rate = bench.run(tracked=tracked)
                section.rates[kind].append(rate)
                if not fork:
                    section.cpu_rates[kind].append(cpu_rate)
                section.enqueue_rates[kind].append(enqueue_rate)
                log(f"RQ round {number}/{rounds}: {kind} {rate:,.0f} jobs/s")
        bench.connection.close()
    if fork:  # the worker's store is in its own process: count its events instead
        bench.calls["worker"] = Counter(record=2 * jobs * rounds)
    for where, counted in bench.calls.items():
        section.round_trips[where] = sum(counted.values()) / (jobs * rounds)
    store.close()
    immortus.config.reset()
    return section


class _RQBench:
    """One RQ run: enqueue the jobs, drain them with a worker, check, time and count."""

    def __init__(self, store: CountingStore, store_url: str, *, jobs: int, fork: bool) -> None:
        self.store, self.store_url = store, store_url
        self.jobs, self.fork = jobs, fork
        self.worker_name = "rq worker --burst (forking)" if fork else "SimpleWorker, burst"
        self.module = importlib.import_module(JOBS_MODULE)  # RQ refuses jobs from __main__
        self.url = ""
        self.connection: Any = None
        self.calls: dict[str, Counter[str]] = {"enqueue": Counter(), "worker": Counter()}

    def run(self, *, tracked: bool) -> tuple[float, float, float]:
        """Return the worker's jobs per second, per CPU second, and the enqueue rate."""
        from rq import Queue, SimpleWorker

        from immortus.queues.rq import install

        self.connection.flushdb()
        queue = Queue(QUEUE_NAME, connection=self.connection)
        function: Any = UNTRACKED_JOB
        if tracked:
            install(queue)
            function = self.module.tracked_noop
        before = self.store.calls.copy()
        start = time.perf_counter()
        ids = [queue.enqueue(function).id for _ in range(self.jobs)]
        enqueue_rate = self.jobs / (time.perf_counter() - start)
        enqueued = self.store.calls.copy()
        start, cpu = time.perf_counter(), time.process_time()
        if self.fork:
            _run_rq_cli_worker(self.url, self.store_url, tracked=tracked)
        else:
            worker = SimpleWorker([queue], connection=self.connection)
            if tracked:
                install(worker)
            with _signals_kept():
                worker.work(burst=True, logging_level="WARNING")
        rate = self.jobs / (time.perf_counter() - start)
        cpu_rate = self.jobs / (time.process_time() - cpu)
        if tracked:
            self.calls["enqueue"] += enqueued - before
            self.calls["worker"] += self.store.calls - enqueued
        _check_rq_run(self.connection, queue, ids, tracked=tracked)
        return rate, cpu_rate, enqueue_rate


def _run_rq_cli_worker(redis_url: str, store_url: str, *, tracked: bool) -> None:
    """Run ``rq worker --burst`` until the queue is empty."""
    command = [sys.executable, "-m", "rq.cli", "worker", "--burst", "--quiet", "--url", redis_url]
    if tracked:
        command += ["--job-class", "immortus.queues.rq.TrackedJob"]
    command.append(QUEUE_NAME)
    env = {**os.environ, "IMMORTUS_STORE": store_url, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BenchError(f"rq worker exited with {result.returncode}: {result.stderr[-2000:]}")


def _check_rq_run(connection: Any, queue: Any, ids: Sequence[str], *, tracked: bool) -> None:
    """Check every job ran, and a sample reads ``finished`` in the store (else the rate is void).

    Raises:
        BenchError: jobs are left, or a sampled job is not finished.
    """
    from rq.job import Job
    from rq.job import JobStatus as RQState

    if len(queue) != 0:
        raise BenchError(f"{len(queue)} jobs were left in the queue")
    for job_id in (ids[0], ids[len(ids) // 2], ids[-1]):
        if Job.fetch(job_id, connection=connection).get_status() != RQState.FINISHED:
            raise BenchError(f"RQ says job {job_id} did not finish")
        if tracked:
            status = immortus.status(job_id, f"{JOBS_MODULE}.tracked_noop")
            if status.state is not State.FINISHED:
                raise BenchError(f"immortus says job {job_id} is {status.state}, not finished")


#: One measuring function per queue.
SECTIONS: Final[dict[str, Callable[..., Section]]] = {"rq": rq_section}


# -- the report ----------------------------------------------------------------------------


def render(sections: Sequence[Section]) -> str:
    """Return the report: each queue's median rates, their ratio, and the store round trips."""
    lines = [
        "tracking overhead: a real worker draining no-op jobs, untracked vs tracked "
        "(hooks + SQLite store)",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    ]
    for section in sections:
        median = {kind: statistics.median(rates) for kind, rates in section.rates.items()}
        enqueue = {kind: statistics.median(rates) for kind, rates in section.enqueue_rates.items()}
        spread = {
            kind: (max(rates) - min(rates)) / median[kind] if median[kind] else 0.0
            for kind, rates in section.rates.items()
        }
        ratio = median["tracked"] / median["untracked"]
        verdict = "PASS" if ratio >= TARGET else "MISS"
        lines += [
            "",
            f"{section.queue}: {section.worker}, {section.jobs} jobs a run, "
            f"{len(section.rates['tracked'])} rounds",
            f"{'':<12}{'worker jobs/s':>15}{'spread':>9}{'enqueue jobs/s':>17}",
        ]
        for kind in ("untracked", "tracked"):
            lines.append(
                f"{kind:<12}{median[kind]:>15,.0f}{spread[kind]:>8.0%}{enqueue[kind]:>17,.0f}"
            )
        lines.append(f"tracked / untracked (worker):  {ratio:.2f}  (target >= {TARGET}: {verdict})")
        if all(section.cpu_rates.values()):
            cpu = {kind: statistics.median(rates) for kind, rates in section.cpu_rates.items()}
            lines.append(
                f"tracked / untracked (worker, per CPU second): "
                f"{cpu['tracked'] / cpu['untracked']:.2f}  "
                f"({cpu['untracked']:,.0f} and {cpu['tracked']:,.0f} jobs per CPU second)"
            )
        lines += [
            f"tracked / untracked (enqueue): {enqueue['tracked'] / enqueue['untracked']:.2f}",
            "store round trips per job:     "
            + ", ".join(f"{where} {count:g}" for where, count in section.round_trips.items()),
        ]
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.tracking_overhead", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 300 jobs")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs a run (2000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    parser.add_argument("--fork", action="store_true", help="RQ: time `rq worker --burst`")
    parser.add_argument("--redis-url", default=None, help="an EMPTY Redis database (flushed)")
    parser.add_argument("--queue", choices=sorted(SECTIONS), action="append", help="(all)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the report; return 0 (or 1 if it could not be measured)."""
    args = _parse(argv)
    jobs, rounds = (300, 3) if args.quick else (args.jobs, args.rounds)
    sections = []
    with tempfile.TemporaryDirectory(prefix="immortus-bench-") as tmp:
        try:
            for name in args.queue or sorted(SECTIONS):
                measure = SECTIONS[name]
                section = measure(
                    Path(tmp), jobs=jobs, rounds=rounds, fork=args.fork, url=args.redis_url
                )
                sections.append(section)
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
    print(render(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
