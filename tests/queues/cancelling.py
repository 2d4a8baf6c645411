"""Scenarios of ``immortus.cancel`` and of retry times, run against every queue's real worker.

Mixed into each queue's test class beside :class:`~tests.queues.scenarios.QueueScenarios`; its
harness is also a :class:`CancelHarness`, which names two more jobs of the queue's app:

================  ==============================================================================
``stops_itself``  reports progress 1 of 2, then raises ``immortus.JobCancelled`` (what
                  ``progress()`` raises in a job whose cancel request reached it); the queue
                  would retry it once if it failed
``retried_later`` raises on its first attempt; the queue retries it after
                  :attr:`CancelHarness.retry_delay` seconds, and the second attempt returns
================  ==============================================================================
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Literal

import immortus
from immortus import CancelOutcome
from immortus.status import State
from tests.queues.scenarios import QueueHarness, completed, wait_for_status

__all__ = ["CancelHarness", "CancelScenarios", "Extra"]

Extra = Literal["stops_itself", "retried_later"]
#: How far ``retry_at`` may stray from the failure's time plus the delay, either way: the
#: failure is seen by polling, and clocks of two processes are compared.
TOLERANCE = timedelta(seconds=2)


class CancelHarness(ABC):
    """What the cancel scenarios need of a queue's harness, besides :class:`QueueHarness`."""

    #: Whether ``immortus.cancel`` stops a running ``slow`` job through the queue alone (a
    #: revoke, a stop command), with no cancel request carried by immortus's store.
    queue_stops_running: ClassVar[bool]
    #: Seconds the queue waits before it runs ``retried_later`` again.
    retry_delay: ClassVar[float] = 3.0

    @abstractmethod
    def extra_class(self, job: Extra) -> str:
        """Return the job class of one of this module's jobs."""

    @abstractmethod
    def enqueue_extra(self, job: Extra) -> str:
        """Enqueue one of this module's jobs, tracked; return its job id."""

    def cancel_with_immortus(self, job_id: str, job_class: str) -> CancelOutcome:
        """Call ``immortus.cancel`` where a web app of this queue would: here, by default."""
        return immortus.cancel(job_id, job_class).outcome


class CancelScenarios:
    """The scenarios; the queue's module provides ``harness`` (a QueueHarness and CancelHarness)."""

    def test_immortus_cancel_drops_a_queued_job(self, harness: QueueHarness) -> None:
        assert isinstance(harness, CancelHarness)
        job_class = harness.job_class("steps")
        job_id = harness.enqueue("steps")
        answer = harness.cancel_with_immortus(job_id, job_class)
        assert answer in (CancelOutcome.CANCELLING, CancelOutcome.CANCELLED)
        with harness.worker():
            status = wait_for_status(job_id, job_class, completed)
            follower = harness.enqueue("steps")  # the worker got past the cancelled one
            assert wait_for_status(follower, job_class, completed).state is State.FINISHED
        assert (status.state, status.started_at) == (State.CANCELLED, None)
        assert harness.cancel_with_immortus(job_id, job_class) is CancelOutcome.CANCELLED

    def test_immortus_cancel_stops_a_running_job(self, harness: QueueHarness) -> None:
        assert isinstance(harness, CancelHarness)
        job_class = harness.job_class("slow")
        with harness.worker():
            job_id = harness.enqueue("slow")
            wait_for_status(job_id, job_class, lambda s: s.progress is not None)
            answer = harness.cancel_with_immortus(job_id, job_class)
            assert answer in (CancelOutcome.CANCELLING, CancelOutcome.CANCELLED)
            status = wait_for_status(job_id, job_class, completed)
            assert (status.state, status.success) == (State.CANCELLED, False)
            follower = harness.enqueue("steps")  # the worker goes on with the next job
            done = wait_for_status(follower, harness.job_class("steps"), completed)
        assert done.state is State.FINISHED
        assert harness.cancel_with_immortus(job_id, job_class) is CancelOutcome.CANCELLED

    def test_job_cancelled_raised_in_a_job_stops_it_without_a_retry(
        self, harness: QueueHarness
    ) -> None:
        assert isinstance(harness, CancelHarness)
        job_class = harness.extra_class("stops_itself")
        with harness.worker():
            job_id = harness.enqueue_extra("stops_itself")
            status = wait_for_status(job_id, job_class, completed)
            follower = harness.enqueue("steps")  # the worker survived it
            done = wait_for_status(follower, harness.job_class("steps"), completed)
        assert done.state is State.FINISHED
        assert (status.state, status.attempts, status.error) == (State.CANCELLED, 1, None)
        assert status.progress is not None
        assert status.progress.current == 1
        # Not retried, even later: the queue took it as its own "stop", not as a failure.
        assert immortus.status(job_id, job_class).attempts == 1

    def test_a_retry_says_when_it_runs(self, harness: QueueHarness) -> None:
        assert isinstance(harness, CancelHarness)
        job_class = harness.extra_class("retried_later")
        with harness.worker():
            job_id = harness.enqueue_extra("retried_later")
            retrying = wait_for_status(
                job_id, job_class, lambda s: s.state is State.RETRYING or s.completed
            )
            seen = datetime.now(UTC)
            assert retrying.state is State.RETRYING, retrying
            assert retrying.retry_at is not None
            assert retrying.finished_at is None
            delay = timedelta(seconds=harness.retry_delay)
            # The failure happened before it was seen, after the job was enqueued.
            assert retrying.retry_at <= seen + delay + TOLERANCE
            assert retrying.retry_at >= seen + delay - TOLERANCE
            status = wait_for_status(job_id, job_class, completed)
        assert (status.state, status.attempts, status.retry_at) == (State.FINISHED, 2, None)
