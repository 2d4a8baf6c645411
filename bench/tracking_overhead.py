"""What does tracking cost a queue's worker? Jobs per second, untracked vs tracked.

For each queue (one function per queue, :data:`SECTIONS`: RQ and Celery), a real worker drains
``--jobs`` no-op jobs (2 000 by default) twice per round: **untracked** (the queue as it comes:
no hooks, a job immortus never heard of) and **tracked** (immortus's hooks installed, the
function opted in with ``@immortus.track``, an SQLite store). Rounds alternate which goes first,
so that a noisy neighbour hurts both alike; the median rate of each is compared:

- ``tracked / untracked``: the worker's jobs per second with tracking over those without
  (target: at least 0.90);
- store round trips per job: every call the store received (``record``, ``get``...), counted
  by a wrapper around the SQLite store, divided by the jobs, in the enqueuing process and in the
  worker.

RQ's worker is ``SimpleWorker`` in burst mode, in this process: RQ's default worker forks a
work horse per job, and the fork costs far more than a no-op job or the tracking (``--fork``
measures ``rq worker --burst`` in a subprocess instead; the store is then counted from the
worker's events: one ``record`` each). Enqueueing is timed too, apart.

Celery's worker is ``celery -A bench.celery_overhead_app worker --pool solo --concurrency 1``,
in a subprocess started after every task was enqueued; the store is the SQLite file its
``IMMORTUS_STORE`` names, as in production. The solo pool runs each task, and every hook around
it, on the thread that also fetches the messages: whatever tracking costs shows in full in the
rate, with no second thread to hide the store's I/O behind or a scheduler to add noise (and it
is the pool a profiler can follow). ``--celery-pool threads`` measures the threads pool with one
thread instead. The clock is read inside the tasks (both kinds alike): from the first task's
start to the last task's end, so the worker's start-up and shutdown are not timed; so are the
worker's CPU seconds. The worker counts its store calls with a wrapper on the store it opened;
Redis's own command counters give the broker and result-backend commands per job.

Run ``python -m bench.tracking_overhead [--quick] [--fork] [--queue rq|celery]`` from the
repository root. Nothing is asserted: the figures are printed, with the machine, and the ratios
are what to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
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

from tests.support import signal_handlers_kept

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
    #: Jobs per CPU second of the worker's process (steadier on a busy host): this one for an
    #: in-process worker, the worker's own for Celery's; none for RQ's forking worker.
    cpu_rates: dict[str, list[float]] = field(
        default_factory=lambda: {"untracked": [], "tracked": []}
    )
    enqueue_rates: dict[str, list[float]] = field(
        default_factory=lambda: {"untracked": [], "tracked": []}
    )
    #: Store calls per job, by where they happen ("enqueue", "worker").
    round_trips: dict[str, float] = field(default_factory=dict)
    #: More lines for the report (a queue's own round trips, say).
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Options:
    """What the command line asked for."""

    jobs: int
    rounds: int
    #: RQ: time ``rq worker --burst`` (forking) instead of an in-process ``SimpleWorker``.
    fork: bool = False
    #: An empty Redis database to use (flushed), instead of a private redis-server.
    redis_url: str | None = None
    #: Celery: the worker's pool, ``solo`` or ``threads`` (one thread either way).
    celery_pool: str = "solo"


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


def rq_section(folder: Path, options: Options) -> Section:
    """Measure RQ: ``rounds`` interleaved runs of ``jobs`` no-op jobs, untracked and tracked.

    Raises:
        BenchError: a run did not process every job, or the store's records are not finished.
    """
    from redis import Redis

    jobs, rounds, fork, url = options.jobs, options.rounds, options.fork, options.redis_url

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
            with signal_handlers_kept():
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


# -- Celery --------------------------------------------------------------------------------

#: The module of the Celery app and its two tasks, which the worker imports too.
CELERY_APP: Final = "bench.celery_overhead_app"
#: Redis's counters of the benchmark's own questions, left out of the commands per job.
_OWN_COMMANDS: Final = frozenset({"cmdstat_info", "cmdstat_config", "cmdstat_flushdb"})


def celery_section(folder: Path, options: Options) -> Section:
    """Measure Celery: ``rounds`` interleaved runs of ``jobs`` no-op tasks, untracked and tracked.

    Raises:
        BenchError: a worker failed or did not run every task, or a result or a store record
            is not finished.
    """
    from redis import Redis

    store_path = folder / "celery-tracking.sqlite3"
    store = CountingStore(store_path)
    bench = _CeleryBench(store, f"sqlite:///{store_path}", folder, options)
    immortus.configure(store=store, progress_interval=0)
    section = Section(queue="Celery", worker=bench.worker_name, jobs=options.jobs)
    redis_commands: dict[str, Counter[str]] = {}
    try:
        with _private_redis(options.redis_url) as redis_url:
            bench.app.conf.update(broker_url=redis_url, result_backend=redis_url)
            bench.url, bench.connection = redis_url, Redis.from_url(redis_url)
            log(f"Celery: warm-up, {bench.worker_name}")
            bench.run(tracked=False)
            bench.run(tracked=True)
            bench.calls = {"enqueue": Counter(), "worker": Counter()}
            redis_commands = {
                f"{where} {kind}": Counter()
                for where in ("enqueue", "worker")
                for kind in ("untracked", "tracked")
            }
            for number in range(1, options.rounds + 1):
                for tracked in (False, True) if number % 2 else (True, False):
                    kind = "tracked" if tracked else "untracked"
                    run = bench.run(tracked=tracked)
                    section.rates[kind].append(run.rate)
                    section.cpu_rates[kind].append(run.cpu_rate)
                    section.enqueue_rates[kind].append(run.enqueue_rate)
                    redis_commands[f"enqueue {kind}"] += run.redis_enqueue
                    redis_commands[f"worker {kind}"] += run.redis_worker
                    log(f"Celery round {number}/{options.rounds}: {kind} {run.rate:,.0f} jobs/s")
    finally:
        bench.close()
        store.close()
        immortus.config.reset()
    total = options.jobs * options.rounds
    for where, counted in bench.calls.items():
        section.round_trips[where] = sum(counted.values()) / total
    section.notes += _redis_notes(redis_commands, total)
    return section


def _redis_notes(commands: dict[str, Counter[str]], jobs: int) -> list[str]:
    """Return the report's lines on Redis: commands per job, and what tracking added."""
    if not commands or not jobs:
        return []
    per_job = {name: sum(counted.values()) / jobs for name, counted in commands.items()}
    lines = [
        "Redis commands per job (broker + result backend; worker's include its start and stop):",
        "  "
        + ", ".join(
            f"{where} {per_job[f'{where} untracked']:.2f} -> {per_job[f'{where} tracked']:.2f}"
            for where in ("enqueue", "worker")
        ),
    ]
    for where in ("enqueue", "worker"):
        added = commands[f"{where} tracked"].copy()
        added.subtract(commands[f"{where} untracked"])
        more = {name: count / jobs for name, count in added.items() if count / jobs >= 0.5}
        if more:
            lines.append(
                f"  tracking adds, {where}: "
                + ", ".join(f"{name.removeprefix('cmdstat_')} {n:+.2f}" for name, n in more.items())
            )
    return lines


@dataclass(frozen=True, slots=True)
class _CeleryRun:
    """What one Celery run measured."""

    rate: float
    cpu_rate: float
    enqueue_rate: float
    #: Redis commands by name (``cmdstat_lpush``...), while enqueuing and while the worker ran.
    redis_enqueue: Counter[str]
    redis_worker: Counter[str]


class _CeleryBench:
    """One Celery run: enqueue the tasks, start a worker, time the tasks, check and count."""

    def __init__(
        self, store: CountingStore, store_url: str, folder: Path, options: Options
    ) -> None:
        self.store, self.store_url, self.folder = store, store_url, folder
        self.jobs, self.pool = options.jobs, options.celery_pool
        if self.jobs < 2:
            raise BenchError("Celery needs at least 2 jobs a run (the clock starts at the first)")
        self.worker_name = f"celery worker --pool {self.pool} --concurrency 1 (a subprocess)"
        self.module = importlib.import_module(CELERY_APP)
        self.app: Any = self.module.app
        self.url = ""
        self.connection: Any = None
        self.runs = 0
        self.calls: dict[str, Counter[str]] = {"enqueue": Counter(), "worker": Counter()}

    def close(self) -> None:
        """Take the hooks off this process, and close the app's connections."""
        from immortus.queues.celery import uninstall

        uninstall(self.app)
        if self.connection is not None:
            self.connection.close()
            self.app.close()

    def run(self, *, tracked: bool) -> _CeleryRun:
        """Enqueue every task, then drain them with a fresh worker; return what was measured.

        Raises:
            BenchError: the worker failed, or a task, result or store record is missing.
        """
        from immortus.queues.celery import install, uninstall

        self.runs += 1
        self.connection.flushdb()
        if tracked:
            install(self.app)
        else:
            uninstall(self.app)  # the app as it comes: no hooks in this process either
        task = self.module.tracked_noop if tracked else self.module.untracked_noop
        self.connection.config_resetstat()
        before = self.store.calls.copy()
        start = time.perf_counter()
        ids: list[str] = [task.delay().id for _ in range(self.jobs)]
        enqueue_rate = self.jobs / (time.perf_counter() - start)
        enqueued = self.store.calls.copy()
        redis_enqueue = self._redis_commands()
        self.connection.config_resetstat()
        timing, worker_calls = self._drain(tracked=tracked)
        redis_worker = self._redis_commands()
        if tracked:
            self.calls["enqueue"] += enqueued - before
            self.calls["worker"] += worker_calls
        self._check(ids, tracked=tracked)
        return _CeleryRun(
            rate=(self.jobs - 1) / timing["seconds"],  # first start to last end: jobs - 1 gaps
            cpu_rate=(self.jobs - 1) / timing["cpu"],
            enqueue_rate=enqueue_rate,
            redis_enqueue=redis_enqueue,
            redis_worker=redis_worker,
        )

    def _redis_commands(self) -> Counter[str]:
        stats = self.connection.info("commandstats")
        return Counter(
            {name: int(stat["calls"]) for name, stat in stats.items() if name not in _OWN_COMMANDS}
        )

    def _drain(self, *, tracked: bool) -> tuple[dict[str, float], Counter[str]]:
        """Run a worker until every task ran; return its timing and its store calls.

        Raises:
            BenchError: the worker exited early, failed, or was too slow to be waited for.
        """
        out = self.folder / f"celery-run-{self.runs}"
        timing_file, calls_file = Path(f"{out}.timing.json"), Path(f"{out}.calls.json")
        log_file = self.folder / f"celery-run-{self.runs}.log"
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "IMMORTUS_STORE": self.store_url,
            "IMMORTUS_BENCH_CELERY_URL": self.url,
            "IMMORTUS_BENCH_CELERY_TRACKED": "1" if tracked else "0",
            "IMMORTUS_BENCH_CELERY_JOBS": str(self.jobs),
            "IMMORTUS_BENCH_CELERY_OUT": str(out),
        }
        command = [
            sys.executable, "-m", "celery", "-A", CELERY_APP, "worker",
            "--pool", self.pool, "--concurrency", "1", "--queues", self.module.QUEUE,
            "--without-heartbeat", "--without-mingle", "--without-gossip", "--loglevel", "warning",
        ]  # fmt: skip
        deadline = time.monotonic() + 120 + self.jobs / 20  # generous: a loaded machine
        with log_file.open("wb") as output:
            process = subprocess.Popen(
                command, cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT
            )
        try:
            while not timing_file.exists():
                if process.poll() is not None:
                    raise BenchError(f"the Celery worker exited early:\n{_tail(log_file)}")
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"the Celery worker did not run every task:\n{_tail(log_file)}"
                    )
                time.sleep(0.05)
        finally:
            process.send_signal(signal.SIGTERM)  # warm shutdown: the running task ends first
            try:
                code = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                code = -signal.SIGKILL
        if code != 0:
            raise BenchError(f"the Celery worker exited with {code}:\n{_tail(log_file)}")
        timing = json.loads(timing_file.read_text())
        if timing["jobs"] != self.jobs:
            raise BenchError(f"the Celery worker ran {timing['jobs']} tasks, not {self.jobs}")
        calls: Counter[str] = Counter()
        if tracked:
            if not calls_file.exists():
                raise BenchError(f"the tracked worker counted no store calls:\n{_tail(log_file)}")
            calls.update(json.loads(calls_file.read_text()))
        return timing, calls

    def _check(self, ids: Sequence[str], *, tracked: bool) -> None:
        """Check that every task succeeded, and every record is finished (else the rate is void).

        Raises:
            BenchError: tasks are left in the queue, or a result or a record is not finished.
        """
        from immortus.queues.celery import CeleryStrategy

        left = self.connection.llen(self.module.QUEUE)
        if left:
            raise BenchError(f"{left} Celery tasks were left in the queue")
        results = CeleryStrategy(self.app).native_status_many(ids)  # one MGET
        unfinished = [i for i in ids if i not in results or results[i].state is not State.FINISHED]
        if unfinished:
            raise BenchError(f"{len(unfinished)} Celery results are not SUCCESS: {unfinished[:3]}")
        if tracked:
            records = SQLiteStore.get_many(self.store, ids)  # uncounted: the bench's own read
            unfinished = [
                i
                for i in ids
                if i not in records
                or records[i].state is not State.FINISHED
                or records[i].enqueued_at is None
                or records[i].started_at is None
            ]
            if unfinished:
                raise BenchError(
                    f"{len(unfinished)} store records are not finished: {unfinished[:3]}"
                )


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


#: One measuring function per queue.
SECTIONS: Final[dict[str, Callable[[Path, Options], Section]]] = {
    "rq": rq_section,
    "celery": celery_section,
}


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
            *section.notes,
        ]
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.tracking_overhead", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 300 jobs")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs a run (2000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    parser.add_argument("--fork", action="store_true", help="RQ: time `rq worker --burst`")
    parser.add_argument("--redis-url", default=None, help="an EMPTY Redis database (flushed)")
    parser.add_argument(
        "--celery-pool", choices=("solo", "threads"), default="solo", help="Celery's pool (solo)"
    )
    parser.add_argument("--queue", choices=sorted(SECTIONS), action="append", help="(all)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the report; return 0 (or 1 if it could not be measured)."""
    args = _parse(argv)
    jobs, rounds = (300, 3) if args.quick else (args.jobs, args.rounds)
    options = Options(
        jobs=jobs,
        rounds=rounds,
        fork=args.fork,
        redis_url=args.redis_url,
        celery_pool=args.celery_pool,
    )
    with tempfile.TemporaryDirectory(prefix="immortus-bench-") as tmp:
        try:
            sections = [SECTIONS[name](Path(tmp), options) for name in args.queue or SECTIONS]
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
    print(render(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
