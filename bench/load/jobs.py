"""The load's jobs: seeded in every state, then moved by a writer thread as a worker would."""

from __future__ import annotations

import heapq
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from bench.common import BenchError
from bench.load.plan import (
    FAILING_EVERY,
    PREFIX,
    LoadPlan,
)
from immortus import Progress, lifecycle
from immortus.web.core import Verifier


@dataclass(frozen=True, slots=True)
class StreamJob:
    """A job a stream follows: its request path, and the state it must end in."""

    job_id: str
    path: str
    final: str


@dataclass(frozen=True, slots=True)
class Seeded:
    """The seeded jobs: the polled ones (and which of them run), and each phase's stream jobs."""

    poll_paths: list[str]
    running: list[str]
    warmup_streams: list[StreamJob]
    streams: list[StreamJob]


def _path(route: str, job_id: str, verifier: Verifier) -> str:
    return f"{PREFIX}/{route}/{job_id}?token={verifier.token_for(job_id)}"


def _write(*writes: Callable[[], bool]) -> None:
    for write in writes:
        if not write():
            raise BenchError("seeding failed: the store refused a write (see the log above)")


def _polled_writes(job_id: str, kind: int) -> list[Callable[[], bool]]:
    """The writes that put a polled job in the state of its ``kind`` (0-19, see :func:`seed`)."""
    failure = RuntimeError("load test: a planned failure")
    enqueued = partial(lifecycle.job_enqueued, job_id)
    started = partial(lifecycle.job_started, job_id)
    if kind < 8:
        progress = Progress(current=kind * 10, total=100, message=f"row {kind * 10}")
        return [enqueued, started, partial(lifecycle.job_progress, job_id, progress)]
    if kind < 12:
        return [enqueued]
    if kind < 16:
        return [enqueued, started, partial(lifecycle.job_finished, job_id)]
    if kind < 18:
        return [enqueued, started, partial(lifecycle.job_failed, job_id, failure)]
    if kind < 19:
        return [enqueued, started, partial(lifecycle.job_retrying, job_id, failure)]
    return [enqueued, partial(lifecycle.job_cancelled, job_id)]


def seed(plan: LoadPlan, verifier: Verifier) -> Seeded:
    """Write the polled jobs in mixed states and each phase's stream jobs, waiting, to the store.

    Of every 20 polled jobs, 8 run with progress (the writer moves it during the run), 4 wait,
    4 finished, 2 failed, 1 is retrying and 1 was cancelled. Ids are fresh for every run.

    Raises:
        BenchError: the store refused a write.
    """
    run = secrets.token_hex(3)
    poll_paths: list[str] = []
    running: list[str] = []
    for number in range(plan.jobs):
        job_id = f"load-{run}-{number:05d}"
        _write(*_polled_writes(job_id, number % 20))
        if number % 20 < 8:
            running.append(job_id)
        poll_paths.append(_path("verify", job_id, verifier))

    def stream_jobs(phase: str) -> list[StreamJob]:
        jobs = []
        for number in range(plan.streams):
            job_id = f"stream-{run}-{phase}-{number:04d}"
            _write(partial(lifecycle.job_enqueued, job_id))
            final = "failed" if number % FAILING_EVERY == FAILING_EVERY - 1 else "finished"
            jobs.append(StreamJob(job_id, _path("stream", job_id, verifier), final))
        return jobs

    return Seeded(poll_paths, running, stream_jobs("warmup"), stream_jobs("main"))


# -- the writer -----------------------------------------------------------------------------


@dataclass(order=True, frozen=True, slots=True)
class Step:
    """One planned write: when (``time.monotonic()``), to which job, and whether it is its last."""

    at: float
    job_id: str = field(compare=False)
    write: Callable[[], bool] = field(compare=False)
    last: bool = field(compare=False, default=False)


def stream_steps(jobs: Sequence[StreamJob], start: float, window: float) -> list[Step]:
    """Plan each stream job's writes: started, 1/3, 2/3, then its end, evenly spaced.

    The jobs end one after the other between 20 % and 100 % of ``window`` seconds after
    ``start``, so streams are still running while the others end.
    """
    failure = RuntimeError("load test: a planned failure")
    steps: list[Step] = []
    for number, job in enumerate(jobs):
        end = window * (0.2 + 0.8 * (number + 1) / len(jobs))
        last: Callable[[], bool] = (
            partial(lifecycle.job_failed, job.job_id, failure)
            if job.final == "failed"
            else partial(lifecycle.job_finished, job.job_id)
        )
        writes: list[Callable[[], bool]] = [
            partial(lifecycle.job_started, job.job_id),
            partial(lifecycle.job_progress, job.job_id, Progress(current=1, total=3)),
            partial(lifecycle.job_progress, job.job_id, Progress(current=2, total=3)),
            last,
        ]
        for index, write in enumerate(writes, 1):
            at = start + end * index / len(writes)
            steps.append(Step(at, job.job_id, write, last=index == len(writes)))
    return steps


class Writer(threading.Thread):
    """Writes to the store as a worker process would, until :meth:`stop`.

    It makes the planned :class:`Step` writes when they are due and, in between, moves the
    progress of the running polled jobs at ``rate`` writes a second, one job after another.
    ``committed`` maps each job whose last step was written to the ``time.monotonic()`` at which
    that write returned (committed); ``errors`` counts the writes the store refused.
    """

    def __init__(self, running: Sequence[str], rate: float) -> None:
        super().__init__(name="load-writer", daemon=True)
        self.running = list(running)
        self.rate = rate
        self.committed: dict[str, float] = {}
        self.writes = 0
        self.errors = 0
        self._steps: list[Step] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def schedule(self, steps: Sequence[Step]) -> None:
        """Add ``steps`` to the plan (from any thread)."""
        with self._lock:
            for step in steps:
                heapq.heappush(self._steps, step)

    def stop(self) -> None:
        """Stop writing and wait for the thread to end."""
        self._halt.set()
        self.join()

    def run(self) -> None:
        """Write until stopped; what the store refuses is counted, never raised."""
        churned = 0
        next_churn = time.monotonic()
        while not self._halt.is_set():
            for step in self._due(time.monotonic()):
                self._make(step.write)
                if step.last:
                    self.committed[step.job_id] = time.monotonic()
            now = time.monotonic()
            if self.rate > 0 and self.running and now >= next_churn:
                job_id = self.running[churned % len(self.running)]
                current = (churned // len(self.running)) % 101
                progress = Progress(current=current, total=100, message=f"row {current}")
                self._make(partial(lifecycle.job_progress, job_id, progress))
                churned += 1
                next_churn = max(next_churn + 1 / self.rate, now - 1.0)
            wake = min(self._next_at(), next_churn if self.rate > 0 else now + 0.05)
            self._halt.wait(min(0.05, max(0.0, wake - time.monotonic())))

    def _due(self, now: float) -> list[Step]:
        with self._lock:
            due = []
            while self._steps and self._steps[0].at <= now:
                due.append(heapq.heappop(self._steps))
            return due

    def _next_at(self) -> float:
        with self._lock:
            return self._steps[0].at if self._steps else float("inf")

    def _make(self, write: Callable[[], bool]) -> None:
        self.writes += 1
        if not write():
            self.errors += 1
