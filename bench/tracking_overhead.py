"""What does tracking cost a queue's worker? Jobs per second, untracked vs tracked, per queue.

For each queue (RQ, Celery, Huey, Dramatiq, Django tasks: one ``bench/<queue>_overhead_app.py``
each, holding its no-op jobs and a class that drives it), two real, long-lived workers in
subprocesses, one slot each, each on its own queue, drain batches of no-op jobs:

- **untracked**: the queue as it comes (no hooks anywhere, a job immortus never heard of);
- **tracked**: immortus's hooks installed the way the queue's docs say (one line), the job
  opted in with ``@immortus.track``, an SQLite store (``IMMORTUS_STORE``) in both processes.

A batch is a *gate* job, then the batch's jobs, enqueued by the benchmark while the gate holds
the worker's slot, then released (:class:`bench.common.JobClock`). Every job's whole body ticks
the clock, the same for both kinds: the rate is timed inside the worker from the batch's first
job's start to its last job's end, so neither the enqueueing nor the worker's start-up is. Two
batch sizes (50 and 500 jobs quick, 200 and 2 000 full); each round runs both kinds at both
sizes, the order of kinds and of sizes reversed every other round, so that a noisy neighbour
hurts all alike. Per queue and size:

- ``ratio``: tracked over untracked median jobs per second (target: at least 0.90), and the
  same per CPU second of the worker (steadier on a busy host);
- ``µs/job``: what tracking adds to each job, ``1/tracked - 1/untracked`` rate (wall clock, and
  the worker's CPU time), paired within a round, median of the rounds, with their range. It
  should not depend on the batch size: ``slope`` says ``flat`` when the two sizes' ranges
  overlap;
- the enqueue rates, the store round trips per tracked job (the benchmark's store counts its
  calls while enqueuing, the tracked worker its own over its life) and, for queues in Redis,
  Redis commands per job.

Every batch is checked before it counts: no job left, every result the queue keeps a success,
and (tracked) every job ``finished`` in the store with its enqueue and start times.

Run ``python -m bench.tracking_overhead [--quick | --full] [--queue rq ...]`` from the
repository root. It starts a private redis-server (``tests/services/``) unless ``--redis-url``
names an empty database. Nothing is asserted: the figures are printed, added to
``bench/results/latest.json`` (:func:`bench.results.save`), and the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import immortus
from bench import results
from bench.common import (
    OUT_ENV,
    QUEUE_URL_ENV,
    STARTED,
    TRACKED_ENV,
    BenchError,
    StoreCalls,
    add_modes,
    log,
    table,
)
from immortus.status import State
from immortus.stores.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
#: Target of the queue issue: a tracked worker keeps at least this fraction of its untracked rate.
TARGET: Final = 0.90
#: Batch sizes and rounds: quick (``make bench``) and full (``BENCH_FULL=1``).
QUICK_COUNTS: Final = (50, 500)
QUICK_ROUNDS: Final = 3
FULL_COUNTS: Final = (200, 2_000)
FULL_ROUNDS: Final = 5
#: Jobs of the warm-up batch of each kind, not counted.
WARMUP_JOBS: Final = 20
#: Redis's counters of the benchmark's own questions, left out of the commands per job.
OWN_COMMANDS: Final = frozenset({"cmdstat_info", "cmdstat_config", "cmdstat_flushdb"})
KINDS: Final = ("untracked", "tracked")


class QueueBench(Protocol):
    """One queue as the benchmark drives it (each ``bench/<queue>_overhead_app.py`` has one).

    Its module reads where the queue lives from ``QUEUE_URL_ENV`` when it is imported.
    """

    @property
    def name(self) -> str:
        """The queue's name in the report."""

    @property
    def worker(self) -> str:
        """The worker, as the report describes it."""

    @property
    def uses_redis(self) -> bool:
        """The queue lives in Redis: its commands per job are counted."""

    @property
    def counts_store_calls(self) -> bool:
        """The worker counts its store calls (a forking worker's horses cannot report theirs)."""

    @property
    def stop_signal(self) -> signal.Signals:
        """The signal of the worker's graceful stop (its running job ends first)."""

    def reset(self) -> None:
        """Empty the queues, before the workers start."""

    def worker_command(self, *, tracked: bool) -> list[str]:
        """The command line of the long-lived worker of one kind of job."""

    def enqueue_gate(self, jobs: int, batch: int, release: str, *, tracked: bool) -> None:
        """Enqueue the gate job (:meth:`bench.common.JobClock.gate`) in front of a batch."""

    def enqueue(self, count: int, *, tracked: bool) -> list[str]:
        """Enqueue ``count`` no-op jobs of one kind from this process; return their ids."""

    def check(self, ids: Sequence[str], *, tracked: bool) -> None:
        """Check the queue ran every job of ``ids``; raise BenchError if not (yet)."""

    def close(self) -> None:
        """Close what the benchmark's process opened."""


@dataclass(frozen=True, slots=True)
class Options:
    """What the command line asked for."""

    counts: tuple[int, ...]
    rounds: int
    #: RQ: the default worker, forking a work horse per job, instead of ``SimpleWorker``.
    fork: bool = False
    #: An empty Redis database to use (flushed), instead of a private redis-server.
    redis_url: str | None = None
    #: Celery: the worker's pool, ``solo`` or ``threads`` (one slot either way).
    celery_pool: str = "solo"


def _rq(options: Options) -> QueueBench:
    from bench.rq_overhead_app import RQBench

    return RQBench(fork=options.fork)


def _celery(options: Options) -> QueueBench:
    from bench.celery_overhead_app import CeleryBench

    return CeleryBench(pool=options.celery_pool)


def _huey(options: Options) -> QueueBench:
    from bench.huey_overhead_app import HueyBench

    return HueyBench()


def _dramatiq(options: Options) -> QueueBench:
    from bench.dramatiq_overhead_app import DramatiqBench

    return DramatiqBench()


def _django(options: Options) -> QueueBench:
    from bench.django_overhead_app import DjangoBench

    return DjangoBench()


#: Each queue: its driver, and whether it lives in Redis (else in a file of the run's folder).
QUEUES: Final[dict[str, tuple[Callable[[Options], QueueBench], bool]]] = {
    "rq": (_rq, True),
    "celery": (_celery, True),
    "huey": (_huey, True),
    "dramatiq": (_dramatiq, True),
    "django": (_django, False),
}


# -- the figures ---------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    """What one batch (one kind, one size) measured."""

    rate: float
    cpu_rate: float | None
    enqueue_rate: float
    #: The benchmark's store calls while enqueuing.
    enqueue_store_calls: Counter[str]
    #: Redis commands, while enqueuing and while the worker ran the batch.
    redis_commands: dict[str, Counter[str]]


@dataclass(slots=True)
class Measure:
    """Every round of one queue at one job count."""

    jobs: int
    runs: dict[str, list[Run]] = field(default_factory=lambda: {kind: [] for kind in KINDS})

    def median(self, kind: str, figure: Callable[[Run], float | None]) -> float | None:
        """The median of ``figure`` over the rounds of ``kind`` (``None`` if it has none)."""
        values = [v for v in map(figure, self.runs[kind]) if v is not None]
        return statistics.median(values) if values else None

    def rate(self, kind: str) -> float:
        """The median worker rate of ``kind``, in jobs per second."""
        value = self.median(kind, lambda run: run.rate)
        assert value is not None
        return value

    def spread(self, kind: str) -> float:
        """(max - min) / median of the worker rates of ``kind``."""
        rates = [run.rate for run in self.runs[kind]]
        return (max(rates) - min(rates)) / statistics.median(rates)

    def ratio(self) -> float:
        """Tracked over untracked median worker rate."""
        return self.rate("tracked") / self.rate("untracked")

    def cpu_ratio(self) -> float | None:
        """Tracked over untracked median rate per CPU second of the worker."""
        tracked = self.median("tracked", lambda run: run.cpu_rate)
        untracked = self.median("untracked", lambda run: run.cpu_rate)
        return None if tracked is None or untracked is None else tracked / untracked

    def overheads_us(self, clock: str = "wall") -> list[float]:
        """Per round, the µs tracking added to each job: tracked minus untracked time a job.

        ``clock`` is ``wall`` (the worker's rate) or ``cpu`` (its rate per CPU second; no
        figure for a round without one).
        """
        overheads = []
        for untracked, tracked in zip(self.runs["untracked"], self.runs["tracked"], strict=True):
            pair: tuple[float | None, float | None] = (untracked.rate, tracked.rate)
            if clock == "cpu":
                pair = (untracked.cpu_rate, tracked.cpu_rate)
            if pair[0] and pair[1]:
                overheads.append(1e6 / pair[1] - 1e6 / pair[0])
        return overheads

    def overhead_us(self, clock: str = "wall") -> float | None:
        """The median over the rounds of :meth:`overheads_us` (``None``: none measured)."""
        overheads = self.overheads_us(clock)
        return statistics.median(overheads) if overheads else None

    def cpu_us(self, kind: str) -> float | None:
        """The median CPU µs the worker spent a job, for ``kind`` (``None``: not measured)."""
        rate = self.median(kind, lambda run: run.cpu_rate)
        return 1e6 / rate if rate else None

    def enqueue_rate(self, kind: str) -> float:
        """The median rate of enqueuing ``kind``, in jobs per second."""
        value = self.median(kind, lambda run: run.enqueue_rate)
        assert value is not None
        return value


@dataclass(slots=True)
class Section:
    """What one queue's measurement found."""

    key: str
    queue: str
    worker: str
    measures: dict[int, Measure]
    #: The store calls the tracked worker counted in its life, and the tracked jobs it ran
    #: (warm-up included); no calls when the worker cannot count them (a forking one).
    worker_store_calls: Counter[str] | None = None
    tracked_jobs_run: int = 0

    def runs(self, kind: str) -> Iterator[Run]:
        """Every measured run of ``kind``, at every count."""
        for measure in self.measures.values():
            yield from measure.runs[kind]

    def per_job(self, kind: str, counted: Callable[[Run], Counter[str]]) -> float:
        """The calls ``counted`` in each run of ``kind``, per job of those runs."""
        runs = list(self.runs(kind))
        jobs = sum(m.jobs * len(m.runs[kind]) for m in self.measures.values())
        return sum(sum(counted(run).values()) for run in runs) / jobs if runs else 0.0

    def store_round_trips(self) -> dict[str, float | None]:
        """Store calls per tracked job, while enqueuing and in the worker (``None``: uncounted)."""
        calls = self.worker_store_calls
        return {
            "enqueue": self.per_job("tracked", lambda run: run.enqueue_store_calls),
            "worker": None
            if calls is None or not self.tracked_jobs_run
            else sum(calls.values()) / self.tracked_jobs_run,
        }

    def redis_commands(self) -> dict[str, float]:
        """Redis commands per job, by where (enqueue, worker) and kind; empty if not in Redis."""
        return {
            f"{where} {kind}": self.per_job(kind, _redis_commands_at(where))
            for where in ("enqueue", "worker")
            for kind in KINDS
            if any(
                sum(counted.values())
                for run in self.runs(kind)
                for counted in run.redis_commands.values()
            )
        }

    def slope(self, clock: str = "wall") -> str:
        """Whether the µs/job (:meth:`Measure.overheads_us`) at the smallest and the largest
        count agree: ``flat`` when the two counts' ranges over the rounds overlap."""
        small, large = self.measures[min(self.measures)], self.measures[max(self.measures)]
        low, high = small.overheads_us(clock), large.overheads_us(clock)
        if not low or not high:
            return "-"
        if max(low) >= min(high) and max(high) >= min(low):
            return "flat"
        change = statistics.median(high) - statistics.median(low)
        return f"{'grows' if change > 0 else 'falls'} {abs(change):,.0f}"


def _redis_commands_at(where: str) -> Callable[[Run], Counter[str]]:
    return lambda run: run.redis_commands[where]


# -- one queue ------------------------------------------------------------------------------


class QueueRun:
    """One queue's two long-lived workers (untracked, tracked), and the batches they run."""

    def __init__(
        self, bench: QueueBench, store: SQLiteStore, folder: Path, redis_url: str | None
    ) -> None:
        """``store`` is this process's; ``folder`` this queue's own (reports and logs)."""
        self.bench, self.store, self.folder = bench, store, folder
        self.store_calls = StoreCalls()  # the calls this process makes, enqueueing
        self.store_calls.watch(store)
        self.redis: Any = None
        if bench.uses_redis and redis_url is not None:
            from redis import Redis

            self.redis = Redis.from_url(redis_url)
        self.workers: dict[bool, subprocess.Popen[bytes]] = {}
        self.batches = 0

    def _out(self, tracked: bool) -> Path:
        return self.folder / KINDS[tracked]

    def start(self) -> None:
        """Start both workers; they wait for the first gate job."""
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        for tracked in (False, True):
            environment = {
                **os.environ,
                "PYTHONPATH": path,
                "IMMORTUS_STORE": f"sqlite:///{self.store.path}",
                OUT_ENV: str(self._out(tracked)),
                TRACKED_ENV: "1" if tracked else "0",
            }
            with Path(f"{self._out(tracked)}.log").open("wb") as log_file:
                self.workers[tracked] = subprocess.Popen(
                    self.bench.worker_command(tracked=tracked),
                    cwd=ROOT,
                    env=environment,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )

    def stop(self) -> Counter[str] | None:
        """Stop both workers gracefully; return the tracked one's store calls.

        ``None`` when the worker does not count them. Raises BenchError when a worker exits
        with an error, or when a tracked worker that counts reported nothing.
        """
        codes = {tracked: self._stop(process) for tracked, process in self.workers.items()}
        self.workers.clear()
        for tracked, code in codes.items():
            if code != 0:
                raise BenchError(
                    f"the {KINDS[tracked]} worker exited with {code}:\n{self._tail(tracked)}"
                )
        calls_file = Path(f"{self._out(True)}.calls.json")
        if not self.bench.counts_store_calls:
            return None
        if not calls_file.exists():
            raise BenchError(f"the tracked worker reported no store calls:\n{self._tail(True)}")
        return Counter(json.loads(calls_file.read_text()))

    def stop_quietly(self) -> None:
        """Stop whatever worker still runs, however it exits (an error path); close Redis."""
        for process in self.workers.values():
            self._stop(process)
        self.workers.clear()
        if self.redis is not None:
            self.redis.close()

    def _stop(self, process: subprocess.Popen[bytes]) -> int:
        if process.poll() is None:
            process.send_signal(self.bench.stop_signal)
        try:
            return process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return -signal.SIGKILL

    def _tail(self, tracked: bool, lines: int = 20) -> str:
        text = Path(f"{self._out(tracked)}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def run(self, count: int, *, tracked: bool) -> Run:
        """Run one batch: a gate, ``count`` jobs enqueued behind it, released, timed, checked.

        Raises:
            BenchError: the worker died or never ran every job, or a check failed.
        """
        self.batches += 1
        batch = self.batches
        release = self.folder / f"release-{batch}"
        self.bench.enqueue_gate(count, batch, str(release), tracked=tracked)
        before = self.store_calls.calls.copy()
        self._reset_redis_counters()
        start = time.perf_counter()
        ids = self.bench.enqueue(count, tracked=tracked)
        enqueue_rate = count / (time.perf_counter() - start)
        enqueue_calls = self.store_calls.calls - before
        redis_enqueue = self._redis_commands()
        self._reset_redis_counters()
        release.touch()
        timing = self._wait_for_batch(count, batch, tracked=tracked)
        if len(set(ids)) != count:
            raise BenchError(f"{self.bench.name}: {len(set(ids))} distinct ids for {count} jobs")
        # The last job's end (its result, its `finished` record) follows the clock's last tick.
        _eventually(lambda: self.bench.check(ids, tracked=tracked))
        if tracked:
            _eventually(lambda: self._check_records(ids))
        redis_worker = self._redis_commands()
        cpu = timing["cpu"]
        return Run(
            rate=(count - 1) / timing["seconds"],  # first start to last end: count - 1 cycles
            cpu_rate=(count - 1) / cpu if cpu else None,
            enqueue_rate=enqueue_rate,
            enqueue_store_calls=enqueue_calls,
            redis_commands={"enqueue": redis_enqueue, "worker": redis_worker},
        )

    def _wait_for_batch(self, count: int, batch: int, *, tracked: bool) -> dict[str, Any]:
        """Wait for the worker's report on ``batch``; return it.

        Raises:
            BenchError: the worker exited, or did not run the batch in a generous time.
        """
        report = Path(f"{self._out(tracked)}-{batch}.timing.json")
        deadline = time.monotonic() + 120 + count / 10  # generous: a loaded machine
        while not report.exists():
            if self.workers[tracked].poll() is not None:
                raise BenchError(f"the {KINDS[tracked]} worker exited:\n{self._tail(tracked)}")
            if time.monotonic() > deadline:
                raise BenchError(f"batch {batch} did not end in time:\n{self._tail(tracked)}")
            time.sleep(0.01)
        timing: dict[str, Any] = json.loads(report.read_text())
        if timing["jobs"] != count:
            raise BenchError(f"the worker ran {timing['jobs']} jobs of batch {batch}, not {count}")
        return timing

    def _reset_redis_counters(self) -> None:
        if self.redis is not None:
            self.redis.config_resetstat()

    def _redis_commands(self) -> Counter[str]:
        if self.redis is None:
            return Counter()  # not in Redis: nothing counted
        stats = self.redis.info("commandstats")
        return Counter(
            {name: int(stat["calls"]) for name, stat in stats.items() if name not in OWN_COMMANDS}
        )

    def _check_records(self, ids: Sequence[str]) -> None:
        """Check every tracked job is ``finished`` in the store, with its enqueue and start.

        Raises:
            BenchError: a record is missing, or not finished, or lacks a time.
        """
        found = SQLiteStore.get_many(self.store, ids)  # the class's: the benchmark's own read
        wrong = [
            job_id
            for job_id in ids
            if job_id not in found
            or found[job_id].state is not State.FINISHED
            or found[job_id].enqueued_at is None
            or found[job_id].started_at is None
        ]
        if wrong:
            raise BenchError(f"{len(wrong)} store records are not finished: {wrong[:3]}")


def _eventually(check: Callable[[], None], timeout: float = 30.0) -> None:
    """Call ``check`` until it stops raising BenchError; re-raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
        except BenchError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
        else:
            return


def measure_queue(key: str, options: Options, folder: Path, redis_url: str) -> Section:
    """Measure one queue: start its workers, a warm-up batch of each kind, then the rounds.

    Raises:
        BenchError: a worker or a batch failed, or a check did not pass.
    """
    factory, in_redis = QUEUES[key]
    os.environ[QUEUE_URL_ENV] = redis_url if in_redis else str(folder / f"{key}-queue.sqlite3")
    store = SQLiteStore(folder / f"{key}-tracking.sqlite3")
    immortus.configure(store=store, progress_interval=0)
    bench = factory(options)
    runs = folder / key
    runs.mkdir()
    runner = QueueRun(bench, store, runs, redis_url if in_redis else None)
    section = Section(
        key=key,
        queue=bench.name,
        worker=bench.worker,
        measures={count: Measure(count) for count in options.counts},
    )
    try:
        bench.reset()
        log(f"{bench.name}: starting the workers ({bench.worker}); a warm-up batch of each kind")
        runner.start()
        for tracked in (False, True):
            runner.run(WARMUP_JOBS, tracked=tracked)
        for number in range(1, options.rounds + 1):
            counts = options.counts if number % 2 else options.counts[::-1]
            for count in counts:
                for tracked in (False, True) if number % 2 else (True, False):
                    run = runner.run(count, tracked=tracked)
                    section.measures[count].runs[KINDS[tracked]].append(run)
                    log(
                        f"{bench.name} round {number}/{options.rounds}: {count} jobs "
                        f"{KINDS[tracked]} {run.rate:,.0f} jobs/s"
                    )
        section.worker_store_calls = runner.stop()
        section.tracked_jobs_run = WARMUP_JOBS + options.rounds * sum(options.counts)
    finally:
        runner.stop_quietly()
        bench.close()
        store.close()
        immortus.config.reset()
    return section


# -- the report ----------------------------------------------------------------------------


def _number(value: float | None, form: str = ",.0f") -> str:
    return "-" if value is None else format(value, form)


def render(sections: Sequence[Section], options: Options, duration_s: float) -> str:
    """Return the report: a summary table over the queues, then each queue's figures."""
    small, large = min(options.counts), max(options.counts)
    head = [
        "queue",
        "untracked/s",
        "tracked/s",
        "ratio",
        "CPU ratio",
        f"µs/job @{small}",
        f"@{large}",
        f"CPU µs/job @{small}",
        f"@{large}",
        "slope wall / CPU",
    ]
    rows = []
    for section in sections:
        low, top = section.measures[small], section.measures[large]
        rows.append(
            [
                section.queue,
                f"{top.rate('untracked'):,.0f}",
                f"{top.rate('tracked'):,.0f}",
                f"{top.ratio():.2f}",
                _number(top.cpu_ratio(), ".2f"),
                _number(low.overhead_us()),
                _number(top.overhead_us()),
                _number(low.overhead_us("cpu")),
                _number(top.overhead_us("cpu")),
                f"{section.slope()} / {section.slope('cpu')}",
            ]
        )
    legend = (
        f"Rates and ratios at {large} jobs a batch, medians of the rounds. ratio: tracked / "
        f"untracked jobs per second of the worker (target >= {TARGET}); CPU ratio: the same per "
        "CPU second of the worker (steadier on a busy host). µs/job: what tracking adds to each "
        "job, 1/tracked - 1/untracked rate, paired within each round, at each batch size, on the "
        "wall clock and in the worker's CPU time. slope: flat when the rounds' µs/job at both "
        "sizes overlap, else how far the medians move (µs) from the smaller to the larger."
    )
    lines = [
        "tracking overhead: a real worker draining no-op jobs, untracked vs tracked "
        "(hooks + SQLite store)",
        f"{options.rounds} interleaved rounds of batches of {small} and {large} jobs; "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"whole run {duration_s:.0f} s",
        "",
        *table(head, rows),
        "",
        *textwrap.wrap(legend, width=100),
    ]
    for section in sections:
        lines += ["", *_queue_lines(section)]
    return "\n".join(lines)


def _queue_lines(section: Section) -> list[str]:
    head = [
        "jobs",
        "untracked/s",
        "tracked/s",
        "spread",
        "ratio",
        "CPU ratio",
        "CPU µs/job",
        "µs/job added [range]",
        "CPU µs/job added [range]",
        "enqueue ratio",
    ]
    rows = []
    for jobs, measure in sorted(section.measures.items()):
        rows.append(
            [
                str(jobs),
                f"{measure.rate('untracked'):,.0f}",
                f"{measure.rate('tracked'):,.0f}",
                f"{measure.spread('untracked'):.0%}/{measure.spread('tracked'):.0%}",
                f"{measure.ratio():.2f}",
                _number(measure.cpu_ratio(), ".2f"),
                f"{_number(measure.cpu_us('untracked'))} -> {_number(measure.cpu_us('tracked'))}",
                _ranged(measure, "wall"),
                _ranged(measure, "cpu"),
                f"{measure.enqueue_rate('tracked') / measure.enqueue_rate('untracked'):.2f}",
            ]
        )
    trips = section.store_round_trips()
    notes = [
        "spread: (max - min) / median of the rounds' rates; enqueue ratio: tracked / untracked "
        "enqueue rate. Store round trips a tracked job: "
        + ", ".join(f"{where} {_number(n, '.2f')}" for where, n in trips.items())
        + "."
    ]
    commands = section.redis_commands()
    if commands:
        notes.append(
            "Redis commands a job, untracked -> tracked (the worker's: while it ran the batch, "
            "with the other worker's idle waits): "
            + ", ".join(
                f"{at} {commands[f'{at} untracked']:.2f} -> {commands[f'{at} tracked']:.2f}"
                for at in ("enqueue", "worker")
            )
            + "."
        )
    return [
        f"{section.queue}: {section.worker}",
        *table(head, rows, left=0),
        *(line for note in notes for line in textwrap.wrap(note, width=100)),
    ]


def _ranged(measure: Measure, clock: str) -> str:
    overheads = measure.overheads_us(clock)
    if not overheads:
        return "-"
    median = statistics.median(overheads)
    return f"{median:,.0f} [{min(overheads):,.0f}, {max(overheads):,.0f}]"


def figures(sections: Sequence[Section], options: Options, duration_s: float) -> dict[str, Any]:
    """Every figure of the run, for ``bench/results/latest.json``."""
    queues: dict[str, Any] = {}
    for section in sections:
        counts: dict[str, Any] = {}
        for jobs, measure in sorted(section.measures.items()):
            cpu = measure.cpu_ratio()
            counts[str(jobs)] = {
                "untracked_jobs_per_s": round(measure.rate("untracked"), 1),
                "tracked_jobs_per_s": round(measure.rate("tracked"), 1),
                "ratio": round(measure.ratio(), 3),
                "cpu_ratio": None if cpu is None else round(cpu, 3),
                "overhead_us_per_job": _rounded(measure.overhead_us()),
                "overhead_us_per_job_rounds": [round(v, 1) for v in measure.overheads_us()],
                "cpu_overhead_us_per_job": _rounded(measure.overhead_us("cpu")),
                "cpu_overhead_us_per_job_rounds": [
                    round(v, 1) for v in measure.overheads_us("cpu")
                ],
                "cpu_us_per_job": {kind: _rounded(measure.cpu_us(kind)) for kind in KINDS},
                "untracked_rates": [round(run.rate, 1) for run in measure.runs["untracked"]],
                "tracked_rates": [round(run.rate, 1) for run in measure.runs["tracked"]],
                "enqueue_untracked_per_s": round(measure.enqueue_rate("untracked"), 1),
                "enqueue_tracked_per_s": round(measure.enqueue_rate("tracked"), 1),
            }
        queues[section.key] = {
            "queue": section.queue,
            "worker": section.worker,
            "counts": counts,
            "overhead_slope": {"wall": section.slope(), "cpu": section.slope("cpu")},
            "store_round_trips_per_job": section.store_round_trips(),
            "redis_commands_per_job": {k: round(v, 2) for k, v in section.redis_commands().items()},
        }
    return {
        "counts": list(options.counts),
        "rounds": options.rounds,
        "target_ratio": TARGET,
        "duration_s": round(duration_s, 1),
        "queues": queues,
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# -- the command ---------------------------------------------------------------------------


@contextlib.contextmanager
def _private_redis(url: str | None) -> Iterator[str]:
    """Yield ``url``, or the URL of a private redis-server stopped at the end."""
    if url:
        yield url
        return
    from tests.services import RedisServer

    log("starting a private redis-server")
    with RedisServer() as server:
        yield server.url


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tracking_overhead",
        description="Jobs per second of each queue's worker, untracked vs tracked.",
    )
    add_modes(
        parser,
        quick=f"{QUICK_ROUNDS} rounds of batches of {' and '.join(map(str, QUICK_COUNTS))} jobs",
        full=f"{FULL_ROUNDS} rounds of batches of {' and '.join(map(str, FULL_COUNTS))} jobs",
    )
    parser.add_argument("--counts", help="comma-separated batch sizes, instead of the mode's")
    parser.add_argument("--rounds", type=int, help="rounds, instead of the mode's")
    parser.add_argument("--queue", choices=sorted(QUEUES), action="append", help="(all)")
    parser.add_argument("--fork", action="store_true", help="RQ: its default, forking worker")
    parser.add_argument("--redis-url", default=None, help="an EMPTY Redis database (flushed)")
    parser.add_argument(
        "--celery-pool", choices=("solo", "threads"), default="solo", help="Celery's pool (solo)"
    )
    args = parser.parse_args(argv)
    counts: tuple[int, ...] = FULL_COUNTS if args.full else QUICK_COUNTS
    if args.counts:
        try:
            counts = tuple(int(count) for count in args.counts.split(","))
        except ValueError:
            parser.error(f"--counts takes whole numbers, not {args.counts!r}")
    if len(set(counts)) < 2 or min(counts) < WARMUP_JOBS:
        parser.error(f"--counts takes two counts or more, each at least {WARMUP_JOBS}")
    args.counts = tuple(sorted(set(counts)))
    args.rounds = args.rounds or (FULL_ROUNDS if args.full else QUICK_ROUNDS)
    if args.rounds < 1:
        parser.error("--rounds takes 1 or more")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the report; return 0 (or 1 if it could not be measured)."""
    args = _parse(argv)
    options = Options(
        counts=args.counts,
        rounds=args.rounds,
        fork=args.fork,
        redis_url=args.redis_url,
        celery_pool=args.celery_pool,
    )
    os.environ.pop(OUT_ENV, None)  # this process enqueues: its job clocks never report
    keys = list(dict.fromkeys(args.queue or QUEUES))
    sections: list[Section] = []
    with (
        tempfile.TemporaryDirectory(prefix="immortus-bench-") as tmp,
        _private_redis(options.redis_url) as redis_url,
    ):
        for key in keys:
            try:
                sections.append(measure_queue(key, options, Path(tmp), redis_url))
            except BenchError as exc:
                log(f"FAILED: {key}: {exc}")
                return 1
    duration_s = time.perf_counter() - STARTED
    print(render(sections, options, duration_s))
    path = results.save("tracking_overhead", figures(sections, options, duration_s))
    log(f"figures written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
