"""The web demo's queue: a real Huey on its SQLite storage, its consumer threads in this process.

Each sample (:mod:`immortus.demo.samples`) becomes a Huey task with its retries and retry delay.
The tasks are wired to immortus by hand, with the public API, so that the demo shows every step
a queue integration takes (:mod:`immortus.queues.huey` does the same through Huey's signals,
with ``install(huey)``):

- enqueue: :func:`~immortus.lifecycle.job_enqueued` under Huey's task id, then the task is queued;
- each run: :func:`immortus.running` with Huey's attempt number (``final_attempt`` once no retry
  is left), so the job reports ``started``, its progress, then ``finished``, ``retrying`` or
  ``failed``;
- cancel: :meth:`DemoQueue.cancel` revokes the task in Huey. A task revoked before it starts is
  skipped by Huey, and its ``revoked`` signal reports it ``cancelled``; a running one sees the
  revocation at its next :func:`~immortus.demo.pacing.pause`, reports ``cancelled`` and raises
  Huey's ``CancelExecution`` so Huey neither records an error nor retries it.

Stopping (:meth:`DemoQueue.stop`) cancels the running jobs at their next step the same way, waits
for the worker threads, and reports the jobs still queued as ``cancelled``.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

import immortus
from immortus import lifecycle
from immortus.demo.pacing import paced_by
from immortus.demo.samples import RETRY_DELAY, SAMPLES, SAMPLES_BY_SLUG, Sample
from immortus.exceptions import MissingDependency

try:
    from huey import SqliteHuey
    from huey.exceptions import CancelExecution
    from huey.signals import SIGNAL_REVOKED
except ImportError as exc:
    raise MissingDependency("huey", "demo") from exc

__all__ = ["DemoQueue", "Pace", "at_speed"]

#: Worker threads the consumer runs.
WORKERS: Final = 3
#: The longest a worker idles between two looks at the queue: a new job starts within this.
MAX_POLL_DELAY: Final = 0.25
#: The signals Huey's consumer takes over in ``start()`` for its own ``run()`` loop, which the
#: demo does not use: the web server owns Ctrl-C, so they are given back.
_CONSUMER_SIGNALS: Final = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)

#: Seconds per step of a sample's job.
Pace = Callable[[Sample], float]


def at_speed(speed: float) -> Pace:
    """Return the pace of every sample sped up ``speed`` times."""
    return lambda sample: sample.pace / speed


class DemoQueue:
    """A Huey queue in ``folder`` running the samples, with its consumer; a context manager.

    ``pace`` gives each sample's seconds per step (default: :func:`at_speed` 1) and
    ``retry_delay`` the seconds before a retry (Huey's scheduler looks for due retries once a
    second). Call ``start()`` from the main thread: Huey's consumer touches signal handlers.

    Raises:
        MissingDependency: Huey is not installed (raised when this module is imported).
    """

    def __init__(
        self,
        folder: Path,
        *,
        pace: Pace | None = None,
        retry_delay: float = RETRY_DELAY,
        workers: int = WORKERS,
    ) -> None:
        self.huey: Any = SqliteHuey(
            name="immortus-demo", filename=str(folder / "queue.sqlite3"), results=False
        )
        self.workers = workers
        self._pace = pace or at_speed(1.0)
        self._stopping = threading.Event()
        self._stopped = False
        self._consumer: Any = None
        self._tasks: dict[str, Any] = {
            sample.slug: self._declare(sample, retry_delay) for sample in SAMPLES
        }
        self.huey.signal(SIGNAL_REVOKED)(self._revoked)

    def _declare(self, sample: Sample, retry_delay: float) -> Any:
        """Declare ``sample`` as a Huey task named by its slug."""

        def run(task: Any) -> None:
            self._run(sample, task)

        declare = self.huey.task(
            retries=sample.retries, retry_delay=retry_delay, context=True, name=sample.slug
        )
        return declare(run)

    # -- the producer side ---------------------------------------------------------------

    def enqueue(self, sample: Sample) -> str:
        """Queue a run of ``sample``; return its job id (Huey's task id).

        Raises:
            KeyError: ``sample`` is not one of the samples.
            sqlite3.Error: the queue's file cannot be written.
        """
        task = self._tasks[sample.slug].s()
        lifecycle.job_enqueued(task.id, sample.job_class)
        self.huey.enqueue(task)
        job_id: str = task.id
        return job_id

    def cancel(self, job_id: str) -> None:
        """Revoke the job: it ends ``cancelled`` before it starts or at its next step.

        Raises:
            sqlite3.Error: the queue's file cannot be written.
        """
        self.huey.revoke_by_id(job_id)

    # -- the worker side -----------------------------------------------------------------

    def _run(self, sample: Sample, task: Any) -> None:
        """Run one attempt of ``sample`` as Huey's ``task``, tracked (in a worker thread)."""
        retries_left: int = task.retries
        attempt = sample.retries - retries_left + 1
        wait = partial(self._wait, sample, task)
        with (
            paced_by(wait),
            immortus.running(
                task.id, sample.job_class, attempt=attempt, final_attempt=retries_left == 0
            ),
        ):
            sample.function(pace=self._pace(sample))

    def _wait(self, sample: Sample, task: Any, seconds: float) -> None:
        """Wait between two steps; end the job as ``cancelled`` if revoked or stopping.

        Raises:
            CancelExecution: the job was revoked, or the queue is stopping. Huey then records
                no error and does not retry; :func:`immortus.running` reports the exception as
                a failure, which the store ignores: the job has already ended ``cancelled``.
        """
        if self._stopping.wait(seconds) or self.huey.is_revoked(task):
            lifecycle.job_cancelled(task.id, sample.job_class)
            raise CancelExecution(retry=False)

    def _revoked(self, signal_name: str, task: Any, *args: object) -> None:
        """Huey's ``revoked`` signal: a revoked task was dequeued and skipped, never started."""
        _report_cancelled(task)

    # -- the consumer --------------------------------------------------------------------

    def start(self) -> None:
        """Start the scheduler and the worker threads."""
        consumer = self.huey.create_consumer(
            workers=self.workers,
            worker_type="thread",
            periodic=False,
            initial_delay=0.05,
            max_delay=MAX_POLL_DELAY,
            check_worker_health=False,
        )
        handlers = {number: signal.getsignal(number) for number in _CONSUMER_SIGNALS}
        try:
            consumer.start()
        finally:
            for number, handler in handlers.items():
                signal.signal(number, handler)
        self._consumer = consumer

    def stop(self) -> None:
        """Cancel the running jobs at their next step, wait for the workers, cancel the rest.

        The jobs still queued or waiting for a retry are reported ``cancelled``: nothing will
        run them. Stopping again does nothing.
        """
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        if self._consumer is not None:
            self._consumer.stop(graceful=True)
            self._consumer = None
        for task in [*self.huey.pending(), *self.huey.scheduled()]:
            _report_cancelled(task)
        self.huey.storage.close()

    def __enter__(self) -> DemoQueue:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _report_cancelled(task: Any) -> None:
    """Report a Huey task that will never run as ``cancelled``, under its sample's job class."""
    sample = SAMPLES_BY_SLUG.get(task.name)
    lifecycle.job_cancelled(task.id, None if sample is None else sample.job_class)
