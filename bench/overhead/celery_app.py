"""The Celery app of the tracking overhead benchmark: no-op tasks, and :class:`CeleryBench`.

The benchmark enqueues from its own process (importing this module, with
:data:`~bench.overhead.worker.QUEUE_URL_ENV` naming the Redis database, broker and result backend).
Each kind of task has its own queue and its own long-lived ``celery -A
bench.overhead.celery_app worker``, which imports this module too. A tracked worker installs
immortus's hooks (``immortus.queues.celery.install(app)``, the one line of
``docs/queues/celery.md``) and counts its store calls, reported at worker shutdown.

The workers' pool is ``solo`` by default: it runs each task, and every hook around it, on the
thread that also fetches the messages, so whatever tracking costs shows in full in the rate,
with no second thread to hide the store's I/O behind (and it is the pool a profiler can
follow). ``threads`` (one thread) is the other choice.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from celery import Celery, signals  # type: ignore[import-untyped]

import immortus
import immortus.queues.celery
from bench.common import BenchError
from bench.overhead.worker import (
    QUEUE_URL_ENV,
    JobClock,
    queue_name,
    tracked_worker,
    watch_store_calls,
)
from immortus.status import State

app = Celery(__name__, set_as_current=False)
app.conf.update(
    broker_url=os.environ[QUEUE_URL_ENV],
    result_backend=os.environ[QUEUE_URL_ENV],
    task_routes={
        f"{__name__}.untracked_noop": {"queue": queue_name(tracked=False)},
        f"{__name__}.tracked_noop": {"queue": queue_name(tracked=True)},
    },
    broker_connection_retry_on_startup=True,
    broker_transport_options={"polling_interval": 0.2},  # a worker stops within 0.2 s
    worker_hijack_root_logger=False,
)
clock = JobClock.from_environment()


@app.task  # type: ignore[untyped-decorator]
def gate(jobs: int, batch: int, release: str) -> None:
    """Hold the worker until the benchmark has enqueued the batch behind this task."""
    clock.gate(jobs, batch, release)


@app.task  # type: ignore[untyped-decorator]
def untracked_noop() -> None:
    """A task that does nothing but tick the clock: no immortus anywhere near it."""
    clock.tick()


@app.task  # type: ignore[untyped-decorator]
@immortus.track(queue="celery")
def tracked_noop() -> None:
    """The same task, opted in to tracking."""
    clock.tick()


if tracked_worker():
    immortus.queues.celery.install(app)
    _calls = watch_store_calls()

    @signals.worker_shutdown.connect(weak=False)  # type: ignore[untyped-decorator]
    def _report_calls(**_: Any) -> None:
        _calls.write()


class CeleryBench:
    """Celery as the benchmark drives it: enqueue, the workers' command lines, the check."""

    name = "Celery"
    uses_redis = True
    counts_store_calls = True
    stop_signal = signal.SIGTERM  # warm shutdown: the running task ends first

    def __init__(self, *, pool: str = "solo") -> None:
        from redis import Redis

        self.pool = pool
        self.worker = f"celery worker --pool {pool} --concurrency 1"
        self.redis = Redis.from_url(os.environ[QUEUE_URL_ENV])

    def reset(self) -> None:
        """Empty the Redis database before the workers start."""
        self.redis.flushdb()

    def worker_command(self, *, tracked: bool) -> list[str]:
        """A Celery worker with one slot on the queue of one kind of task."""
        kind = "tracked" if tracked else "untracked"
        return [
            sys.executable, "-m", "celery", "-A", __name__, "worker",
            "--pool", self.pool, "--concurrency", "1", "--queues", queue_name(tracked=tracked),
            "--hostname", f"{kind}@%h", "--without-heartbeat", "--without-mingle",
            "--without-gossip", "--loglevel", "warning",
        ]  # fmt: skip

    def enqueue_gate(self, jobs: int, batch: int, release: str, *, tracked: bool) -> None:
        """Send the gate task in front of a batch."""
        gate.apply_async((jobs, batch, release), queue=queue_name(tracked=tracked))

    def enqueue(self, count: int, *, tracked: bool) -> list[str]:
        """Send ``count`` tasks, with immortus's hooks in this process (tracked) or none."""
        if tracked:
            immortus.queues.celery.install(app)
        else:
            immortus.queues.celery.uninstall(app)  # the app as it comes
        task = tracked_noop if tracked else untracked_noop
        return [task.delay().id for _ in range(count)]

    def check(self, ids: Sequence[str], *, tracked: bool) -> None:
        """Check Celery ran every task: none left, every result ``SUCCESS``.

        Raises:
            BenchError: tasks are left in the queue, or a result is missing or not a success.
        """
        left = self.redis.llen(queue_name(tracked=tracked))
        if left:
            raise BenchError(f"{left} Celery tasks are left in the queue")
        strategy = immortus.queues.celery.CeleryStrategy(app)
        results = strategy.native_status_many(ids)  # one MGET
        unfinished = [i for i in ids if i not in results or results[i].state is not State.FINISHED]
        if unfinished:
            raise BenchError(f"{len(unfinished)} Celery results are not SUCCESS: {unfinished[:3]}")

    def close(self) -> None:
        """Take the hooks off this process; close the app's and the benchmark's connections."""
        immortus.queues.celery.uninstall(app)
        app.close()
        self.redis.close()
