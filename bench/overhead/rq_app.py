"""The RQ jobs of the tracking overhead benchmark, and how it drives them (:class:`RQBench`).

The benchmark enqueues from its own process (importing this module, with
:data:`~bench.overhead.worker.QUEUE_URL_ENV` naming the Redis database). Each kind of job has its
own queue and its own long-lived ``rq worker``, which imports this module at start-up as its
settings module (``-c``):

- the worker's class is ``SimpleWorker`` (each job in the worker's own process), the one a
  profiler can follow and whose rate is not mostly the cost of a fork; with ``fork=True``, RQ's
  default worker, which forks a work horse per job;
- the tracked worker runs with ``--job-class immortus.queues.rq.TrackedJob``, the one line of
  ``docs/queues/rq.md``; the untracked one is RQ as it comes.

The jobs only tick :class:`~bench.overhead.worker.JobClock`. A forking worker's horses share the
clock (shared memory) but not the store-call counter, so store calls are counted only without fork.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from collections.abc import Sequence

import immortus
from bench.common import BenchError
from bench.overhead.worker import (
    GATE_TIMEOUT_S,
    QUEUE_URL_ENV,
    JobClock,
    queue_name,
    tracked_worker,
    watch_store_calls,
)

clock = JobClock.from_environment()


def gate(jobs: int, batch: int, release: str) -> None:
    """Hold the worker until the benchmark has enqueued the batch behind this job."""
    clock.gate(jobs, batch, release)


def untracked_noop() -> None:
    """A job that does nothing but tick the clock: no immortus anywhere near it."""
    clock.tick()


@immortus.track(queue="rq")
def tracked_noop() -> None:
    """The same job, opted in to tracking."""
    clock.tick()


if tracked_worker():
    atexit.register(watch_store_calls().write)  # after the warm shutdown SIGTERM starts


class RQBench:
    """RQ as the benchmark drives it: enqueue, the workers' command lines, the check."""

    name = "RQ"
    uses_redis = True
    stop_signal = signal.SIGTERM  # warm shutdown: the running job ends first

    def __init__(self, *, fork: bool = False) -> None:
        from redis import Redis
        from rq import Queue

        from immortus.queues.rq import install

        self.url = os.environ[QUEUE_URL_ENV]
        self.fork = fork
        self.worker = (
            "rq worker (forking a work horse per job)"
            if fork
            else "rq worker --worker-class SimpleWorker"
        )
        self.counts_store_calls = not fork
        self.redis = Redis.from_url(self.url)
        self.queues = {
            False: Queue(queue_name(tracked=False), connection=self.redis),
            True: install(Queue(queue_name(tracked=True), connection=self.redis)),
        }

    def reset(self) -> None:
        """Empty the Redis database before the workers start."""
        self.redis.flushdb()

    def worker_command(self, *, tracked: bool) -> list[str]:
        """A long-lived ``rq worker`` on the queue of one kind of job."""
        command = [
            sys.executable, "-m", "rq.cli", "worker", "--quiet", "--url", self.url,
            "--config", __name__, "--name", f"immortus-bench-{os.getpid()}-{int(tracked)}",
        ]  # fmt: skip
        if not self.fork:
            command += ["--worker-class", "rq.worker.SimpleWorker"]
        if tracked:
            command += ["--job-class", "immortus.queues.rq.TrackedJob"]
        return [*command, queue_name(tracked=tracked)]

    def enqueue_gate(self, jobs: int, batch: int, release: str, *, tracked: bool) -> None:
        """Enqueue the gate job in front of a batch."""
        timeout = int(GATE_TIMEOUT_S) + 60
        self.queues[tracked].enqueue(gate, jobs, batch, release, job_timeout=timeout)

    def enqueue(self, count: int, *, tracked: bool) -> list[str]:
        """Enqueue ``count`` jobs, with immortus's job class (tracked) or RQ's own."""
        queue = self.queues[tracked]
        function = tracked_noop if tracked else untracked_noop
        return [queue.enqueue(function).id for _ in range(count)]

    def check(self, ids: Sequence[str], *, tracked: bool) -> None:
        """Check RQ ran every job: none left, each one's hash ``finished``.

        Raises:
            BenchError: jobs are left in the queue, or one did not finish.
        """
        from rq.job import Job
        from rq.job import JobStatus as RQState

        left = len(self.queues[tracked])
        if left:
            raise BenchError(f"{left} RQ jobs are left in the queue")
        jobs = Job.fetch_many(list(ids), connection=self.redis)
        unfinished = [
            job_id
            for job_id, job in zip(ids, jobs, strict=True)
            if job is None or job.get_status(refresh=False) != RQState.FINISHED
        ]
        if unfinished:
            raise BenchError(f"{len(unfinished)} RQ jobs did not finish: {unfinished[:3]}")

    def close(self) -> None:
        """Close the connection to Redis."""
        self.redis.close()
