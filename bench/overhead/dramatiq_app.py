"""The Dramatiq actors of the tracking overhead benchmark, and :class:`DramatiqBench`.

The broker is a ``RedisBroker`` on the Redis database :data:`~bench.overhead.worker.QUEUE_URL_ENV`
names. Each kind of actor has its own queue and its own long-lived worker, ``dramatiq
bench.overhead.dramatiq_app --processes 1 --threads 1 --queues <its queue>``: one worker
thread, so the hooks' cost shows in full and no second thread hides the store's I/O. The
benchmark enqueues from its own process, importing this module. A tracked worker calls
``immortus.queues.dramatiq.install(broker)``, the one line of ``docs/queues/dramatiq.md``, and
counts its store calls, reported when it shuts down; an untracked one is Dramatiq as it comes,
with its default middleware.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, Final

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

import immortus
import immortus.queues.dramatiq
from bench.common import BenchError
from bench.overhead.worker import (
    GATE_TIMEOUT_S,
    QUEUE_URL_ENV,
    JobClock,
    StoreCalls,
    in_worker,
    queue_name,
    tracked_worker,
    watch_store_calls,
)

#: The prefix of the brokers' keys in Redis.
NAMESPACE: Final = "immortus-bench"


def _broker() -> RedisBroker:
    return RedisBroker(url=os.environ[QUEUE_URL_ENV], namespace=NAMESPACE)  # type: ignore[no-untyped-call]


class _ReportCalls(Middleware):
    """Writes the store calls a tracked worker counted, once it has shut down."""

    def __init__(self, calls: StoreCalls) -> None:
        self.calls = calls

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Called in the worker process after its threads stopped: writes the counts."""
        self.calls.write()


broker = _broker()
if tracked_worker():
    immortus.queues.dramatiq.install(broker)
    broker.add_middleware(_ReportCalls(watch_store_calls()))
elif not in_worker():  # the benchmark's process: tracked sends go through the middleware
    immortus.queues.dramatiq.install(broker)
dramatiq.set_broker(broker)
clock = JobClock.from_environment()


def _gate(jobs: int, batch: int, release: str) -> None:
    """Hold the worker until the benchmark has enqueued the batch behind this message."""
    clock.gate(jobs, batch, release)


#: The gate actor of each queue, by kind (``True``: tracked).
gates: dict[bool, Any] = {
    tracked: dramatiq.actor(
        actor_name=f"gate_{'tracked' if tracked else 'untracked'}",
        queue_name=queue_name(tracked=tracked),
        time_limit=int(GATE_TIMEOUT_S * 1000) + 60_000,
        max_retries=0,
    )(_gate)
    for tracked in (False, True)
}


@dramatiq.actor(queue_name=queue_name(tracked=False))
def untracked_noop() -> None:
    """An actor that does nothing but tick the clock: no immortus anywhere near it."""
    clock.tick()


@dramatiq.actor(queue_name=queue_name(tracked=True))
@immortus.track(queue="dramatiq")
def tracked_noop() -> None:
    """The same actor, opted in to tracking."""
    clock.tick()


class DramatiqBench:
    """Dramatiq as the benchmark drives it: enqueue, the workers' command lines, the check."""

    name = "Dramatiq"
    uses_redis = True
    counts_store_calls = True
    stop_signal = signal.SIGTERM  # the worker finishes its running message, then exits
    worker = "dramatiq, RedisBroker, 1 process x 1 thread"

    def __init__(self) -> None:
        #: Sends untracked messages the way a broker without immortus's middleware does.
        self.plain_broker = _broker()

    def reset(self) -> None:
        """Empty the Redis database before the workers start."""
        broker.client.flushdb()

    def worker_command(self, *, tracked: bool) -> list[str]:
        """A Dramatiq worker: one process, one thread, on the queue of one kind of actor."""
        return [
            sys.executable, "-m", "dramatiq", __name__,
            "--processes", "1", "--threads", "1", "--queues", queue_name(tracked=tracked),
        ]  # fmt: skip

    def enqueue_gate(self, jobs: int, batch: int, release: str, *, tracked: bool) -> None:
        """Send the gate message in front of a batch."""
        self.plain_broker.enqueue(gates[tracked].message(jobs, batch, release))

    def enqueue(self, count: int, *, tracked: bool) -> list[str]:
        """Send ``count`` messages: through immortus's middleware (tracked), or a bare broker."""
        if tracked:
            return [tracked_noop.send().message_id for _ in range(count)]
        send = self.plain_broker.enqueue
        return [send(untracked_noop.message()).message_id for _ in range(count)]

    def check(self, ids: Sequence[str], *, tracked: bool) -> None:
        """Check Dramatiq ran every message: none left in the queue, none unacknowledged.

        Raises:
            BenchError: messages are left.
        """
        left = broker.do_qsize(queue_name(tracked=tracked))
        if left:
            raise BenchError(f"{left} Dramatiq messages are left in the queue")

    def close(self) -> None:
        """Close the brokers' connections."""
        self.plain_broker.close()
        broker.close()
