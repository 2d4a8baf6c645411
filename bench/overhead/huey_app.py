"""The Huey tasks of the tracking overhead benchmark, and how it drives them (:class:`HueyBench`).

Each kind of task has its own queue, a ``RedisHuey`` on the Redis database
:data:`~bench.overhead.worker.QUEUE_URL_ENV` names, and its own long-lived consumer, ``huey_consumer
bench.overhead.huey_app.untracked_huey`` (or ``tracked_huey``): one worker thread, reading the
queue with Redis's blocking pop (no polling delay between tasks). The benchmark enqueues from
its own process, importing this module. The tracked Huey has immortus's hooks
(``install(huey)``, the one line of ``docs/queues/huey.md``) in both processes, and its
consumer counts its store calls, reported by Huey's shutdown hook; the untracked one is Huey as
it comes.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from huey import RedisHuey

import immortus
from bench.common import BenchError
from bench.overhead.worker import (
    QUEUE_URL_ENV,
    JobClock,
    in_worker,
    queue_name,
    tracked_worker,
    watch_store_calls,
)
from immortus.queues.huey import install

#: A short blocking read, so that a consumer stops at once when asked to.
untracked_huey: Any = RedisHuey(
    queue_name(tracked=False), url=os.environ[QUEUE_URL_ENV], read_timeout=0.1
)
tracked_huey: Any = RedisHuey(
    queue_name(tracked=True), url=os.environ[QUEUE_URL_ENV], read_timeout=0.1
)
clock = JobClock.from_environment()


def _gate(jobs: int, batch: int, release: str) -> None:
    """Hold the consumer until the benchmark has enqueued the batch behind this task."""
    clock.gate(jobs, batch, release)


#: The gate task of each queue, by kind (``True``: tracked).
gates: dict[bool, Any] = {
    tracked: huey.task(name="gate")(_gate)
    for tracked, huey in ((False, untracked_huey), (True, tracked_huey))
}


@untracked_huey.task()  # type: ignore[untyped-decorator]
def untracked_noop() -> None:
    """A task that does nothing but tick the clock: no immortus anywhere near it."""
    clock.tick()


@tracked_huey.task()  # type: ignore[untyped-decorator]
@immortus.track(queue="huey")
def tracked_noop() -> None:
    """The same task, opted in to tracking."""
    clock.tick()


if tracked_worker() or not in_worker():  # the benchmark's process enqueues tracked tasks too
    install(tracked_huey)
if tracked_worker():
    tracked_huey.on_shutdown()(watch_store_calls().write)


class HueyBench:
    """Huey as the benchmark drives it: enqueue, the consumers' command lines, the check."""

    name = "Huey"
    uses_redis = True
    counts_store_calls = True
    stop_signal = signal.SIGINT  # Huey's graceful stop: the running task ends first
    worker = "huey_consumer, RedisHuey, 1 worker thread"

    def reset(self) -> None:
        """Empty the Redis database before the consumers start."""
        untracked_huey.storage.conn.flushdb()

    def worker_command(self, *, tracked: bool) -> list[str]:
        """``huey_consumer``: one worker thread, no periodic task or health check, quiet."""
        huey = "tracked_huey" if tracked else "untracked_huey"
        return [
            sys.executable, "-m", "huey.bin.huey_consumer", f"{__name__}.{huey}",
            "--workers", "1", "--worker-type", "thread", "--no-periodic",
            "--disable-health-check", "--shutdown-timeout", "30", "--quiet",
        ]  # fmt: skip

    def enqueue_gate(self, jobs: int, batch: int, release: str, *, tracked: bool) -> None:
        """Enqueue the gate task in front of a batch."""
        gates[tracked](jobs, batch, release)

    def enqueue(self, count: int, *, tracked: bool) -> list[str]:
        """Enqueue ``count`` tasks on the tracked Huey (with the hooks) or the untracked one."""
        task = tracked_noop if tracked else untracked_noop
        return [task().id for _ in range(count)]

    def check(self, ids: Sequence[str], *, tracked: bool) -> None:
        """Check Huey ran every task: none pending (a no-op's ``None`` result is not stored).

        Raises:
            BenchError: tasks are left in the queue.
        """
        left = (tracked_huey if tracked else untracked_huey).pending_count()
        if left:
            raise BenchError(f"{left} Huey tasks are left in the queue")

    def close(self) -> None:
        """Close the Hueys' connections."""
        for huey in (untracked_huey, tracked_huey):
            huey.storage.pool.disconnect()
