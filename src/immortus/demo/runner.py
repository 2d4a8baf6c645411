"""A small in-process queue for the terminal demo: a thread pool plays the broker and workers.

It does what a queue integration does for a real queue, with the public API only: it invents a
job id (a real queue would give one), reports :func:`~immortus.lifecycle.job_enqueued` when a job
is submitted, and runs each attempt inside :func:`immortus.running`, retrying a failed attempt
while attempts are left. It never keeps a job's state itself: the store does.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import immortus
from immortus import lifecycle
from immortus.demo.pacing import paced_by
from immortus.jobs import job_class_of

__all__ = ["Runner", "Submitted"]


@dataclass(frozen=True, slots=True)
class Submitted:
    """A job handed to the runner."""

    job_id: str
    job_class: str
    future: Future[None] = field(repr=False, compare=False)


class Runner:
    """Runs tracked functions on ``workers`` threads; a context manager that waits for them.

    Leaving the ``with`` block by an exception (Ctrl-C) stops the running jobs at their next
    :func:`~immortus.demo.pacing.pause` (it raises :class:`KeyboardInterrupt` there, which
    :func:`immortus.running` reports as ``cancelled``) and reports the jobs that never started
    as ``cancelled``.
    """

    def __init__(self, *, workers: int = 3, retry_delay: float = 1.0) -> None:
        self.retry_delay = retry_delay
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="immortus-demo")
        self.submitted: list[Submitted] = []

    def submit(
        self,
        function: Callable[..., object],
        *,
        max_attempts: int = 1,
        kwargs: Mapping[str, Any] | None = None,
    ) -> Submitted:
        """Enqueue ``function(**kwargs)`` under a new job id and return it."""
        job_id, job_class = str(uuid.uuid4()), job_class_of(function)
        lifecycle.job_enqueued(job_id, job_class)
        future = self._pool.submit(
            self._run, job_id, job_class, function, max_attempts, dict(kwargs or {})
        )
        job = Submitted(job_id, job_class, future)
        self.submitted.append(job)
        return job

    def _run(
        self,
        job_id: str,
        job_class: str,
        function: Callable[..., object],
        max_attempts: int,
        kwargs: dict[str, Any],
    ) -> None:
        for attempt in range(1, max_attempts + 1):
            final = attempt == max_attempts
            try:
                with (
                    paced_by(self._wait),
                    immortus.running(job_id, job_class, attempt=attempt, final_attempt=final),
                ):
                    function(**kwargs)
            except KeyboardInterrupt:  # stopped by _wait(): running() reported it cancelled
                return
            except Exception:  # noqa: BLE001 - running() reported it failed or retrying
                if final:
                    return
                if self._stop.wait(self.retry_delay * attempt):
                    lifecycle.job_cancelled(job_id, job_class)
                    return
            else:
                return

    def _wait(self, seconds: float) -> None:
        """Wait between two steps of a job; raise :class:`KeyboardInterrupt` once stopping."""
        if self._stop.wait(seconds):
            raise KeyboardInterrupt("the demo was interrupted")

    def close(self, *, cancel: bool = False) -> None:
        """Wait for the jobs; with ``cancel``, stop them first."""
        if cancel:
            self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=cancel)
        for job in self.submitted:
            if job.future.cancelled():
                lifecycle.job_cancelled(job.job_id, job.job_class)

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.close(cancel=exc_type is not None)
