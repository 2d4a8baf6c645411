"""Django tasks with immortus: real ``db_worker`` workers, on SQLite and on PostgreSQL.

Django can be set up once per process, and the pytest process belongs to the web adapter's test
project, so everything Django runs in subprocesses of the task project
(``tests/queues/django_tasks_project``):

- the **Django side** (``side.py``), one per database for the module: it stands in for the web
  app. It enqueues (the enqueue hook runs there, before ``enqueue()`` returns) and answers
  status questions with ``immortus.status``, through the real resolution: the tasks are tracked
  with ``queue="django_tasks"``, so the inferred :class:`DjangoTaskStrategy` answers, merging
  immortus's store with the backend's results;
- the **workers**: ``manage.py db_worker``, one per test that needs one.

In the pytest process, each scenario job's class is tracked with a strategy that relays the
question to the Django side, so :func:`immortus.status` here shows exactly what the Django
process answers, as a browser would see it. The store (an SQLite file in ``tmp_path``) is
shared by the three processes; the task database is migrated once per module and emptied
before each test.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

import immortus
from immortus import CancelOutcome, registry
from immortus.config import HEARTBEAT_INTERVAL_ENV, HEARTBEAT_TIMEOUT_ENV
from immortus.registry import TrackedJob
from immortus.status import JobStatus, State
from immortus.stores.records import decode
from immortus.strategy import TrackingStrategy
from tests.queues.cancelling import CancelHarness, CancelScenarios, Extra
from tests.queues.scenarios import (
    TIMEOUT,
    Job,
    QueueHarness,
    QueueScenarios,
    completed,
    wait_for,
    wait_for_status,
)
from tests.queues.stores import tracking_into_sqlite
from tests.queues.workers import ROOT, WorkerProcess, worker_environment
from tests.services import PostgresServer
from tests.support import modules_loaded_by
from tests.surfaces import Style

PROJECT = "tests.queues.django_tasks_project"
TASKS = f"{PROJECT}.tasks"
#: A worker's heartbeat: a beat every 0.2 s, ``lost`` after 1.5 s without one.
HEARTBEAT = {HEARTBEAT_INTERVAL_ENV: "0.2", HEARTBEAT_TIMEOUT_ENV: "1.5"}
#: A store nobody can open: its directory does not exist.
DEAD_STORE = "sqlite:////nonexistent-immortus-dir/immortus.sqlite3"
#: Django's own result statuses, as the queue alone tells a job's outcome.
QUEUE_OUTCOMES = {"SUCCESSFUL": State.FINISHED, "FAILED": State.FAILED}


def project_env(database: str, store: str) -> dict[str, str]:
    """The environment of a task project process."""
    return worker_environment(
        store, DJANGO_SETTINGS_MODULE=f"{PROJECT}.settings", IMMORTUS_DJANGO_TASKS_DB=database
    )


class DjangoSide:
    """The long-lived Django process of the task project: send a command, read its answer."""

    def __init__(self, database: str, log: Path) -> None:
        self.log = log
        self._stderr = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"{PROJECT}.side"],
            cwd=ROOT,
            env=project_env(database, DEAD_STORE),  # each test's reset() names its store
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )

    def call(self, op: str, **arguments: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            pytest.fail(f"the Django side died; its stderr:\n{self.log.read_text()}")
        answer: dict[str, Any] = json.loads(line)
        if "failure" in answer:
            pytest.fail(f"the Django side failed at {op}:\n{answer['failure']}")
        return answer

    def status(self, job_id: str, job_class: str | None) -> JobStatus:
        answer = self.call("status", id=job_id, job_class=job_class)
        if "raised" in answer:
            pytest.fail(f"immortus.status raised {answer['raised']} in the Django side")
        return decode(answer["status"])

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=TIMEOUT)
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()
            self._stderr.close()


class RelayStrategy(TrackingStrategy):
    """Asks the Django side what ``immortus.status`` answers there for a job of ``job_class``."""

    supports_progress: ClassVar[bool] = True

    def __init__(self, side: DjangoSide, job_class: str) -> None:
        self.side = side
        self.job_class = job_class

    def status(self, job_id: str) -> JobStatus:
        return self.side.status(job_id, self.job_class)


class DjangoTasksHarness(QueueHarness, CancelHarness):
    """The scenario jobs on ``django-tasks-db``, run by ``db_worker`` subprocesses."""

    name = "django_tasks"
    can_cancel_running = False  # no cancel API: see the overridden scenario
    queue_stops_running = False  # the store's cancel request stops it
    untracked_outcome = State.FINISHED  # DjangoTaskStrategy reads the backend's results

    def __init__(self, side: DjangoSide, database: str, store: str, directory: Path) -> None:
        self.side = side
        self.database = database
        self.store = store
        self.directory = directory
        self.worker_process: WorkerProcess | None = None
        self.worker_log = directory / "worker.log"

    def job_class(self, job: Job) -> str:
        return f"{TASKS}.{job}"

    def _arguments(self, job: Job) -> list[str]:
        # flaky fails the first time it runs for its marker file: once per test.
        return [str(self.directory / "flaky.marker")] if job == "flaky" else []

    def enqueue(self, job: Job) -> str:
        job_id: str = self.side.call("enqueue", job=job, args=self._arguments(job))["id"]
        return job_id

    def enqueue_untracked(self, job: Job) -> str:
        answer = self.side.call("enqueue", job=job, args=self._arguments(job), tracked=False)
        job_id: str = answer["id"]
        return job_id

    def cancel(self, job_id: str) -> None:
        self.cancel_queued(job_id)

    def extra_class(self, job: Extra) -> str:
        return f"{TASKS}.{job}"

    def enqueue_extra(self, job: Extra) -> str:
        job_id: str = self.side.call("enqueue", job=job)["id"]
        return job_id

    def cancel_with_immortus(self, job_id: str, job_class: str) -> CancelOutcome:
        """In the Django side: the project's process, where its canceller is registered."""
        return CancelOutcome(
            self.side.call("immortus_cancel", id=job_id, job_class=job_class)["outcome"]
        )

    def surfaces(self, job_id: str, job_class: str, style: Style) -> dict[str, dict[str, Any]]:
        """Asked in the Django side, where the tasks' own strategy reads them."""
        found: dict[str, dict[str, Any]] = self.side.call(
            "surfaces", id=job_id, job_class=job_class, style=style
        )["surfaces"]
        return found

    def stop_slow(self, job_id: str) -> None:
        """No cancel API: stopping the worker mid-task ends it (it reads cancelled)."""
        self.interrupt_worker()

    def cancel_queued(self, job_id: str) -> bool:
        """``immortus.queues.django_tasks.cancel``: delete the row while still READY."""
        cancelled: bool = self.side.call("cancel", id=job_id)["cancelled"]
        return cancelled

    @contextmanager
    def _worker(self, store: str, **variables: str) -> Iterator[None]:
        command = [
            sys.executable, "-m", "django", "db_worker", "--queue-name", "default",
            "--interval", "0.05", "--no-startup-delay", "--no-reload",
            "--worker-id", f"test-{uuid.uuid4().hex[:12]}",
        ]  # fmt: skip
        env = {**project_env(self.database, store), **variables}
        self.worker_process = WorkerProcess("db_worker", command, env=env, log=self.worker_log)
        try:
            yield
        finally:
            self.stop_worker()

    def worker(self) -> AbstractContextManager[None]:
        return self._worker(self.store)

    def worker_with_store_down(self) -> AbstractContextManager[None]:
        return self._worker(DEAD_STORE)

    def worker_with(self, **variables: str) -> AbstractContextManager[None]:
        """A worker with ``variables`` added to its environment (a heartbeat's settings)."""
        return self._worker(self.store, **variables)

    def stop_worker(self) -> None:
        """Stop the worker as an operator would (SIGTERM: it ends its task, then exits)."""
        process, self.worker_process = self.worker_process, None
        if process is not None:
            process.stop()

    def interrupt_worker(self) -> None:
        """Stop the worker in the middle of its task: SIGTERM, then SIGTERM again (Ctrl+C twice)."""
        process = self.worker_process
        assert process is not None
        process.send_signal(signal.SIGTERM)
        wait_for(
            lambda: "shutting down gracefully" in self.worker_log.read_text(),
            what="db_worker to take the first SIGTERM",
        )
        process.stop()  # SIGTERM again

    def kill_worker(self) -> None:
        """Kill the worker as the OOM killer would."""
        process = self.worker_process
        assert process is not None
        process.kill()

    def queue_says(self, job_id: str) -> dict[str, Any]:
        """Django's own result (status, error class paths, attempts), through get_result."""
        return self.side.call("native", id=job_id)

    def outcome_from_the_queue(self, job_id: str) -> State | None:
        return QUEUE_OUTCOMES.get(self.queue_says(job_id)["status"])


# -- fixtures ------------------------------------------------------------------------------


def _create_postgres_database(server: PostgresServer, name: str) -> str:
    server.ensure_running()
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        database = sql.Identifier(name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(database))
    return urlunsplit(urlsplit(server.dsn)._replace(path=f"/{name}"))


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
)
def tasks_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated task database for the module: an SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        database = str(tmp_path_factory.mktemp("django-tasks") / "tasks.sqlite3")
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        database = _create_postgres_database(server, "immortus_django_tasks")
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--verbosity", "0"],
        cwd=ROOT,
        env=project_env(database, DEAD_STORE),
        check=True,
        timeout=TIMEOUT,
    )
    return database


@pytest.fixture(scope="module")
def django_side(
    tasks_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DjangoSide]:
    side = DjangoSide(tasks_database, tmp_path_factory.mktemp("django-side") / "side.log")
    try:
        yield side
    finally:
        side.close()


@pytest.fixture
def harness(
    django_side: DjangoSide, tasks_database: str, tmp_path: Path
) -> Iterator[DjangoTasksHarness]:
    with tracking_into_sqlite(tmp_path) as store:
        django_side.call("reset", store=store)
        made = DjangoTasksHarness(django_side, tasks_database, store, tmp_path)
        for job in ("steps", "fails", "flaky", "slow", "stops_itself"):
            job_class = f"{TASKS}.{job}"
            registry.register(TrackedJob(job_class, RelayStrategy(django_side, job_class)))
        try:
            yield made
        finally:
            made.stop_worker()


# -- the shared scenarios ------------------------------------------------------------------


class TestDjangoTasksScenarios(QueueScenarios, CancelScenarios):
    """The shared scenarios; Django tasks cannot retry nor stop a running task (overridden)."""

    def test_a_retry_says_when_it_runs(self, harness: QueueHarness) -> None:
        """Django never retries: a failure is final, and says no next attempt."""
        job_class = harness.job_class("fails")
        with harness.worker():
            job_id = harness.enqueue("fails")
            status = wait_for_status(job_id, job_class, completed)
        assert (status.state, status.retry_at) == (State.FAILED, None)

    def test_a_job_retried_once_then_succeeds(self, running_worker: QueueHarness) -> None:
        """Django never retries a task: the failure is final; enqueueing again is a new job."""
        job_class = running_worker.job_class("flaky")
        first = running_worker.enqueue("flaky")
        failed = wait_for_status(first, job_class, completed)
        assert (failed.state, failed.attempts) == (State.FAILED, 1)
        assert failed.error is not None
        assert (failed.error.type, failed.error.message) == ("RuntimeError", "first attempt fails")
        again = running_worker.enqueue("flaky")
        assert again != first
        done = wait_for_status(again, job_class, completed)
        assert (done.state, done.attempts, done.error) == (State.FINISHED, 1, None)
        assert immortus.status(first, job_class).state is State.FAILED

    def test_a_running_job_can_be_cancelled(self, harness: QueueHarness) -> None:
        """No cancel API: only stopping its worker mid-task stops a task, and reads cancelled."""
        assert isinstance(harness, DjangoTasksHarness)
        job_class = harness.job_class("slow")
        with harness.worker():
            job_id = harness.enqueue("slow")
            wait_for_status(
                job_id, job_class, lambda s: s.state is State.STARTED and s.progress is not None
            )
            assert harness.cancel_queued(job_id) is False  # taken by a worker: cannot cancel
            harness.interrupt_worker()
        status = wait_for_status(job_id, job_class, completed)
        assert (status.state, status.success) == (State.CANCELLED, False)
        assert status.progress is not None
        queue = harness.queue_says(job_id)  # Django itself records a failure by SystemExit
        assert (queue["status"], queue["errors"]) == ("FAILED", ["builtins.SystemExit"])


# -- what is particular to Django tasks ----------------------------------------------------


def test_importing_immortus_imports_no_django() -> None:
    loaded = modules_loaded_by("import immortus, immortus.queues", ["django", "django_tasks_db"])
    assert loaded == []


def test_the_app_installs_the_hooks_once_and_strategies_resolve(
    django_side: DjangoSide, harness: DjangoTasksHarness
) -> None:
    answer = django_side.call("setup")  # calls install() once more
    assert answer == {
        "inferred": "DjangoTaskStrategy",
        "inline": "StoreStrategy",
        "global": "DjangoTaskStrategy",
        "module": "immortus.queues.django_tasks.strategy",
        "receivers": 1,
    }


def test_a_view_renders_the_enqueued_task(
    django_side: DjangoSide, harness: DjangoTasksHarness
) -> None:
    answer = django_side.call("render")
    job_class = harness.job_class("steps")
    assert (answer["code"], answer["body"]) == (
        200,
        {"job_id": answer["id"], "job_class": job_class},
    )
    assert immortus.status(answer["id"], job_class).state is State.CREATED


def test_identify_names_the_tracked_task_of_a_result(
    django_side: DjangoSide, harness: DjangoTasksHarness
) -> None:
    answer = django_side.call("identify")
    tracked, untracked = answer["ids"]
    assert answer["tracked"] == [tracked, harness.job_class("steps")]
    assert answer["untracked"] == [untracked, None]
    assert immortus.status(tracked, harness.job_class("steps")).state is State.CREATED


def test_a_task_deleted_before_it_ran_is_cancelled(
    django_side: DjangoSide, harness: DjangoTasksHarness
) -> None:
    """Deleting a READY row (the admin's delete, a queryset's) is the backend's only cancel."""
    job_class = harness.job_class("steps")
    job_id = harness.enqueue("steps")
    assert django_side.call("delete", id=job_id) == {"deleted": 1}
    status = immortus.status(job_id, job_class)
    assert (status.state, status.started_at) == (State.CANCELLED, None)
    assert harness.queue_says(job_id) == {"status": None}


def test_untracked_tasks_are_left_alone(
    django_side: DjangoSide, harness: DjangoTasksHarness
) -> None:
    job_id = django_side.call("enqueue", job="untracked", backend="immediate")["id"]
    queued = django_side.call("enqueue", job="untracked")["id"]
    assert immortus.status(job_id).state is State.UNKNOWN  # the store strategy: no record
    assert immortus.status(queued).state is State.UNKNOWN
    assert harness.queue_says(queued)["status"] == "READY"


def test_a_backend_without_results_is_answered_by_the_store(
    django_side: DjangoSide, harness: DjangoTasksHarness
) -> None:
    """ImmediateBackend and DummyBackend keep no results to read: the store answers alone."""
    ran = django_side.call("enqueue", job="steps", backend="immediate")
    assert ran["queue_status"] == "SUCCESSFUL"
    answer = django_side.call("strategy_status", id=ran["id"], backend="immediate")
    status = decode(answer["status"])
    assert answer["native"] is False
    assert (status.state, status.attempts) == (State.FINISHED, 1)
    assert status.progress is not None
    assert (status.progress.current, status.progress.total) == (3, 3)

    failed = django_side.call("enqueue", job="fails", backend="immediate")
    assert failed["queue_status"] == "FAILED"
    status = decode(
        django_side.call("strategy_status", id=failed["id"], backend="immediate")["status"]
    )
    assert status.state is State.FAILED
    assert status.error is not None
    assert (status.error.type, status.error.message) == ("ValueError", "boom at 60%")

    waiting = django_side.call("enqueue", job="steps", backend="dummy")
    answer = django_side.call("strategy_status", id=waiting["id"], backend="dummy")
    assert (decode(answer["status"]).state, answer["native"]) == (State.CREATED, False)


def test_hooks_that_fail_break_neither_the_enqueue_nor_the_task(
    django_side: DjangoSide, harness: DjangoTasksHarness
) -> None:
    """Fault injection: a store that raises at every write."""
    django_side.call("reset", store="failing")
    queued = django_side.call("enqueue", job="steps")
    assert harness.queue_says(queued["id"])["status"] == "READY"
    assert django_side.call("enqueue", job="steps", backend="immediate")["queue_status"] == (
        "SUCCESSFUL"
    )
    failed = django_side.call("enqueue", job="fails", backend="immediate")
    assert failed["queue_status"] == "FAILED"  # its own error, not the store's
    logged = django_side.call("logs")["logs"]
    for hook in ("job_enqueued", "job_started", "job_progress", "job_finished", "job_failed"):
        assert any(hook in message for message in logged), (hook, logged)


def test_the_queue_answers_while_the_store_is_down(
    django_side: DjangoSide, harness: DjangoTasksHarness
) -> None:
    """With immortus's store unreachable, the backend's results still answer, error included."""
    done = harness.enqueue("steps")
    failed = harness.enqueue("fails")
    with harness.worker():
        wait_for(lambda: harness.outcome_from_the_queue(failed) is not None, what="the jobs")
        wait_for(lambda: harness.outcome_from_the_queue(done) is not None, what="the jobs")
    django_side.call("configure", store=DEAD_STORE)
    assert immortus.status(done, harness.job_class("steps")).state is State.FINISHED
    status = immortus.status(failed, harness.job_class("fails"))
    assert status.state is State.FAILED
    assert status.error is not None
    assert (status.error.type, status.error.message) == ("ValueError", "boom at 60%")
    answer = django_side.call("status", id=str(uuid.uuid4()), job_class=harness.job_class("steps"))
    assert answer == {"raised": "StoreUnavailable"}  # neither side knows it: the page gets 503


def test_a_killed_workers_task_reads_lost_once_its_heartbeat_stops(
    harness: DjangoTasksHarness,
) -> None:
    """Django keeps the row RUNNING for ever; immortus's heartbeat (0.2 s, 1.5 s) ends it."""
    job_class = harness.job_class("slow")
    with harness.worker_with(**HEARTBEAT):
        job_id = harness.enqueue("slow")
        wait_for_status(job_id, job_class, lambda s: s.progress is not None)
        harness.kill_worker()
    status = wait_for_status(job_id, job_class, lambda s: s.completed)
    assert harness.queue_says(job_id)["status"] == "RUNNING"
    assert (status.state, status.attempts) == (State.LOST, 1)
    assert status.progress is not None  # how far it got is kept


def test_without_a_heartbeat_a_killed_workers_task_stays_started(
    harness: DjangoTasksHarness,
) -> None:
    """The fault is real: with heartbeats off, nothing can tell the worker died."""
    job_class = harness.job_class("slow")
    with harness.worker_with(**{HEARTBEAT_INTERVAL_ENV: "off"}):
        job_id = harness.enqueue("slow")
        wait_for_status(job_id, job_class, lambda s: s.progress is not None)
        harness.kill_worker()
    assert harness.queue_says(job_id)["status"] == "RUNNING"
    assert immortus.status(job_id, job_class).state is State.STARTED
