"""The queues the tracking-overhead benchmark drives: the protocol, the options, the table."""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol


class QueueBench(Protocol):
    """One queue as the benchmark drives it (each ``bench/overhead/<queue>_app.py`` has one).

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
        """Enqueue the gate job (:meth:`~bench.overhead.worker.JobClock.gate`) before a batch."""

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
    #: Also run the tracked worker's batches with the job history off, side by side.
    history: bool = False


def _rq(options: Options) -> QueueBench:
    from bench.overhead.rq_app import RQBench

    return RQBench(fork=options.fork)


def _celery(options: Options) -> QueueBench:
    from bench.overhead.celery_app import CeleryBench

    return CeleryBench(pool=options.celery_pool)


def _huey(options: Options) -> QueueBench:
    from bench.overhead.huey_app import HueyBench

    return HueyBench()


def _dramatiq(options: Options) -> QueueBench:
    from bench.overhead.dramatiq_app import DramatiqBench

    return DramatiqBench()


def _django(options: Options) -> QueueBench:
    from bench.overhead.django_app import DjangoBench

    return DjangoBench()


#: Each queue: its driver, and whether it lives in Redis (else in a file of the run's folder).
QUEUES: Final[dict[str, tuple[Callable[[Options], QueueBench], bool]]] = {
    "rq": (_rq, True),
    "celery": (_celery, True),
    "huey": (_huey, True),
    "dramatiq": (_dramatiq, True),
    "django": (_django, False),
}
