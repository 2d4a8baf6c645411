"""Huey with immortus's hooks: the shared scenarios on RedisHuey and SqliteHuey, then Huey's own.

The consumer is Huey's ``huey_consumer`` in a subprocess (two worker threads), importing
``tests.queues.huey_app``; immortus's store is an SQLite file both processes open (the consumer
through ``IMMORTUS_STORE``). A few mapping tests run tasks in Huey's immediate mode instead: the
same signals and hooks, in this process.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest
from huey.utils import Error

import immortus
from immortus import runtime
from immortus.exceptions import NotCancellable, NotInJob, StoreUnavailable
from immortus.queues import huey as huey_queue
from immortus.queues import identify
from immortus.status import State
from immortus.stores.memory import MemoryStore
from immortus.transitions import Event, EventKind
from immortus.web.core import get_verifier
from tests.queues.cancelling import CancelHarness, CancelScenarios, Extra
from tests.queues.huey_storage import LOCATION_ENV, NAME_ENV, STORAGE_ENV
from tests.queues.scenarios import Job, QueueHarness, QueueScenarios, wait_for, wait_for_status
from tests.queues.stores import dead_store_url, tracking_into_sqlite
from tests.queues.workers import WorkerProcess, running_worker, worker_environment
from tests.support import modules_loaded_by

APP = "tests.queues.huey_app"
#: The same app with the hooks uninstalled: a consumer from before immortus was installed.
BARE_APP = "tests.queues.huey_bare"


def load(module: str) -> ModuleType:
    """Import ``module`` afresh: a new Huey, from the environment the test has just set."""
    if module in sys.modules:
        return importlib.reload(sys.modules[module])
    return importlib.import_module(module)


class HueyHarness(QueueHarness, CancelHarness):
    """A Huey queue (Redis or SQLite storage), its consumer in a subprocess, immortus's store."""

    name: ClassVar[str] = "huey"
    #: Between steps only: Huey cannot stop a task, the job stops itself in check_cancelled().
    can_cancel_running: ClassVar[bool] = True
    queue_stops_running: ClassVar[bool] = True  # the revoke, seen by check_cancelled()
    #: The consumer's hooks report the run of a task whose enqueue nobody reported.
    untracked_outcome: ClassVar[State] = State.FINISHED

    def __init__(self, storage: str, location: str, folder: Path, store_url: str) -> None:
        self.folder = folder
        self.store_url = store_url
        self.environment = {
            STORAGE_ENV: storage,
            LOCATION_ENV: location,
            NAME_ENV: f"immortus-test-{uuid.uuid4().hex[:12]}",
        }
        os.environ.update(self.environment)
        self.app = load(APP)
        self.huey: Any = self.app.huey
        self.consumers = 0

    def close(self) -> None:
        """Release the queue's connections (a leaked socket would fail the test)."""
        storage = self.huey.storage
        pool = getattr(storage, "pool", None)
        if pool is not None:
            pool.disconnect()
        storage.close()

    def job_class(self, job: Job) -> str:
        return huey_queue.job_class(getattr(self.app, job))

    def enqueue(self, job: Job) -> str:
        return self.run(job)

    def run(self, task: str, *args: object) -> str:
        """Enqueue the app's ``task`` Huey's own way (calling it); return its id."""
        result = getattr(self.app, task)(*args)
        job_id: str = result.id
        return job_id

    def extra_class(self, job: Extra) -> str:
        return huey_queue.job_class(getattr(self.app, job))

    def enqueue_extra(self, job: Extra) -> str:
        return self.run(job)

    def enqueue_untracked(self, job: Job) -> str:
        huey_queue.uninstall(self.huey)
        try:
            return self.enqueue(job)
        finally:
            huey_queue.install(self.huey)

    def cancel(self, job_id: str) -> None:
        self.huey.revoke_by_id(job_id)

    def worker(self) -> AbstractContextManager[None]:
        return self.consumer(APP, self.store_url)

    def worker_with_store_down(self) -> AbstractContextManager[None]:
        return self.consumer(APP, dead_store_url())

    def outcome_from_the_queue(self, job_id: str) -> State | None:
        value = self.huey.get(job_id, peek=True)  # Huey's result store, read without consuming
        if value is None:
            return None
        if not isinstance(value, Error):
            return State.FINISHED
        cancelled = str(value.metadata.get("error", "")).startswith("CancelExecution")
        return State.CANCELLED if cancelled else State.FAILED

    @contextmanager
    def consumer(self, app: str, store_url: str) -> Iterator[None]:
        """Run ``huey_consumer`` on ``app``'s Huey; stop it with SIGINT (graceful) at the end."""
        self.consumers += 1
        command = [
            sys.executable, "-m", "huey.bin.huey_consumer", f"{app}.huey",
            "--workers", "2", "--worker-type", "thread",
            "--delay", "0.02", "--max-delay", "0.1",  # poll often: a job starts at once
            "--no-periodic", "--disable-health-check", "--shutdown-timeout", "20",
        ]  # fmt: skip
        consumer = WorkerProcess(
            "the Huey consumer",
            command,
            env=worker_environment(store_url, **self.environment),
            log=self.folder / f"consumer-{self.consumers}.log",
            stop_signal=signal.SIGINT,
        )
        with running_worker(consumer):
            yield


@contextmanager
def huey_harness(storage: str, location: str, folder: Path) -> Iterator[HueyHarness]:
    """A harness on a fresh queue, with immortus configured on a fresh store for the test."""
    saved = {name: os.environ.get(name) for name in (STORAGE_ENV, LOCATION_ENV, NAME_ENV)}
    with tracking_into_sqlite(folder) as store_url:
        harness = HueyHarness(storage, location, folder, store_url)
        try:
            yield harness
        finally:
            harness.close()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis), "sqlite"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HueyHarness]:
    """The scenarios' harness, once on RedisHuey and once on SqliteHuey."""
    storage: str = request.param
    if storage == "redis":
        location: str = request.getfixturevalue("redis_url")
    else:
        location = str(tmp_path / "huey.sqlite3")
    with huey_harness(storage, location, tmp_path) as made:
        yield made


@pytest.fixture
def sqlite_harness(tmp_path: Path) -> Iterator[HueyHarness]:
    """One harness (SqliteHuey) for the Huey tests that do not depend on the storage."""
    with huey_harness("sqlite", str(tmp_path / "huey.sqlite3"), tmp_path) as made:
        yield made


class TestHueyScenarios(QueueScenarios, CancelScenarios):
    """The shared scenarios, on both storages."""


# -- Huey's blind spots ----------------------------------------------------------------------


def test_reading_hueys_result_consumes_it_but_not_the_jobs_status(
    sqlite_harness: HueyHarness,
) -> None:
    harness = sqlite_harness
    result = harness.app.build_report(3)
    with harness.worker():
        assert result.get(blocking=True, timeout=60) == 3  # Huey deletes the result as it reads
    assert harness.huey.get(result.id, peek=True) is None  # Huey's copy is gone
    status = immortus.status(result.id, huey_queue.job_class(harness.app.build_report))
    assert (status.state, status.attempts) == (State.FINISHED, 1)
    assert status.progress is not None
    assert (status.progress.current, status.progress.total) == (3, 3)
    assert status.progress.message == "row 3"


def test_a_task_enqueued_before_install_is_unknown_and_stays_so_if_it_ran_without_hooks(
    sqlite_harness: HueyHarness,
) -> None:
    harness = sqlite_harness
    job_class = huey_queue.job_class(harness.app.build_report)
    huey_queue.uninstall(harness.huey)
    before = harness.run("build_report", 0)  # no rows: code from before immortus
    huey_queue.install(harness.huey)
    assert immortus.status(before, job_class).state is State.UNKNOWN  # waiting, unreported
    with harness.consumer(BARE_APP, harness.store_url):  # a consumer from before immortus
        wait_for(lambda: harness.outcome_from_the_queue(before) is not None, what="the task")
    assert harness.outcome_from_the_queue(before) is State.FINISHED
    assert immortus.status(before, job_class).state is State.UNKNOWN  # nothing recorded it
    # Run by a consumer with the hooks, such a task is tracked from its start.
    waiting = harness.enqueue_untracked("steps")
    with harness.worker():
        done = wait_for_status(waiting, harness.job_class("steps"), lambda s: s.completed)
    assert (done.state, done.enqueued_at) == (State.FINISHED, None)
    assert done.started_at is not None


def test_a_failing_store_breaks_neither_the_enqueue_nor_the_task(
    sqlite_harness: HueyHarness, caplog: pytest.LogCaptureFixture
) -> None:
    harness = sqlite_harness
    # This process's store: every write fails, and is logged (no outbox to hold it).
    immortus.configure(store=RaisingStore(), outbox_limit=0)
    with caplog.at_level(logging.ERROR, logger="immortus"):
        job_id = harness.enqueue("steps")
    assert any("job_enqueued" in record.getMessage() for record in caplog.records)
    with harness.worker():  # its own store works
        wait_for(lambda: harness.outcome_from_the_queue(job_id) is not None, what="the job")
    assert harness.outcome_from_the_queue(job_id) is State.FINISHED
    immortus.configure(store=harness.store_url)
    status = immortus.status(job_id, harness.job_class("steps"))
    assert (status.state, status.enqueued_at) == (State.FINISHED, None)


def test_a_revoked_task_stops_at_its_next_check_and_ends_cancelled(
    sqlite_harness: HueyHarness,
) -> None:
    harness = sqlite_harness
    job_class = huey_queue.job_class(harness.app.build_report)
    job_id = harness.run("build_report", 100_000)
    with harness.worker():
        wait_for_status(job_id, job_class, lambda s: s.progress is not None)
        harness.cancel(job_id)
        status = wait_for_status(job_id, job_class, lambda s: s.completed)
        follower = harness.run("build_report", 1)  # Huey did not retry the cancelled one
        wait_for_status(follower, job_class, lambda s: s.completed)
    assert (status.state, status.attempts, status.error) == (State.CANCELLED, 1, None)
    assert status.progress is not None
    assert status.progress.total == 100_000
    assert immortus.status(job_id, job_class).state is State.CANCELLED
    # Huey's result store keeps a CancelExecution error for it.
    assert harness.outcome_from_the_queue(job_id) is State.CANCELLED


# -- the hooks, in Huey's immediate mode (same signals, run in this process) ----------------


class RecordingStore(MemoryStore):
    """A memory store that keeps every event it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []

    def record(self, event: Event) -> None:
        self.events.append(event)
        super().record(event)

    def kinds(self, job_id: str) -> list[EventKind]:
        return [event.kind for event in self.events if event.job_id == job_id]


class RaisingStore(MemoryStore):
    """A store that cannot be written to."""

    def record(self, event: Event) -> None:
        raise StoreUnavailable("the store is down (fault injection)")


@pytest.fixture
def immediate(tmp_path: Path) -> Iterator[tuple[HueyHarness, RecordingStore]]:
    """The app's Huey in immediate mode (tasks run in ``enqueue``), tracking into memory."""
    with huey_harness("memory", "", tmp_path) as harness:
        store = RecordingStore()
        immortus.configure(store=store, progress_interval=0)
        yield harness, store


def test_install_is_idempotent(immediate: tuple[HueyHarness, RecordingStore]) -> None:
    harness, store = immediate
    huey_queue.install(harness.huey)
    huey_queue.install(harness.huey)
    job_id = harness.run("steps")
    assert store.kinds(job_id) == [
        EventKind.ENQUEUED,
        EventKind.STARTED,
        EventKind.PROGRESS,
        EventKind.PROGRESS,
        EventKind.PROGRESS,
        EventKind.FINISHED,
    ]
    assert huey_queue.installed(harness.huey)
    huey_queue.uninstall(harness.huey)
    assert not huey_queue.installed(harness.huey)
    assert store.kinds(harness.run("build_report", 0)) == []


def test_a_task_not_opted_in_is_not_tracked(
    immediate: tuple[HueyHarness, RecordingStore],
) -> None:
    harness, store = immediate
    job_id = harness.run("not_tracked")
    assert harness.huey.get(job_id, peek=True) == "done"
    assert store.events == []


def test_an_expired_task_is_cancelled_without_starting(
    immediate: tuple[HueyHarness, RecordingStore],
) -> None:
    harness, store = immediate
    task = harness.app.steps.s(expires=-1)  # its expiry passed before a worker saw it
    harness.huey.enqueue(task)
    status = immortus.status(task.id, harness.job_class("steps"))
    assert (status.state, status.started_at) == (State.CANCELLED, None)
    assert store.kinds(task.id) == [EventKind.ENQUEUED, EventKind.CANCELLED]


def test_a_cancel_that_asks_for_a_retry_is_retrying_then_runs_again(
    immediate: tuple[HueyHarness, RecordingStore],
) -> None:
    harness, store = immediate
    job_id = harness.run("cancels_then_retries")
    status = immortus.status(job_id, f"{APP}.cancels_then_retries")
    assert (status.state, status.attempts) == (State.FINISHED, 2)
    retrying = [event for event in store.events if event.kind is EventKind.RETRYING]
    assert len(retrying) == 1
    assert retrying[0].error is not None
    assert retrying[0].error.type == "huey.exceptions.CancelExecution"


def test_a_hook_that_raises_is_logged_and_the_task_runs_on(
    immediate: tuple[HueyHarness, RecordingStore],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    harness, store = immediate

    def broken(task: object) -> str:
        raise RuntimeError("a hook bug (fault injection)")

    monkeypatch.setattr(huey_queue, "_tracked_class", broken)
    with caplog.at_level(logging.ERROR, logger="immortus"):
        job_id = harness.run("build_report", 0)
    assert harness.huey.get(job_id, peek=True) == 0
    messages = [record.getMessage() for record in caplog.records]
    assert any("'enqueued' hook failed" in message for message in messages)
    assert any("'executing' hook failed" in message for message in messages)
    assert store.events == []


def test_cancel_where_no_huey_is_installed_is_refused_with_the_fix(
    sqlite_harness: HueyHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = sqlite_harness.enqueue("steps")
    # As in a process that never ran install(huey):
    monkeypatch.setattr(runtime.part(huey_queue.HueyState), "installed", [])
    with pytest.raises(NotCancellable, match=r"immortus\.queues\.huey\.install\(huey\)"):
        immortus.cancel(job_id, sqlite_harness.job_class("steps"))


def test_check_cancelled_outside_a_tracked_task_raises_not_in_job() -> None:
    with pytest.raises(NotInJob):
        huey_queue.check_cancelled()


def test_the_job_class_is_hueys_task_name(
    immediate: tuple[HueyHarness, RecordingStore],
) -> None:
    harness, _ = immediate
    steps = harness.app.steps
    expected = f"{APP}.steps"
    assert huey_queue.job_class(steps) == expected
    assert huey_queue.job_class(steps.s()) == expected
    assert huey_queue.job_class(steps.task_class) == expected
    assert harness.huey._registry.task_to_string(steps.task_class) == expected


def test_importing_immortus_does_not_import_huey() -> None:
    assert modules_loaded_by("import immortus, immortus.queues", ["huey"]) == []


def test_identify_names_the_tracked_task_of_a_result(sqlite_harness: HueyHarness) -> None:
    result = sqlite_harness.app.steps()
    job_class = f"{APP}.steps"
    assert identify(result) == (result.id, job_class)
    assert identify(result.task) == (result.id, job_class)
    plain = sqlite_harness.app.not_tracked()
    assert identify(plain) == (plain.id, None)
    immortus.configure(open_endpoints=True)
    answer = get_verifier().verify(result.id, job_class)  # the page follows its job class
    assert (answer.status, answer.body["status"]) == (200, "created")
