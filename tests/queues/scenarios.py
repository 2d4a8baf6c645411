"""The scenarios every queue integration passes, with a real broker and a real worker.

Written once; each queue's test module provides a ``harness`` fixture (a :class:`QueueHarness`
for that queue, with its worker, its broker and immortus's store set up) and mixes
:class:`QueueScenarios` into one test class::

    class TestRQScenarios(QueueScenarios):
        pass

The jobs are the same four everywhere (the harness maps them to the queue's own tasks):

=========  ===================================================================================
``steps``  reports progress 1, 2, 3 of 3 with ``immortus.progress``, then returns
``fails``  reports progress 3 of 5, then raises ``ValueError("boom at 60%")``
``flaky``  raises ``RuntimeError("first attempt fails")`` on its first attempt; the queue retries
           it once, at once, and the second attempt returns
``slow``   reports progress every 50 ms for up to 30 s, so that a test can cancel it while it runs
=========  ===================================================================================

Every assertion reads the job back through :func:`immortus.status` in the test process, as a web
page would: the worker runs elsewhere (a subprocess, or threads of its own), and what links the
two is the queue's own state and immortus's store.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Literal

import pytest

import immortus
from immortus.status import JobStatus, State
from tests.surfaces import STABLE_KEYS, Style, answers, one_answer_in_every_style, reading_as

__all__ = ["JOBS", "Job", "QueueHarness", "QueueScenarios", "wait_for", "wait_for_status"]

Job = Literal["steps", "fails", "flaky", "slow"]
JOBS: tuple[Job, ...] = ("steps", "fails", "flaky", "slow")
#: How long a scenario waits for a worker, generously: CI machines are small and shared.
TIMEOUT = 60.0


def wait_for(predicate: Callable[[], bool], timeout: float = TIMEOUT, what: str = "") -> None:
    """Poll ``predicate()`` every 20 ms until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(0.02)


def wait_for_status(
    job_id: str,
    job_class: str | None,
    accept: Callable[[JobStatus], bool],
    timeout: float = TIMEOUT,
) -> JobStatus:
    """Return the job's status once ``accept`` takes it; fail, showing the last, on timeout."""
    seen: list[JobStatus] = []

    def accepted() -> bool:
        seen[:] = [immortus.status(job_id, job_class)]
        return accept(seen[0])

    deadline = time.monotonic() + timeout
    while not accepted():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s; the job's last status: {seen[0]}")
        time.sleep(0.02)
    return seen[0]


def completed(status: JobStatus) -> bool:
    """Whether the job has ended (any terminal state)."""
    return status.completed


class QueueHarness(ABC):
    """One queue, ready to run the scenario jobs: what a queue's test module provides.

    The harness owns the broker (a real server), immortus's store (shared by the test process
    and the worker), and the worker (a subprocess or threads, started by :meth:`worker`).
    Hooks are installed in the test process (the enqueuing side) and in the worker.
    """

    #: The queue's name, as immortus's built-in strategies know it (``"rq"``, ``"celery"``).
    name: ClassVar[str]
    #: Whether the queue can stop a job while it runs (revoke with terminate, a stop command).
    can_cancel_running: ClassVar[bool]
    #: What a job enqueued before immortus's hooks were installed (in the enqueuing process)
    #: looks like once a worker with the hooks ran it: ``finished`` when a backend-native
    #: strategy reads the queue's own state, or when the worker's hooks record the run from
    #: ``started`` on; ``unknown`` when neither side can know of it.
    untracked_outcome: ClassVar[State]

    @abstractmethod
    def job_class(self, job: Job) -> str:
        """Return the job class (as tracked with ``@immortus.track``) of a scenario job."""

    @abstractmethod
    def enqueue(self, job: Job) -> str:
        """Enqueue ``job`` with immortus's hooks installed; return its job id.

        By the time this returns, the enqueue hook has run in this process.
        """

    @abstractmethod
    def enqueue_untracked(self, job: Job) -> str:
        """Enqueue ``job`` as if immortus's hooks were not installed yet; return its job id."""

    @abstractmethod
    def cancel(self, job_id: str) -> None:
        """Cancel the job the queue's own way (revoke, a stop command), running or not."""

    @abstractmethod
    def worker(self) -> AbstractContextManager[None]:
        """Run a real worker while the block runs; stop it (gracefully) at the end."""

    @abstractmethod
    def worker_with_store_down(self) -> AbstractContextManager[None]:
        """Run a real worker whose immortus store cannot be reached (a dead port, say)."""

    @abstractmethod
    def outcome_from_the_queue(self, job_id: str) -> State | None:
        """Return how the job ended according to the queue alone (not immortus), or ``None``
        while it has not ended: proof that a job ran on while immortus's store was down."""

    def surfaces(self, job_id: str, job_class: str, style: Style) -> dict[str, dict[str, Any]]:
        """Return every surface's answer about the job, read the way of ``style``.

        They are asked where a web app would ask: in this process, unless the queue's jobs
        can only be read from a process of its own (a Django project, say).
        """
        with reading_as(style, self.name, job_class) as asked:
            return answers(job_id, asked)

    def enqueue_slow(self) -> str:
        """Enqueue ``slow`` for a scenario that ends it with :meth:`stop_slow` once it runs."""
        return self.enqueue("slow")

    def stop_slow(self, job_id: str) -> None:
        """End the running ``slow`` job (of :meth:`enqueue_slow`), so that its worker can stop."""
        self.cancel(job_id)


class QueueScenarios:
    """The scenarios; mixed into one class per queue, whose module provides ``harness``."""

    @pytest.fixture
    def running_worker(self, harness: QueueHarness) -> Iterator[QueueHarness]:
        with harness.worker():
            yield harness

    def test_an_unknown_id_is_unknown(self, harness: QueueHarness) -> None:
        status = immortus.status("no-such-job-7f0c", harness.job_class("steps"))
        assert status.state is State.UNKNOWN
        assert status.completed is False

    def test_an_enqueued_job_is_created_until_a_worker_takes_it(
        self, harness: QueueHarness
    ) -> None:
        job_class = harness.job_class("steps")
        job_id = harness.enqueue("steps")
        status = immortus.status(job_id, job_class)  # no worker yet: nobody can have started it
        assert status.state is State.CREATED
        assert status.job_class == job_class
        assert status.enqueued_at is not None
        with harness.worker():
            done = wait_for_status(job_id, job_class, completed)
        assert done.state is State.FINISHED

    def test_a_job_with_progress_succeeds(self, running_worker: QueueHarness) -> None:
        job_class = running_worker.job_class("steps")
        job_id = running_worker.enqueue("steps")
        status = wait_for_status(job_id, job_class, completed)
        assert (status.state, status.success, status.attempts) == (State.FINISHED, True, 1)
        assert status.progress is not None
        assert (status.progress.current, status.progress.total) == (3, 3)
        assert status.error is None
        assert status.started_at is not None
        assert status.finished_at is not None
        assert status.started_at <= status.finished_at

    def test_a_failing_job_fails_with_its_error(self, running_worker: QueueHarness) -> None:
        job_class = running_worker.job_class("fails")
        job_id = running_worker.enqueue("fails")
        status = wait_for_status(job_id, job_class, completed)
        assert (status.state, status.success) == (State.FAILED, False)
        assert status.error is not None
        assert status.error.type.rpartition(".")[2] == "ValueError"
        assert status.error.message == "boom at 60%"
        assert status.progress is not None
        assert status.progress.percent == 60.0
        assert "Traceback" not in str(status.to_dict())

    def test_a_job_retried_once_then_succeeds(self, running_worker: QueueHarness) -> None:
        job_class = running_worker.job_class("flaky")
        job_id = running_worker.enqueue("flaky")
        status = wait_for_status(job_id, job_class, completed)
        assert (status.state, status.attempts) == (State.FINISHED, 2)
        assert status.error is None

    def test_a_running_job_can_be_cancelled(self, running_worker: QueueHarness) -> None:
        if not running_worker.can_cancel_running:
            pytest.fail(
                f"{running_worker.name} cannot stop a running job: its test class must override "
                "this scenario with what the queue can do (and its docs must say so)"
            )
        job_class = running_worker.job_class("slow")
        job_id = running_worker.enqueue("slow")
        wait_for_status(
            job_id,
            job_class,
            lambda s: s.state is State.STARTED and s.progress is not None,
        )
        running_worker.cancel(job_id)
        status = wait_for_status(job_id, job_class, completed)
        assert (status.state, status.success) == (State.CANCELLED, False)

    def test_a_queued_job_can_be_cancelled_before_it_starts(self, harness: QueueHarness) -> None:
        job_class = harness.job_class("steps")
        job_id = harness.enqueue("steps")
        harness.cancel(job_id)
        with harness.worker():
            wait_for_status(job_id, job_class, completed)
            follower = harness.enqueue("steps")  # the worker got past the cancelled one
            wait_for_status(follower, job_class, completed)
        status = immortus.status(job_id, job_class)
        assert status.state is State.CANCELLED
        assert status.started_at is None

    def test_a_job_enqueued_before_the_hooks_were_installed(self, harness: QueueHarness) -> None:
        job_class = harness.job_class("steps")
        job_id = harness.enqueue_untracked("steps")
        with harness.worker():
            wait_for(lambda: harness.outcome_from_the_queue(job_id) is not None, what="the job")
        assert harness.outcome_from_the_queue(job_id) is State.FINISHED
        assert immortus.status(job_id, job_class).state is harness.untracked_outcome

    def test_every_surface_gives_one_answer(self, harness: QueueHarness) -> None:
        """Python, verify, batch, stream and CLI agree, whichever way the strategy is chosen."""
        steps_class, fails_class = harness.job_class("steps"), harness.job_class("fails")
        slow_class = harness.job_class("slow")
        unknown = one_answer_in_every_style("no-such-job-7f0c", steps_class, harness.surfaces)
        assert unknown["status"] == "unknown"
        steps = harness.enqueue("steps")
        created = one_answer_in_every_style(steps, steps_class, harness.surfaces)
        assert created["status"] == "created"
        fails = harness.enqueue("fails")
        dropped = harness.enqueue("steps")
        harness.cancel(dropped)  # before any worker: it never runs
        slow = harness.enqueue_slow()  # last: a worker that runs one job at a time ends the others
        with harness.worker():
            wait_for_status(slow, slow_class, lambda s: s.progress is not None)
            running = one_answer_in_every_style(
                slow, slow_class, harness.surfaces, (*STABLE_KEYS, "started_at")
            )
            assert running["status"] == "started"
            harness.stop_slow(slow)
            for job_id, job_class in (
                (steps, steps_class),
                (fails, fails_class),
                (dropped, steps_class),
                (slow, slow_class),
            ):
                wait_for_status(job_id, job_class, completed)
        for job_id in (steps, fails, dropped):  # and the store, which a worker may write later
            wait_for_status(job_id, None, completed)
        finished = one_answer_in_every_style(steps, steps_class, harness.surfaces)
        assert (finished["status"], finished["progress"]["current"]) == ("finished", 3)
        failed = one_answer_in_every_style(fails, fails_class, harness.surfaces)
        assert (failed["status"], failed["error"]["message"]) == ("failed", "boom at 60%")
        cancelled = one_answer_in_every_style(dropped, steps_class, harness.surfaces)
        assert (cancelled["status"], cancelled["started_at"]) == ("cancelled", None)

    def test_a_job_runs_on_while_the_store_is_down(self, harness: QueueHarness) -> None:
        job_id = harness.enqueue("steps")
        with harness.worker_with_store_down():
            wait_for(lambda: harness.outcome_from_the_queue(job_id) is not None, what="the job")
        assert harness.outcome_from_the_queue(job_id) is State.FINISHED
