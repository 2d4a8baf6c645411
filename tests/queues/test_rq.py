"""RQ with a real redis-server and a real ``rq worker``: the shared scenarios, and RQ's blind spots.

The broker is the session's redis-server, on a database of its own (:data:`RQ_DB`). immortus's
store is an SQLite file in the test's ``tmp_path``, shared with the worker through
``IMMORTUS_STORE``. The worker is ``rq worker --job-class immortus.queues.rq.TrackedJob``, a
subprocess forking a work horse per job, as in production; it is stopped with SIGTERM (RQ's
warm shutdown) at the end of each block.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry
from rq import Callback, Queue, Retry, SimpleWorker
from rq.command import send_stop_job_command
from rq.exceptions import StopRequested
from rq.job import Job
from rq.job import JobStatus as RQState
from rq.worker import BaseWorker

import immortus
from immortus import State, StoreStrategy
from immortus.exceptions import ConfigurationError, NotCancellable, StoreUnavailable
from immortus.jobs import job_class_of
from immortus.queues import identify
from immortus.queues.rq import (
    ABANDONED,
    HORSE_DIED,
    STATES,
    RQStrategy,
    TrackedJob,
    error_from_traceback,
    install,
    installed,
    tracked_job_class,
    uninstall,
)
from immortus.queues.rq.hooks import _Installed
from immortus.queues.rq.job import _stop_signals_held
from immortus.status import JobStatus
from immortus.stores.memory import MemoryStore
from immortus.transitions import Event
from immortus.web.core import get_verifier
from tests.queues import rq_app
from tests.queues.cancelling import CancelHarness, CancelScenarios, Extra
from tests.queues.scenarios import Job as ScenarioJob
from tests.queues.scenarios import QueueHarness, QueueScenarios, wait_for, wait_for_status
from tests.queues.stores import dead_store_url, tracking_into_sqlite
from tests.queues.workers import WorkerProcess, running_worker, worker_environment
from tests.services import free_port
from tests.support import import_error_without, modules_loaded_by, signal_handlers_kept

#: The Redis database RQ uses in these tests; the session's other tests use database 0.
RQ_DB = 3
TRACKED_JOB_CLASS = "immortus.queues.rq.TrackedJob"
SCENARIO_JOBS: dict[ScenarioJob, Callable[[], Any]] = {
    "steps": rq_app.steps,
    "fails": rq_app.fails,
    "flaky": rq_app.flaky,
    "slow": rq_app.slow,
}


class RQHarness(QueueHarness, CancelHarness):
    """The session's redis-server, an SQLite store in ``folder``, and ``rq worker`` processes."""

    name: ClassVar[str] = "rq"
    can_cancel_running: ClassVar[bool] = True
    queue_stops_running: ClassVar[bool] = True  # RQ's stop command
    untracked_outcome: ClassVar[State] = State.FINISHED

    def __init__(self, url: str, store_url: str, folder: Path) -> None:
        self.url = url
        self.store_url = store_url
        self.folder = folder
        self.connection = Redis.from_url(url)
        self.queue = rq_app.make_queue(self.connection)
        self.worker_pids: list[int] = []
        self._workers = 0
        #: Whether the workers run RQ's scheduler (a process of their own, beside the horse).
        self.with_scheduler = False

    def close(self) -> None:
        self.connection.close()

    def job_class(self, job: ScenarioJob) -> str:
        return job_class_of(SCENARIO_JOBS[job])

    def enqueue(self, job: ScenarioJob) -> str:
        retry = Retry(max=1) if job == "flaky" else None
        enqueued: str = self.queue.enqueue(SCENARIO_JOBS[job], retry=retry).id
        return enqueued

    def extra_class(self, job: Extra) -> str:
        return job_class_of(getattr(rq_app, job))

    def enqueue_extra(self, job: Extra) -> str:
        interval = round(self.retry_delay) if job == "retried_later" else 0
        retry = Retry(max=1, interval=interval)
        enqueued: str = self.queue.enqueue(getattr(rq_app, job), retry=retry).id
        return enqueued

    def enqueue_untracked(self, job: ScenarioJob) -> str:
        plain = Queue(rq_app.QUEUE_NAME, connection=self.connection)  # no install(): no hooks
        retry = Retry(max=1) if job == "flaky" else None
        enqueued: str = plain.enqueue(SCENARIO_JOBS[job], retry=retry).id
        return enqueued

    def cancel(self, job_id: str) -> None:
        """Stop the job if a worker runs it, else cancel it: RQ's two ways, as the docs say."""
        job = self.queue.fetch_job(job_id)
        assert job is not None, f"RQ has no job {job_id}"
        if job.get_status() is RQState.STARTED:
            send_stop_job_command(self.connection, job_id)
        else:
            job.cancel()

    def worker(
        self, *, tracked: bool = True, environment: Mapping[str, str] | None = None
    ) -> AbstractContextManager[None]:
        """Run an ``rq worker`` (with ``environment`` added to its own) while the block runs."""
        return self._worker(self.store_url, tracked=tracked, environment=environment)

    def worker_with_store_down(self) -> AbstractContextManager[None]:
        return self._worker(dead_store_url(), tracked=True)

    @contextmanager
    def _worker(
        self, store_url: str, *, tracked: bool, environment: Mapping[str, str] | None = None
    ) -> Iterator[None]:
        self._workers += 1
        name = f"immortus-test-{os.getpid()}-{self._workers}"
        command = [sys.executable, "-m", "rq.cli", "worker", "--url", self.url, "--name", name]
        if self.with_scheduler:  # runs the retries RQ schedules (an interval)
            command.append("--with-scheduler")
        if tracked:
            command += ["--job-class", TRACKED_JOB_CLASS]
        command.append(rq_app.QUEUE_NAME)
        env = worker_environment(store_url, **(environment or {}))
        log = self.folder / f"{name}.log"
        # SIGTERM is RQ's warm shutdown: the current job ends first.
        worker = WorkerProcess("the rq worker", command, env=env, log=log, cwd=self.folder)
        self.worker_pids.append(worker.pid)
        try:
            with running_worker(worker, clean_exit=False):
                key = BaseWorker.redis_worker_namespace_prefix + name
                worker.wait_until_ready(lambda: bool(self.connection.exists(key)))
                yield
        finally:
            self.worker_pids.remove(worker.pid)

    def outcome_from_the_queue(self, job_id: str) -> State | None:
        """RQ's own answer, read from the job hash with RQ's API only."""
        outcome = {
            RQState.FINISHED: State.FINISHED,
            RQState.FAILED: State.FAILED,
            RQState.STOPPED: State.CANCELLED,
            RQState.CANCELED: State.CANCELLED,
        }
        return outcome.get(Job.fetch(job_id, connection=self.connection).get_status())

    def horse_of(self, worker_pid: int) -> int:
        """Return the pid of the work horse the worker forked (Linux: /proc)."""
        found: list[int] = []

        def forked() -> bool:
            children = Path(f"/proc/{worker_pid}/task/{worker_pid}/children").read_text().split()
            found[:] = [int(pid) for pid in children]
            return bool(found)

        wait_for(forked, what="the work horse")
        return found[0]


@pytest.fixture
def rq_url(redis_url: str) -> str:
    """The session's redis-server, database :data:`RQ_DB`, emptied."""
    url = redis_url.rpartition("/")[0] + f"/{RQ_DB}"
    with Redis.from_url(url) as client:
        client.flushdb()
    return url


@pytest.fixture
def harness(rq_url: str, tmp_path: Path) -> Iterator[RQHarness]:
    with tracking_into_sqlite(tmp_path) as store_url:
        rq_harness = RQHarness(rq_url, store_url, tmp_path)
        try:
            yield rq_harness
        finally:
            rq_harness.close()


class TestRQScenarios(QueueScenarios, CancelScenarios):
    def test_a_retry_says_when_it_runs(self, harness: QueueHarness) -> None:
        # A retry with an interval is scheduled: only a worker with RQ's scheduler runs it.
        assert isinstance(harness, RQHarness)
        harness.with_scheduler = True
        super().test_a_retry_says_when_it_runs(harness)


# -- RQ's blind spots ----------------------------------------------------------------------


def test_after_result_ttl_the_store_still_answers(harness: RQHarness) -> None:
    job_class = harness.job_class("steps")
    job_id = harness.queue.enqueue(rq_app.steps, result_ttl=1).id
    with harness.worker():
        wait_for_status(job_id, job_class, lambda s: s.completed)
    wait_for(lambda: not Job.exists(job_id, harness.connection), what="RQ to drop the job hash")
    assert RQStrategy(harness.connection).native_status(job_id) is None
    status = immortus.status(job_id, job_class)
    assert (status.state, status.attempts) == (State.FINISHED, 1)
    assert status.progress is not None
    assert status.progress.percent == 100.0
    immortus.configure(store=None)  # store tracking off: nobody has a record any more
    assert immortus.status(job_id, job_class).state is State.UNKNOWN


def test_a_job_enqueued_and_run_before_install_is_read_from_rq(harness: RQHarness) -> None:
    plain = Queue(rq_app.QUEUE_NAME, connection=harness.connection)  # no install(): no hooks
    quiet_id = plain.enqueue(rq_app.quiet).id
    breaks_id = plain.enqueue(rq_app.breaks).id
    with harness.worker(tracked=False):  # a plain `rq worker`: no hook runs anywhere
        wait_for(lambda: harness.outcome_from_the_queue(breaks_id) is not None, what="the job")
    store = immortus.get_store()
    assert store is not None
    assert store.get_many([quiet_id, breaks_id]) == {}
    quiet = immortus.status(quiet_id, job_class_of(rq_app.quiet))
    assert (quiet.state, quiet.attempts, quiet.certain) == (State.FINISHED, 1, True)
    assert quiet.enqueued_at is not None
    assert quiet.started_at is not None
    assert quiet.finished_at is not None
    failed = immortus.status(breaks_id, job_class_of(rq_app.breaks))
    assert failed.state is State.FAILED
    assert failed.error is not None
    assert (failed.error.type, failed.error.message) == ("ValueError", "boom")
    assert failed.error.traceback is not None  # kept on the server...
    assert "Traceback" not in str(failed.to_dict())  # ...never sent


def test_without_the_tracked_job_class_the_worker_runs_jobs_untracked(harness: RQHarness) -> None:
    """``immortus.progress()`` records nothing there, never fails the job, and says why."""
    job_id = harness.enqueue("steps")
    with harness.worker(tracked=False):
        status = wait_for_status(job_id, harness.job_class("steps"), lambda s: s.completed)
    assert (status.state, status.progress) == (State.FINISHED, None)  # RQ's hash ended it
    log = "\n".join(path.read_text() for path in harness.folder.glob("immortus-test-*.log"))
    assert "--job-class immortus.queues.rq.TrackedJob" in log


def test_a_job_enqueued_before_install_is_tracked_once_a_tracked_worker_runs_it(
    harness: RQHarness,
) -> None:
    job_id = harness.enqueue_untracked("steps")
    with harness.worker():
        status = wait_for_status(job_id, harness.job_class("steps"), lambda s: s.completed)
    assert status.state is State.FINISHED
    assert status.progress is not None
    assert status.progress.percent == 100.0  # immortus.progress worked in the work horse


def test_a_killed_work_horse_is_lost_from_the_hash_alone(harness: RQHarness) -> None:
    """The worker runs without the hooks: only RQ's hash tells that the horse died."""
    job_class = job_class_of(rq_app.progress_in_meta)  # it reports the RQ way only
    job_id = harness.queue.enqueue(rq_app.progress_in_meta).id
    with harness.worker(tracked=False):
        wait_for(lambda: bool(Job.fetch(job_id, harness.connection).get_meta()), what="meta")
        os.kill(harness.horse_of(harness.worker_pids[-1]), signal.SIGKILL)
        status = wait_for_status(job_id, job_class, lambda s: s.completed)
    store = immortus.get_store()
    assert store is not None
    recorded = store.get(job_id)
    assert recorded is not None
    assert recorded.state is State.CREATED  # nothing ran the hooks after the enqueue...
    assert status.state is State.LOST  # ...RQ's hash ends it
    assert status.error is not None
    assert status.error.type == HORSE_DIED
    assert status.error.message == "the work horse was killed by signal 9 (SIGKILL)"


def test_progress_saved_in_job_meta_shows_when_the_store_has_none(harness: RQHarness) -> None:
    immortus.configure(store=None)
    job_class = job_class_of(rq_app.progress_in_meta)
    job_id = harness.queue.enqueue(rq_app.progress_in_meta).id
    with harness.worker():
        status = wait_for_status(job_id, job_class, lambda s: s.progress is not None)
        harness.cancel(job_id)
        wait_for_status(job_id, job_class, lambda s: s.completed)
    assert status.state is State.STARTED
    assert status.progress is not None
    assert (status.progress.current, status.progress.total) == (2, 4)
    assert status.progress.message == "half way"


# -- the hooks -----------------------------------------------------------------------------


class BrokenStore(MemoryStore):
    """Fault injection: a store whose every write fails."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.writes = 0

    def record(self, event: Event) -> JobStatus | None:
        self.writes += 1
        raise self.error


@pytest.mark.parametrize("error", [StoreUnavailable("down"), RuntimeError("store bug")])
def test_a_failing_store_never_breaks_the_enqueue(
    harness: RQHarness, error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    store = BrokenStore(error)
    immortus.configure(store=store, outbox_limit=0)  # no outbox: the failure is logged
    with caplog.at_level(logging.ERROR, logger="immortus"):
        job = harness.queue.enqueue(rq_app.steps)
    assert store.writes == 1
    assert Job.fetch(job.id, connection=harness.connection).get_status() is RQState.QUEUED
    assert any(job.id in record.getMessage() for record in caplog.records)


def test_untracked_jobs_are_left_alone(harness: RQHarness) -> None:
    store = BrokenStore(RuntimeError("no write expected"))
    immortus.configure(store=store)
    job = harness.queue.enqueue(rq_app.untracked)
    job.cancel()
    assert store.writes == 0


def test_cancelling_a_queued_job_reports_it_at_once(harness: RQHarness) -> None:
    job_class = harness.job_class("steps")
    job_id = harness.enqueue("steps")
    harness.cancel(job_id)
    store = immortus.get_store()
    assert store is not None
    recorded = store.get(job_id)
    assert recorded is not None
    assert recorded.state is State.CANCELLED  # written by the hook, not inferred from RQ
    assert immortus.status(job_id, job_class).state is State.CANCELLED


def test_a_stop_reports_cancelled_then_runs_the_jobs_own_callback(harness: RQHarness) -> None:
    job_class = harness.job_class("slow")
    job_id = harness.queue.enqueue(rq_app.slow, on_stopped=Callback(rq_app.remember_stop)).id
    job = harness.queue.fetch_job(job_id)  # as the worker holds it when the horse is killed
    assert job is not None
    rq_app.STOPPED.clear()
    callback = job.stopped_callback
    assert callback is not None
    callback(job, harness.connection)  # what RQ's worker calls after send_stop_job_command
    assert list(rq_app.STOPPED) == [job_id]
    assert immortus.status(job_id, job_class).state is State.CANCELLED


def test_a_synchronous_queue_runs_the_hooks_in_the_calling_process(harness: RQHarness) -> None:
    queue = install(Queue("immortus-sync", connection=harness.connection, is_async=False))
    job_id = queue.enqueue(rq_app.steps).id
    status = immortus.status(job_id, harness.job_class("steps"))
    assert (status.state, status.attempts) == (State.FINISHED, 1)
    assert status.enqueued_at is not None
    assert status.progress is not None
    assert status.progress.percent == 100.0


def test_a_job_returning_retry_is_retrying_then_failed(harness: RQHarness) -> None:
    worker = install(SimpleWorker([harness.queue], connection=harness.connection))
    job_id = harness.queue.enqueue(rq_app.asks_to_retry).id
    job_class = job_class_of(rq_app.asks_to_retry)
    with signal_handlers_kept():
        worker.work(burst=True, max_jobs=1)
    retrying = immortus.status(job_id, job_class)
    assert (retrying.state, retrying.attempts) == (State.RETRYING, 1)
    with signal_handlers_kept():
        worker.work(burst=True)
    failed = immortus.status(job_id, job_class)
    assert (failed.state, failed.attempts) == (State.FAILED, 2)
    assert failed.error is not None
    assert failed.error.type == "rq.Retry"


def test_a_stop_signal_during_a_report_from_the_worker_is_raised_after_it() -> None:
    """An idle RQ worker raises StopRequested on SIGTERM, wherever it is: never inside a report
    (which would log and lose it), but as soon as the report is done."""
    reached: list[str] = []

    def request_stop(number: int, frame: FrameType | None) -> None:  # as RQ's worker does
        raise StopRequested

    def report() -> None:
        with _stop_signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):  # bytecodes, at which Python runs a pending handler
                time.sleep(0.001)
            reached.append("the end of the report")

    with signal_handlers_kept():
        signal.signal(signal.SIGTERM, request_stop)
        with pytest.raises(StopRequested):
            report()
        assert signal.getsignal(signal.SIGTERM) is request_stop
    assert reached == ["the end of the report"]


# -- install and the strategy --------------------------------------------------------------


class CustomJob(Job):
    """A project's own RQ job class."""


def test_install_is_idempotent_and_keeps_a_custom_job_class(harness: RQHarness) -> None:
    queue = harness.queue
    assert queue.job_class is TrackedJob
    assert install(queue) is queue
    assert queue.job_class is TrackedJob
    custom = install(Queue("custom", connection=harness.connection, job_class=CustomJob))
    assert issubclass(custom.job_class, TrackedJob)
    assert issubclass(custom.job_class, CustomJob)
    assert tracked_job_class(CustomJob) is custom.job_class
    assert install(custom).job_class is tracked_job_class(CustomJob)
    worker = install(SimpleWorker([custom], connection=harness.connection))
    assert worker.job_class is TrackedJob
    with pytest.raises(TypeError, match="RQ Queue or Worker"):
        install(harness.connection)  # type: ignore[type-var]


def test_the_inferred_strategy_is_rq_strategy(harness: RQHarness) -> None:
    strategy = immortus.find_strategy(harness.job_class("steps"))
    assert isinstance(strategy, RQStrategy)


def test_an_inline_strategy_comes_before_the_inferred_one(harness: RQHarness) -> None:
    strategy = immortus.find_strategy(job_class_of(rq_app.notify))
    assert type(strategy) is StoreStrategy
    job_id = harness.queue.enqueue(rq_app.notify).id
    assert immortus.status(job_id, job_class_of(rq_app.notify)).state is State.CREATED


def test_a_global_rq_strategy_answers_for_any_job(harness: RQHarness) -> None:
    immortus.configure(strategy=RQStrategy(connection=harness.connection))
    job = Queue("plain", connection=harness.connection).enqueue(rq_app.untracked)
    assert immortus.status(job.id).state is State.CREATED  # from the hash alone


def test_the_state_table(harness: RQHarness) -> None:
    strategy = RQStrategy(harness.connection)
    job = Queue("table", connection=harness.connection).enqueue(rq_app.untracked)
    for rq_state, state in STATES.items():
        job.set_status(rq_state)
        assert strategy.native_status(job.id) == JobStatus(
            job_id=job.id, state=state, enqueued_at=job.enqueued_at
        ), rq_state
    assert set(STATES) == set(RQState)


def test_a_waiting_job_that_ran_before_is_retrying(harness: RQHarness) -> None:
    job = Queue("table", connection=harness.connection).enqueue(rq_app.untracked)
    job.started_at = job.enqueued_at
    job.save()
    for waiting in (RQState.QUEUED, RQState.SCHEDULED):
        job.set_status(waiting)
        native = RQStrategy(harness.connection).native_status(job.id)
        assert native is not None
        assert (native.state, native.attempts) == (State.RETRYING, 1)


def test_a_scheduled_retry_says_when_from_rqs_registry(harness: RQHarness) -> None:
    """A retry RQ scheduled, read from the hash alone: ``retry_at`` is its scheduled time."""
    queue = Queue("table", connection=harness.connection)
    job = queue.enqueue(rq_app.untracked)
    job.started_at = job.enqueued_at
    job.save()
    when = datetime(2031, 5, 17, 8, 30, 15, tzinfo=UTC)
    queue.schedule_job(job, when)
    native = RQStrategy(harness.connection).native_status(job.id)
    assert native is not None
    assert (native.state, native.retry_at) == (State.RETRYING, when)
    job.set_status(RQState.QUEUED)  # back in its queue: due as soon as a worker is free
    queued = RQStrategy(harness.connection).native_status(job.id)
    assert queued is not None
    assert (queued.state, queued.retry_at) == (State.RETRYING, None)


def test_cancel_where_rq_is_not_installed_is_refused_with_the_fix(
    harness: RQHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_class = job_class_of(rq_app.notify)  # read from the store: no connection needed
    job_id = harness.queue.enqueue(rq_app.notify).id
    monkeypatch.setattr(_Installed, "connection", None)  # a process that never ran install()
    with pytest.raises(NotCancellable, match=r"immortus\.queues\.rq\.install\(queue\)"):
        immortus.cancel(job_id, job_class)
    monkeypatch.undo()
    immortus.cancel(job_id, job_class)  # installed: Job.cancel, at once
    assert immortus.status(job_id, job_class).state is State.CANCELLED
    assert harness.outcome_from_the_queue(job_id) is State.CANCELLED


def test_many_jobs_are_read_with_one_fetch(harness: RQHarness) -> None:
    plain = Queue("many", connection=harness.connection)
    first, second = plain.enqueue(rq_app.untracked), plain.enqueue(rq_app.untracked)
    second.set_status(RQState.STARTED)
    strategy = RQStrategy(harness.connection)
    fetches: list[list[str]] = []
    fetch_many = Job.fetch_many

    def counted(job_ids: Any, connection: Redis, serializer: Any = None) -> list[Job | None]:
        fetches.append(list(job_ids))
        return fetch_many(job_ids, connection=connection, serializer=serializer)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Job, "fetch_many", counted)
        found = strategy.native_status_many([first.id, "no-such-job", second.id, "not/an/rq/id"])
    assert {job_id: s.state for job_id, s in found.items()} == {
        first.id: State.CREATED,
        second.id: State.STARTED,
    }
    assert fetches == [[first.id, "no-such-job", second.id]]


def test_rq_down_is_store_unavailable(harness: RQHarness) -> None:
    dead = Redis(port=free_port(), retry=RedisRetry(NoBackoff(), retries=0))
    with pytest.raises(StoreUnavailable):
        RQStrategy(dead).native_status("some-job")


def test_without_install_the_strategy_says_what_to_do() -> None:
    from immortus.queues.rq import hooks as module

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module._Installed, "connection", None)
        with pytest.raises(ConfigurationError, match=r"install\(queue\)"):
            RQStrategy().native_status("some-job")


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        (
            'Traceback (most recent call last):\n  File "x"\nValueError: boom\n',
            "ValueError",
            "boom",
        ),
        ("Traceback:\n  File 'x'\npkg.Error: two\nlines\n", "pkg.Error", "two\nlines"),
        ("Traceback:\n  File 'x'\nKeyError\n", "KeyError", ""),
        ("Job failed for a reason of its own", "rq.JobFailure", None),
        ("", "rq.JobFailure", "the job failed"),
        (
            "Work-horse terminated unexpectedly; waitpid returned 9 (signal 9); ",
            HORSE_DIED,
            "the work horse was killed by signal 9 (SIGKILL)",
        ),
        (
            "Work-horse terminated unexpectedly; waitpid returned 15; ",
            HORSE_DIED,
            "the work horse was killed by signal 15 (SIGTERM)",
        ),
        (
            "Work-horse terminated unexpectedly; waitpid returned 256; ",
            HORSE_DIED,
            "the work horse exited with code 1",
        ),
        (
            "Moved to FailedJobRegistry, due to AbandonedJobError, at 2026-01-01 00:00:00",
            ABANDONED,
            "the worker running the job died: RQ found the job abandoned",
        ),
        (  # a job's own error that quotes RQ is the job's error
            "Traceback:\n  File 'x'\nRuntimeError: Work-horse terminated unexpectedly; waitpid "
            "returned 9 (signal 9)\n",
            "RuntimeError",
            "Work-horse terminated unexpectedly; waitpid returned 9 (signal 9)",
        ),
    ],
)
def test_errors_are_read_from_rq_tracebacks(text: str, kind: str, message: str | None) -> None:
    error = error_from_traceback(text)
    assert error.type == kind
    assert error.message == (text if message is None else message)


def test_importing_immortus_does_not_import_rq() -> None:
    assert modules_loaded_by("import immortus, immortus.queues", ["rq", "redis"]) == []


def test_without_rq_the_error_says_what_to_install() -> None:
    error = import_error_without("immortus.queues.rq", "rq")
    assert error.startswith("MissingDependency: ")
    assert 'pip install "immortus[rq]"' in error


def test_uninstall_gives_back_the_job_class(harness: RQHarness) -> None:
    custom = install(Queue("custom", connection=harness.connection, job_class=CustomJob))
    assert installed(custom)
    assert uninstall(custom).job_class is CustomJob
    assert not installed(custom)
    plain = uninstall(install(Queue("plain", connection=harness.connection)))
    assert (plain.job_class, installed(plain)) == (Job, False)


def test_identify_names_the_tracked_function_of_a_job(harness: RQHarness) -> None:
    job_class = harness.job_class("steps")
    job = harness.queue.enqueue(rq_app.steps)
    assert identify(job) == (job.id, job_class)
    fetched = Job.fetch(job.id, connection=harness.connection)  # as another process reads it
    assert identify(fetched) == (job.id, job_class)
    renamed = harness.queue.enqueue(rq_app.nightly)
    assert identify(renamed) == (renamed.id, "reports.nightly")
    plain = harness.queue.enqueue(rq_app.untracked)
    assert identify(plain) == (plain.id, None)
    immortus.configure(open_endpoints=True)
    answer = get_verifier().verify(job.id, job_class)  # the page follows its job class
    assert (answer.status, answer.body["status"]) == (200, "created")
