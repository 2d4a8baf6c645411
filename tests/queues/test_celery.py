"""Celery: the shared scenarios and Celery's blind spots, with a real Redis and a real worker.

The broker and the result backend are database 5 of the session's redis-server; immortus's
store is an SQLite file shared with the worker through ``IMMORTUS_STORE``. The worker is
``celery -A tests.queues.celery_app worker`` in a subprocess, with the threads pool, except
where a running task must be terminated: only the prefork pool can kill one.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
import redis
from celery import Celery, signals  # type: ignore[import-untyped]
from celery.exceptions import WorkerLostError  # type: ignore[import-untyped]

import immortus
from immortus import JobStatus, State, StoreUnavailable, runtime
from immortus.queues import celery as immortus_celery
from immortus.queues import identify
from immortus.queues.celery import CeleryStrategy, install, revoke, uninstall
from immortus.queues.celery import hooks as celery_hooks
from immortus.queues.celery import names as celery_names
from immortus.store_strategy import StoreStrategy
from immortus.stores.memory import MemoryStore
from immortus.transitions import Event
from immortus.web.core import get_verifier
from tests.queues import celery_app
from tests.queues.cancelling import CancelHarness, CancelScenarios, Extra
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
from tests.services.base import free_port
from tests.support import import_error_without, modules_loaded_by

#: Celery 5.7's Redis result backend stores an expiring result with redis-py's ``setex``, which
#: redis-py 8 deprecates: Celery's warning to fix, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")

#: The Redis database of the Celery tests (broker and result backend): no other test uses it.
CELERY_DB = 5
TASKS: dict[Job, Any] = {
    "steps": celery_app.steps,
    "fails": celery_app.fails,
    "flaky": celery_app.flaky,
    "slow": celery_app.slow,
}
#: How the queue alone says a job ended.
ENDINGS = {"SUCCESS": State.FINISHED, "FAILURE": State.FAILED, "REVOKED": State.CANCELLED}


class CeleryHarness(QueueHarness, CancelHarness):
    name = "celery"
    can_cancel_running = True
    queue_stops_running = True  # revoke with terminate, in the prefork pool
    untracked_outcome: ClassVar[State] = State.FINISHED

    def __init__(self, url: str, store_url: str, directory: Path) -> None:
        self.url = url
        self.store_url = store_url
        self.directory = directory
        self.pool = "threads"
        self.runs = 0
        #: The worker the current ``worker()`` block runs.
        self.process: WorkerProcess | None = None

    def job_class(self, job: Job) -> str:
        name: str = TASKS[job].name
        return name

    def enqueue(self, job: Job) -> str:
        job_id: str = TASKS[job].delay().id
        return job_id

    def extra_class(self, job: Extra) -> str:
        name: str = getattr(celery_app, job).name
        return name

    def enqueue_extra(self, job: Extra) -> str:
        job_id: str = getattr(celery_app, job).delay().id
        return job_id

    def enqueue_untracked(self, job: Job) -> str:
        uninstall(celery_app.app)
        try:
            return self.enqueue(job)
        finally:
            install(celery_app.app)

    def cancel(self, job_id: str) -> None:
        revoke(job_id, celery_app.app, terminate=True)

    @contextmanager
    def worker(
        self,
        *,
        store_url: str | None = None,
        result_expires: float | None = None,
        variables: Mapping[str, str] | None = None,
        clean_exit: bool = True,
    ) -> Iterator[None]:
        """Run a worker of :attr:`pool` while the block runs; it is :attr:`process` meanwhile.

        ``variables`` are added to its environment. With ``clean_exit``, a worker that does not
        exit with 0 fails the test (pass False for one the test kills).
        """
        self.runs += 1
        ready = self.directory / f"celery-worker-{self.runs}.ready"
        environment = worker_environment(
            store_url or self.store_url,
            IMMORTUS_TEST_CELERY_URL=self.url,
            IMMORTUS_TEST_CELERY_READY=str(ready),
            **(variables or {}),
        )
        if result_expires is not None:
            environment["IMMORTUS_TEST_CELERY_RESULT_EXPIRES"] = str(result_expires)
        command = [
            sys.executable, "-m", "celery", "-A", "tests.queues.celery_app", "worker",
            "--pool", self.pool, "--concurrency", "1" if self.pool == "prefork" else "2",
            "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "warning",
        ]  # fmt: skip
        log = self.directory / f"celery-worker-{self.runs}.log"
        # SIGTERM is Celery's warm shutdown: running tasks end first.
        process = WorkerProcess("the Celery worker", command, env=environment, log=log)
        with running_worker(process, clean_exit=clean_exit):
            process.wait_until_ready(ready.exists)
            self.process = process
            try:
                yield
            finally:
                self.process = None

    def worker_with_store_down(self) -> AbstractContextManager[None]:
        return self.worker(store_url=dead_store_url())

    def outcome_from_the_queue(self, job_id: str) -> State | None:
        return ENDINGS.get(celery_app.app.AsyncResult(job_id).state)


@pytest.fixture
def celery_url(redis_url: str) -> str:
    """The Celery tests' Redis database, emptied."""
    url = redis_url.rpartition("/")[0] + f"/{CELERY_DB}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


@pytest.fixture
def harness(celery_url: str, tmp_path: Path) -> Iterator[CeleryHarness]:
    with tracking_into_sqlite(tmp_path) as store_url:
        celery_app.configure(celery_url)
        install(celery_app.app)
        yield CeleryHarness(celery_url, store_url, tmp_path)


class TestCeleryScenarios(QueueScenarios, CancelScenarios):
    def test_a_running_job_can_be_cancelled(self, harness: QueueHarness) -> None:
        # Celery terminates a running task by killing the process that runs it: the prefork
        # pool's child. The threads pool cannot (see docs/queues/celery.md).
        assert isinstance(harness, CeleryHarness)
        harness.pool = "prefork"
        with harness.worker():
            super().test_a_running_job_can_be_cancelled(harness)

    def test_every_surface_gives_one_answer(self, harness: QueueHarness) -> None:
        # Its slow job is stopped by revoke with terminate: the prefork pool's, as above.
        assert isinstance(harness, CeleryHarness)
        harness.pool = "prefork"
        super().test_every_surface_gives_one_answer(harness)


# -- blind spots -----------------------------------------------------------------------------


def test_pending_for_an_id_celery_never_saw_is_unknown(harness: CeleryHarness) -> None:
    """Celery says PENDING of any id; immortus says ``created`` only for what it saw enqueued."""
    job_class = harness.job_class("steps")
    never = str(uuid.uuid4())
    seen = harness.enqueue("steps")
    before_install = harness.enqueue_untracked("steps")
    for job_id in (never, seen, before_install):
        assert celery_app.app.AsyncResult(job_id).state == "PENDING"
    assert immortus.status(never, job_class).state is State.UNKNOWN
    assert immortus.status(seen, job_class).state is State.CREATED
    # Waiting in the queue, but nobody can tell: the honest answer is unknown.
    assert immortus.status(before_install, job_class).state is State.UNKNOWN


def test_a_job_enqueued_before_install_is_answered_by_the_result_backend(
    harness: CeleryHarness, tmp_path: Path
) -> None:
    """No record in immortus's store at all: the result backend alone answers."""
    job_class = harness.job_class("fails")
    finished = harness.enqueue_untracked("steps")
    failed = harness.enqueue_untracked("fails")
    elsewhere = f"sqlite:///{tmp_path / 'another-store.sqlite3'}"  # a worker tracking elsewhere
    with harness.worker(store_url=elsewhere):
        wait_for(
            lambda: None not in {harness.outcome_from_the_queue(j) for j in (finished, failed)},
            what="both jobs",
        )
    store = immortus.get_store()
    assert store is not None
    assert store.get_many([finished, failed]) == {}
    done = immortus.status(finished, harness.job_class("steps"))
    assert (done.state, done.attempts, done.certain) == (State.FINISHED, 1, True)
    assert done.finished_at is not None
    answer = immortus.status(failed, job_class)
    assert answer.state is State.FAILED
    assert answer.error is not None
    assert (answer.error.type, answer.error.message) == ("ValueError", "boom at 60%")
    assert "Traceback" not in str(answer.to_dict())


def test_an_expired_result_leaves_the_stores_answer(harness: CeleryHarness) -> None:
    """After ``result_expires`` Celery says PENDING again; immortus still knows the ending."""
    job_class = harness.job_class("steps")
    job_id = harness.enqueue("steps")
    with harness.worker(result_expires=1):
        wait_for(lambda: harness.outcome_from_the_queue(job_id) is State.FINISHED, what="done")
        wait_for(lambda: celery_app.app.AsyncResult(job_id).state == "PENDING", what="the expiry")
    status = immortus.status(job_id, job_class)
    assert (status.state, status.attempts) == (State.FINISHED, 1)
    assert status.progress is not None
    assert status.progress.percent == 100.0


# -- the result backend's states, read by CeleryStrategy -------------------------------------


def store_state(job_id: str, result: object, state: str) -> None:
    celery_app.app.backend.store_result(job_id, result, state)


def test_every_celery_state_maps_to_ours(harness: CeleryHarness) -> None:
    strategy = CeleryStrategy(celery_app.app)
    ids = {name: str(uuid.uuid4()) for name in ("STARTED", "RETRY", "FAILURE", "REVOKED")}
    ids |= {name: str(uuid.uuid4()) for name in ("SUCCESS", "PROGRESS", "PENDING")}
    store_state(ids["STARTED"], {"pid": 1, "hostname": "w"}, "STARTED")
    store_state(ids["RETRY"], RuntimeError("first attempt fails"), "RETRY")
    store_state(ids["FAILURE"], KeyError("row"), "FAILURE")
    celery_app.app.backend.mark_as_revoked(ids["REVOKED"], reason="revoked")
    store_state(ids["SUCCESS"], 42, "SUCCESS")
    store_state(ids["PROGRESS"], {"current": 3, "total": 4}, "PROGRESS")  # celery-progress's
    answers = {name: strategy.native_status(job_id) for name, job_id in ids.items()}
    assert answers["PENDING"] is None
    states = {name: answer.state for name, answer in answers.items() if answer is not None}
    assert states == {
        "STARTED": State.STARTED,
        "RETRY": State.RETRYING,
        "FAILURE": State.FAILED,
        "REVOKED": State.CANCELLED,
        "SUCCESS": State.FINISHED,
        "PROGRESS": State.STARTED,
    }
    failure, retry = answers["FAILURE"], answers["RETRY"]
    assert failure is not None
    assert failure.error is not None
    assert (failure.error.type, failure.error.message) == ("KeyError", "'row'")
    assert failure.finished_at is not None
    assert retry is not None
    assert retry.error is not None
    assert retry.error.message == "first attempt fails"
    progress = answers["PROGRESS"]
    assert progress is not None
    assert progress.progress is not None
    assert progress.progress.percent == 75.0
    revoked = answers["REVOKED"]
    assert revoked is not None
    assert revoked.error is None


def test_a_failure_of_a_lost_pool_child_reads_lost(harness: CeleryHarness) -> None:
    """What the worker's main process stores when the child running the task died."""
    job_id = str(uuid.uuid4())
    store_state(
        job_id, WorkerLostError("Worker exited prematurely: signal 9 (SIGKILL)."), "FAILURE"
    )
    answer = CeleryStrategy(celery_app.app).native_status(job_id)
    assert answer is not None
    assert (answer.state, answer.completed, answer.success) == (State.LOST, True, False)
    assert answer.error is not None
    assert answer.error.type == "billiard.exceptions.WorkerLostError"
    assert answer.error.message == "Worker exited prematurely: signal 9 (SIGKILL)."
    assert answer.finished_at is not None


def test_many_jobs_are_read_with_one_mget(
    harness: CeleryHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    done, failed, never = (str(uuid.uuid4()) for _ in range(3))
    store_state(done, 1, "SUCCESS")
    store_state(failed, ValueError("no"), "FAILURE")

    def one_by_one(key: object) -> None:  # fault injection: a per-job read would fail here
        raise AssertionError("native_status_many read the backend one job at a time")

    monkeypatch.setattr(celery_app.app.backend, "get", one_by_one)
    answers = CeleryStrategy(celery_app.app).native_status_many([done, failed, never, done])
    assert {job_id: answer.state for job_id, answer in answers.items()} == {
        done: State.FINISHED,
        failed: State.FAILED,
    }
    job_class = harness.job_class("steps")
    batch = immortus.status_many([(done, job_class), (never, job_class), (failed, job_class)])
    assert [status.state for status in batch] == [State.FINISHED, State.UNKNOWN, State.FAILED]


def test_the_result_backend_answers_while_the_store_is_down(harness: CeleryHarness) -> None:
    class DownStore(MemoryStore):
        def get_many(self, job_ids: object) -> dict[str, JobStatus]:
            raise StoreUnavailable("down")

    job_id = str(uuid.uuid4())
    store_state(job_id, 1, "SUCCESS")
    strategy = CeleryStrategy(celery_app.app, store=DownStore())
    assert strategy.status(job_id).state is State.FINISHED
    with pytest.raises(StoreUnavailable):
        strategy.status(str(uuid.uuid4()))  # neither can answer


def test_an_unreachable_result_backend_is_store_unavailable(harness: CeleryHarness) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = Celery("unreachable", broker=dead, backend=dead, set_as_current=False)
    with pytest.raises(StoreUnavailable, match="result backend"):
        CeleryStrategy(app).native_status("any-job")


# -- cancelling ------------------------------------------------------------------------------


def test_revoke_leaves_a_started_job_to_the_worker(harness: CeleryHarness) -> None:
    """Without ``terminate`` a running job runs on: revoke writes nothing for it."""
    job_id = harness.enqueue("steps")
    immortus.lifecycle.job_started(job_id, harness.job_class("steps"), attempt=1)
    revoke(job_id, celery_app.app)
    assert celery_app.app.AsyncResult(job_id).state == "PENDING"
    assert immortus.status(job_id, harness.job_class("steps")).state is State.STARTED


def test_revoke_of_a_waiting_job_holds_without_a_worker(harness: CeleryHarness) -> None:
    """Celery's own revoke is lost when no worker listens; immortus's makes it stick."""
    job_id = harness.enqueue("steps")
    revoke(job_id, celery_app.app)
    assert celery_app.app.AsyncResult(job_id).state == "REVOKED"
    store = immortus.get_store()
    assert store is not None
    recorded = store.get(job_id)
    assert recorded is not None
    assert (recorded.state, recorded.started_at) == (State.CANCELLED, None)
    with harness.worker():
        follower = harness.enqueue("steps")
        wait_for(lambda: harness.outcome_from_the_queue(follower) is not None, what="follower")
    assert celery_app.app.AsyncResult(job_id).state == "REVOKED"  # it never ran: no SUCCESS
    assert immortus.status(job_id, harness.job_class("steps")).state is State.CANCELLED


def test_immortus_cancel_terminates_a_running_task_in_the_prefork_pool(
    harness: CeleryHarness, tmp_path: Path
) -> None:
    """A task that never reports progress is stopped all the same: its pool child is killed."""
    harness.pool = "prefork"
    job_class = celery_app.blocks.name
    with harness.worker():
        job_id = celery_app.blocks.delay(str(tmp_path / "never")).id
        wait_for_status(job_id, job_class, lambda s: s.progress is not None)
        immortus.cancel(job_id, job_class)
        status = wait_for_status(job_id, job_class, completed)
        follower = harness.enqueue("steps")
        wait_for_status(follower, harness.job_class("steps"), completed)
    assert status.state is State.CANCELLED
    assert harness.outcome_from_the_queue(job_id) is State.CANCELLED


def test_job_cancelled_in_an_eagerly_applied_task_is_revoked(harness: CeleryHarness) -> None:
    celery_app.app.finalize()  # as a worker does: the tracked tasks are wrapped then
    result = celery_app.stops_itself.apply()
    assert result.state == "IGNORED"  # Celery's Ignore: stored nothing more, retried nothing
    status = wait_for_status(result.id, celery_app.stops_itself.name, completed)
    assert (status.state, status.attempts) == (State.CANCELLED, 1)
    assert harness.outcome_from_the_queue(result.id) is State.CANCELLED


# -- hooks: opting in, installing, never breaking --------------------------------------------


def test_the_strategies(harness: CeleryHarness) -> None:
    steps = immortus.find_strategy(harness.job_class("steps"))
    assert isinstance(steps, CeleryStrategy)
    assert steps.app is celery_app.app
    assert type(immortus.find_strategy(celery_app.notify.name)) is StoreStrategy  # inline
    immortus.configure(strategy=CeleryStrategy(celery_app.app))  # global
    assert isinstance(immortus.find_strategy(celery_app.notify.name), StoreStrategy)
    assert isinstance(immortus.find_strategy(None), CeleryStrategy)


def test_install_is_idempotent_and_uninstall_stops_the_hooks(harness: CeleryHarness) -> None:
    install(celery_app.app)
    install(celery_app.app)
    receivers = signals.after_task_publish.receivers
    assert [key[0] for key, _ in receivers].count("immortus.after_task_publish") == 1
    uninstall(celery_app.app)
    try:
        assert immortus_celery.installed() is None
        job_id = harness.enqueue("steps")
    finally:
        install(celery_app.app)
    assert immortus.status(job_id, harness.job_class("steps")).state is State.UNKNOWN
    assert immortus_celery.installed() is celery_app.app


def test_a_failing_store_never_breaks_the_enqueue(
    harness: CeleryHarness, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenStore(MemoryStore):
        def record(self, event: Event) -> None:
            raise StoreUnavailable("the store is down")

    immortus.configure(store=BrokenStore(), outbox_limit=0)  # no outbox: the failure is logged
    with caplog.at_level(logging.ERROR, logger="immortus"):
        job_id = harness.enqueue("steps")
    assert job_id
    assert any("job_enqueued" in record.getMessage() for record in caplog.records)
    with redis.Redis.from_url(harness.url) as client:
        assert client.llen("celery") == 1  # the task was sent all the same


def test_hooks_never_raise_on_odd_messages(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="immortus"):
        celery_hooks._on_published(sender=None, headers=None, body="junk")
        celery_hooks._on_published(sender="x", headers={"task": celery_app.steps.name})
        celery_hooks._on_prerun(task_id="j", task=object())
        celery_hooks._on_revoked(sender=None, request=None)
    assert len(caplog.records) == 3  # logged, not raised (the body "junk" is just ignored)


def test_a_task_renamed_in_celery_only_is_reported_once(
    harness: CeleryHarness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.part(celery_names.Published), "warned", set())
    with caplog.at_level(logging.WARNING, logger="immortus"):
        celery_app.renamed.apply()
        celery_app.renamed.apply()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "@immortus.track(name='tests.queues.celery_app.renamed_task'" in warnings[0]


def test_progress_works_in_an_eagerly_applied_task(harness: CeleryHarness) -> None:
    """``task.apply()`` runs the task here, through the same prerun and success signals."""
    result = celery_app.steps.apply()
    status = wait_for_status(result.id, harness.job_class("steps"), completed)
    assert (status.state, status.attempts) == (State.FINISHED, 1)
    assert status.progress is not None
    assert status.progress.message == "step 3"
    assert immortus.current_job() is None


# -- imports ---------------------------------------------------------------------------------


def test_importing_immortus_imports_no_celery() -> None:
    statement = "import immortus, immortus.queues, immortus.queues.native"
    assert modules_loaded_by(statement, ["celery", "kombu"]) == []


def test_without_celery_the_error_says_what_to_install() -> None:
    error = import_error_without("immortus.queues.celery", "celery")
    assert error.startswith("MissingDependency: ")
    assert 'pip install "immortus[celery]"' in error


def test_identify_names_the_tracked_task_of_an_async_result(
    harness: CeleryHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_class = harness.job_class("steps")
    result = celery_app.steps.delay()
    assert celery_app.app.AsyncResult(result.id).name is None  # what Celery itself can tell
    assert identify(result) == (result.id, job_class)  # remembered from the enqueue
    published = runtime.part(celery_names.Published)
    monkeypatch.setattr(published, "job_classes", OrderedDict())  # as in another process
    assert identify(celery_app.app.AsyncResult(result.id)) == (result.id, job_class)  # the store
    assert identify(celery_app.app.AsyncResult("nobody")) == ("nobody", None)
    immortus.configure(open_endpoints=True)
    answer = get_verifier().verify(result.id, job_class)  # the page follows its job class
    assert (answer.status, answer.body["status"]) == (200, "created")
