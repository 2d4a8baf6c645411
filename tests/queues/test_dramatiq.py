"""Dramatiq with a real Redis broker and a real ``dramatiq`` worker subprocess.

The broker is the session's redis-server (its own key namespace, db flushed per test); immortus's
store is an SQLite file shared by this process (which enqueues, as a web app would) and the
worker (through ``IMMORTUS_STORE``). Dramatiq keeps no status, so "how the job ended according
to the queue alone" is read from the Results middleware, which needs the Message object.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import dramatiq
import pytest
from dramatiq.message import Message
from dramatiq.middleware import Retries
from dramatiq.results import ResultFailure, ResultMissing

import immortus
from immortus.finder import find_strategy
from immortus.queues import dramatiq as tracking
from immortus.queues import identify
from immortus.status import State
from immortus.store_strategy import StoreStrategy
from immortus.web.core import get_verifier, render_job
from tests.queues.cancelling import CancelHarness, CancelScenarios, Extra
from tests.queues.dramatiq_faults import ExplodingStore
from tests.queues.scenarios import (
    Job,
    QueueHarness,
    QueueScenarios,
    completed,
    wait_for,
    wait_for_status,
)
from tests.queues.stores import dead_store_url, tracking_into_sqlite
from tests.queues.workers import WorkerProcess, running_worker, worker_environment
from tests.support import import_error_without, modules_loaded_by

APP = "tests.queues.dramatiq_app"
FAULTY_APP = "tests.queues.dramatiq_faulty_app"


class DramatiqHarness(QueueHarness, CancelHarness):
    """The scenario jobs on Dramatiq: actors of ``dramatiq_app``, a ``dramatiq`` subprocess."""

    name: ClassVar[str] = "dramatiq"
    can_cancel_running: ClassVar[bool] = False
    queue_stops_running: ClassVar[bool] = False  # the store's cancel request stops it
    # Not the suite's "unknown": the worker's middleware tracks every message of a tracked actor,
    # marked at enqueue or not, or immortus.progress() would raise NotInJob in the actor.
    untracked_outcome: ClassVar[State] = State.FINISHED

    def __init__(self, app: ModuleType, store_url: str, workdir: Path) -> None:
        self.app = app
        self.store_url = store_url
        self.workdir = workdir
        self.sent: dict[str, Message[Any]] = {}  # the Results backend needs the whole message
        self._workers = 0

    def job_class(self, job: Job) -> str:
        found = tracking.job_class(getattr(self.app, job))
        assert found is not None
        return found

    def enqueue(self, job: Job, **kwargs: Any) -> str:
        message: Message[Any] = getattr(self.app, job).send(**kwargs)
        self.sent[message.message_id] = message
        return message.message_id

    def extra_class(self, job: Extra) -> str:
        found = tracking.job_class(getattr(self.app, job))
        assert found is not None
        return found

    def enqueue_extra(self, job: Extra) -> str:
        message: Message[Any] = getattr(self.app, job).send()
        self.sent[message.message_id] = message
        return message.message_id

    def enqueue_untracked(self, job: Job) -> str:
        plain = self.app.new_broker(self.app.NAMESPACE, middleware=[])
        try:
            message: Message[Any] = plain.enqueue(getattr(self.app, job).message())
        finally:
            plain.client.close()
        self.sent[message.message_id] = message
        return message.message_id

    def cancel(self, job_id: str) -> None:
        tracking.cancel(job_id)

    def enqueue_slow(self) -> str:
        """Dramatiq cannot stop a running actor: this ``slow`` ends by itself after 5 s."""
        return self.enqueue("slow", seconds=5.0)

    def stop_slow(self, job_id: str) -> None:
        """Nothing to do: the job of :meth:`enqueue_slow` ends by itself."""

    def worker(self) -> AbstractContextManager[None]:
        return self.run_worker(APP, self.store_url)

    def worker_with_store_down(self) -> AbstractContextManager[None]:
        return self.run_worker(APP, dead_store_url())

    def outcome_from_the_queue(self, job_id: str) -> State | None:
        try:
            self.app.results.get_result(self.sent[job_id])
        except ResultMissing:
            return None
        except ResultFailure:
            return State.FAILED
        return State.FINISHED

    @contextmanager
    def run_worker(self, app: str, store_url: str) -> Iterator[None]:
        """Run ``dramatiq <app> --processes 1 --threads 2``; stop it with SIGTERM at the end."""
        self._workers += 1
        env = worker_environment(
            store_url,
            **{self.app.BROKER_URL_ENV: self.app.BROKER_URL},
            dramatiq_worker_timeout="100",  # ms: idle polls, and so shutdown, are short
        )
        command = [sys.executable, "-m", "dramatiq", app, "--processes", "1", "--threads", "2"]
        log = self.workdir / f"worker-{self._workers}.log"
        with running_worker(WorkerProcess("the dramatiq worker", command, env=env, log=log)):
            yield

    def log(self) -> str:
        """Everything the workers of this test wrote."""
        return "\n".join(p.read_text() for p in sorted(self.workdir.glob("worker-*.log")))


@pytest.fixture
def app(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The actors' module, imported with the broker on the session's redis-server."""
    monkeypatch.setenv("IMMORTUS_TEST_DRAMATIQ_URL", redis_url)
    module = importlib.import_module(APP)
    assert redis_url == module.BROKER_URL  # imported once: the server keeps its port
    return module


@pytest.fixture
def harness(app: ModuleType, tmp_path: Path) -> Iterator[DramatiqHarness]:
    with tracking_into_sqlite(tmp_path) as store_url:
        yield DramatiqHarness(app, store_url, tmp_path)


class TestDramatiqScenarios(QueueScenarios, CancelScenarios):
    def test_a_running_job_can_be_cancelled(self, running_worker: QueueHarness) -> None:
        """Dramatiq cannot stop a running actor: its cancel() refuses, and says so, not lies.

        (``immortus.cancel`` stops it through the store's cancel request: see
        ``test_immortus_cancel_stops_a_running_job``.)
        """
        assert isinstance(running_worker, DramatiqHarness)
        job_class = running_worker.job_class("slow")
        job_id = running_worker.enqueue("slow", seconds=2.0)
        wait_for_status(
            job_id, job_class, lambda s: s.state is State.STARTED and s.progress is not None
        )
        assert tracking.cancel(job_id) is False
        # Still running (or, on a very slow machine, just finished): never shown as cancelled.
        assert immortus.status(job_id, job_class).state in {State.STARTED, State.FINISHED}
        status = wait_for_status(job_id, job_class, completed)
        assert (status.state, status.success) == (State.FINISHED, True)

    def test_a_queued_job_can_be_cancelled_before_it_starts(self, harness: QueueHarness) -> None:
        """A cancelled message is skipped by the worker: acknowledged, never run."""
        assert isinstance(harness, DramatiqHarness)
        job_class = harness.job_class("steps")
        job_id = harness.enqueue("steps")
        assert tracking.cancel(job_id) is True
        assert immortus.status(job_id, job_class).state is State.CANCELLED
        with harness.worker():
            # Dramatiq's Results middleware stores None for a message skipped, not failed.
            wait_for(lambda: harness.outcome_from_the_queue(job_id) is not None, what="the skip")
            follower = harness.enqueue("steps")
            wait_for_status(follower, job_class, completed)
        status = immortus.status(job_id, job_class)
        assert (status.state, status.started_at, status.progress) == (State.CANCELLED, None, None)
        assert "was skipped" in harness.log()


# -- the one-line install and opt-in --------------------------------------------------------


def test_install_is_idempotent_and_goes_before_retries(app: ModuleType) -> None:
    broker = app.new_broker("immortus-dramatiq-install")
    try:
        first = tracking.install(broker)
        assert tracking.install(broker) is first
        kinds = [type(m) for m in broker.middleware]
        assert kinds.count(tracking.ImmortusMiddleware) == 1
        assert kinds.index(tracking.ImmortusMiddleware) == kinds.index(Retries) - 1
    finally:
        broker.client.close()


def test_only_messages_of_tracked_actors_are_marked_and_recorded(harness: DramatiqHarness) -> None:
    message = harness.app.steps.send()
    job_class = "tests.queues.dramatiq_app.steps"
    assert tracking.job_class(harness.app.steps) == job_class
    assert tracking.job_class(message) == job_class
    assert message.options[tracking.JOB_CLASS_OPTION] == job_class
    immortus.configure(open_endpoints=True)  # no secret key: the page gets no token
    rendered = render_job(message, tracking.job_class(message))
    assert (rendered.status, rendered.body) == (
        200,
        {"job_id": message.message_id, "job_class": job_class},
    )
    status = immortus.status(message.message_id)  # by message id alone, as a page would
    assert (status.state, status.job_class) == (State.CREATED, job_class)

    plain = harness.app.untracked.send()
    assert tracking.JOB_CLASS_OPTION not in plain.options
    assert tracking.job_class(plain) is None
    assert immortus.status(plain.message_id).state is State.UNKNOWN


def test_identify_names_the_tracked_actor_of_a_message(harness: DramatiqHarness) -> None:
    job_class = harness.job_class("steps")
    message = harness.app.steps.send()
    assert identify(message) == (message.message_id, job_class)
    unmarked = harness.enqueue_untracked("steps")  # no mark: its actor on the global broker
    assert identify(harness.sent[unmarked]) == (unmarked, job_class)
    plain = harness.app.untracked.send()
    assert identify(plain) == (plain.message_id, None)
    immortus.configure(open_endpoints=True)
    answer = get_verifier().verify(message.message_id, job_class)  # the page follows the class
    assert (answer.status, answer.body["status"]) == (200, "created")


def test_uninstall_removes_the_middleware(app: ModuleType) -> None:
    broker = app.new_broker("immortus-dramatiq-uninstall")
    try:
        tracking.install(broker)
        assert tracking.installed(broker)
        tracking.uninstall(broker)
        assert not tracking.installed(broker)
        assert not any(isinstance(m, tracking.ImmortusMiddleware) for m in broker.middleware)
    finally:
        broker.client.close()


def test_the_inferred_strategy_is_the_store_strategy(harness: DramatiqHarness) -> None:
    assert isinstance(find_strategy(harness.job_class("steps")), StoreStrategy)


class AuditStrategy:
    """A seed-style strategy that remembers the callbacks it got."""

    def __init__(self) -> None:
        self.enqueued: list[str] = []

    def completed(self, job_id: str) -> bool:
        return False

    def job_enqueued(self, job_id: str) -> None:
        self.enqueued.append(job_id)


def test_an_inline_and_a_global_strategy_get_the_enqueue(harness: DramatiqHarness) -> None:
    inline = AuditStrategy()
    broker = harness.app.new_broker("immortus-dramatiq-inline")
    tracking.install(broker)
    try:
        # The docs' inline example, on a broker of its own.
        @dramatiq.actor(broker=broker, actor_name="inline_report")
        @immortus.track(queue="dramatiq", strategy=inline)
        def report() -> None:
            """A job with an inline strategy."""

        message = report.send()
        assert inline.enqueued == [message.message_id]

        everywhere = AuditStrategy()
        immortus.configure(strategy=everywhere)
        other = harness.app.steps.send()
        assert everywhere.enqueued == [other.message_id]
    finally:
        broker.client.close()


# -- Dramatiq's blind spots ---------------------------------------------------------------


def test_status_by_message_id_alone_where_results_need_the_message(
    harness: DramatiqHarness,
) -> None:
    """Dramatiq's Results key on queue, actor and id: immortus needs only the id."""
    job_id = harness.enqueue("steps")
    with harness.worker():
        wait_for(lambda: harness.outcome_from_the_queue(job_id) is not None, what="the job")
    id_only: Message[Any] = Message(
        queue_name="?", actor_name="?", args=(), kwargs={}, options={}, message_id=job_id
    )
    with pytest.raises(ResultMissing):
        harness.app.results.get_result(id_only)
    immortus.configure(open_endpoints=True)
    response = get_verifier().verify(job_id)  # GET /verify/{message_id}: no job class needed
    body = response.body
    assert response.status == 200
    assert (body["status"], body["progress"]["percent"]) == ("finished", 100.0)


def test_a_message_enqueued_before_install_is_unknown_until_a_worker_takes_it(
    harness: DramatiqHarness,
) -> None:
    """No enqueue hook ran: nothing to show or cancel until the worker's middleware sees it."""
    job_class = harness.job_class("steps")
    job_id = harness.enqueue_untracked("steps")
    assert tracking.JOB_CLASS_OPTION not in harness.sent[job_id].options
    assert immortus.status(job_id, job_class).state is State.UNKNOWN
    assert tracking.cancel(job_id, job_class) is False
    with harness.worker():
        status = wait_for_status(job_id, job_class, completed)
    assert (status.state, status.attempts, status.enqueued_at) == (State.FINISHED, 1, None)
    assert status.progress is not None
    assert status.progress.percent == 100.0


def test_a_retried_failure_is_retrying_and_the_last_one_failed(harness: DramatiqHarness) -> None:
    job_class = harness.job_class("fails")
    waiting = harness.app.fails.send_with_options(min_backoff=600_000, max_backoff=600_000)
    last = harness.enqueue("fails")
    with harness.worker():
        retrying = wait_for_status(
            waiting.message_id, job_class, lambda s: s.state is State.RETRYING
        )
        failed = wait_for_status(last, job_class, completed)
        assert tracking.cancel(waiting.message_id) is True  # its next attempt will be skipped
    assert (retrying.attempts, retrying.error is not None) == (1, True)
    assert retrying.error is not None
    assert (retrying.error.type.rpartition(".")[2], retrying.completed) == ("ValueError", False)
    assert (failed.state, failed.attempts) == (State.FAILED, 2)
    assert immortus.status(waiting.message_id).state is State.CANCELLED


# -- tracking never breaks the job or the enqueue ---------------------------------------------


def test_the_enqueue_survives_a_store_that_raises(
    harness: DramatiqHarness, caplog: pytest.LogCaptureFixture
) -> None:
    immortus.configure(store=ExplodingStore())
    with caplog.at_level(logging.ERROR, logger="immortus"):
        message = harness.app.steps.send()
    assert message.options[tracking.JOB_CLASS_OPTION] == harness.job_class("steps")
    assert "store exploded on enqueued" in caplog.text


def test_the_worker_survives_a_store_that_raises(harness: DramatiqHarness) -> None:
    jobs = [harness.enqueue("steps"), harness.enqueue("flaky"), harness.enqueue("fails")]
    with harness.run_worker(FAULTY_APP, harness.store_url):
        wait_for(
            lambda: None not in [harness.outcome_from_the_queue(job_id) for job_id in jobs],
            what="the three jobs",
        )
    assert [harness.outcome_from_the_queue(job_id) for job_id in jobs] == [
        State.FINISHED,
        State.FINISHED,
        State.FAILED,
    ]
    log = harness.log()
    assert "store exploded on started" in log
    assert "store exploded on progress" in log
    assert "cannot tell whether message" in log
    assert all(immortus.status(j).state is State.CREATED for j in jobs)  # only the enqueue


# -- packaging ------------------------------------------------------------------------------


def test_importing_immortus_does_not_import_dramatiq() -> None:
    assert modules_loaded_by("import immortus, immortus.queues", ["dramatiq"]) == []


def test_without_dramatiq_the_import_says_what_to_install() -> None:
    error = import_error_without("immortus.queues.dramatiq", "dramatiq")
    assert error.startswith("MissingDependency: ")
    assert 'pip install "immortus[dramatiq]"' in error
