"""One queue under the tracking-overhead benchmark: its two workers and their batches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import immortus
from bench.common import BenchError, log
from bench.overhead.bare import BareWriter
from bench.overhead.figures import KINDS, NO_HISTORY, Measure, Run, Section
from bench.overhead.queues import QUEUES, Options, QueueBench
from bench.overhead.worker import (
    NO_HISTORY_SUFFIX,
    OUT_ENV,
    QUEUE_URL_ENV,
    TRACKED_ENV,
    StoreCalls,
)
from devservices.processes import ROOT, python_path
from immortus.status import State
from immortus.stores.sqlite import SQLiteStore

WARMUP_JOBS: Final = 20
#: Redis's counters of the benchmark's own questions, left out of the commands per job.
OWN_COMMANDS: Final = frozenset({"cmdstat_info", "cmdstat_config", "cmdstat_flushdb"})


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
        self.bare = BareWriter(store.path)

    def _out(self, tracked: bool) -> Path:
        return self.folder / KINDS[tracked]

    def start(self) -> None:
        """Start both workers; they wait for the first gate job."""
        path = python_path()
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
        self.bare.close()
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

    def run(self, count: int, *, tracked: bool, history: bool = True) -> Run:
        """Run one batch: a gate, ``count`` jobs enqueued behind it, released, timed, checked.

        ``history=False``: the tracked worker runs the batch with the job history off.

        Raises:
            BenchError: the worker died or never ran every job, or a check failed.
        """
        self.batches += 1
        batch = self.batches
        release = self.folder / f"release-{batch}"
        if not history:
            Path(f"{release}{NO_HISTORY_SUFFIX}").touch()
        self.bench.enqueue_gate(count, batch, str(release), tracked=tracked)
        before = self.store_calls.calls.copy()
        self._reset_redis_counters()
        start, start_cpu = time.perf_counter(), time.process_time()
        ids = self.bench.enqueue(count, tracked=tracked)
        enqueue_rate = count / (time.perf_counter() - start)
        enqueue_cpu = (time.process_time() - start_cpu) / count
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
        bare = self.bare.measure(count)  # the floor, beside the batch: same file, same moment
        cpu = timing["cpu"]
        return Run(
            rate=(count - 1) / timing["seconds"],  # first start to last end: count - 1 cycles
            cpu_rate=(count - 1) / cpu if cpu else None,
            enqueue_rate=enqueue_rate,
            enqueue_cpu_s=enqueue_cpu,
            bare=bare,
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


def _kinds(options: Options) -> list[tuple[bool, bool]]:
    """The batches of a round, as ``(tracked, history)``: the job history off too if asked."""
    kinds = [(False, True), (True, True)]
    return [*kinds, (True, False)] if options.history else kinds


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
        kinds = _kinds(options)
        for tracked, history in kinds:
            runner.run(WARMUP_JOBS, tracked=tracked, history=history)
        for number in range(1, options.rounds + 1):
            counts = options.counts if number % 2 else options.counts[::-1]
            for count in counts:
                for tracked, history in kinds if number % 2 else kinds[::-1]:
                    run = runner.run(count, tracked=tracked, history=history)
                    kind = KINDS[tracked] if history else NO_HISTORY
                    section.measures[count].runs[kind].append(run)
                    log(
                        f"{bench.name} round {number}/{options.rounds}: {count} jobs "
                        f"{kind} {run.rate:,.0f} jobs/s"
                    )
        section.worker_store_calls = runner.stop()
        tracked_batches = len(kinds) - 1
        section.tracked_jobs_run = tracked_batches * (
            WARMUP_JOBS + options.rounds * sum(options.counts)
        )
    finally:
        runner.stop_quietly()
        bench.close()
        store.close()
        immortus.config.reset()
    return section
