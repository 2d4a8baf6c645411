"""Celery: a task whose worker is killed (SIGKILL) ends ``lost``, or runs again, never hangs.

A real ``celery worker`` subprocess on the session's redis-server (broker and result backend),
killed mid-task; the tasks are :func:`tests.queues.celery_app.blocks` and its ``acks_late``
twin, which run until a file appears. Three ways the worker dies, three ways immortus learns it:

- a **prefork pool child** dies: the worker's main process fails the task with
  ``WorkerLostError``, and immortus's hooks report ``lost``;
- the same, for a task with ``acks_late`` and ``reject_on_worker_lost`` (Celery requeues its
  message) or ``retry_on_worker_lost`` (Celery sends a retry): it runs again as attempt 2;
- the **whole worker** dies: nothing notices but immortus's heartbeat, whose lease runs out
  (:data:`HEARTBEAT`: 0.2 s beats, lost after 1.5 s without one).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import immortus
from immortus import State
from immortus.config import HEARTBEAT_INTERVAL_ENV, HEARTBEAT_TIMEOUT_ENV
from immortus.queues.celery import CeleryStrategy, install
from immortus.status import JobStatus
from tests.queues import celery_app
from tests.queues.scenarios import wait_for, wait_for_status
from tests.queues.stores import tracking_into_sqlite
from tests.queues.test_celery import CELERY_DB, CeleryHarness
from tests.services.base import pid_alive

#: Celery 5.7's Redis result backend calls redis-py's deprecated ``setex`` (as test_celery says).
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")

#: The worker's heartbeat in these tests: a beat every 0.2 s, ``lost`` after 1.5 s without one.
HEARTBEAT = {HEARTBEAT_INTERVAL_ENV: "0.2", HEARTBEAT_TIMEOUT_ENV: "1.5"}
#: A worker without heartbeats: only Celery's own signals can end its tasks.
NO_HEARTBEAT = {HEARTBEAT_INTERVAL_ENV: "off"}
WORKER_LOST = "billiard.exceptions.WorkerLostError"


@pytest.fixture
def harness(redis_url: str, tmp_path: Path) -> Iterator[CeleryHarness]:
    url = redis_url.rpartition("/")[0] + f"/{CELERY_DB}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    with tracking_into_sqlite(tmp_path) as store_url:
        celery_app.configure(url)
        install(celery_app.app)
        yield CeleryHarness(url, store_url, tmp_path)


def running(status: JobStatus) -> bool:
    """Whether the task has started and reported progress: a worker process runs it now."""
    return status.state is State.STARTED and status.progress is not None


def process_running(job_id: str) -> int:
    """Return the pid of the process running the task, as Celery's STARTED result says."""
    found: list[int] = []

    def started() -> bool:
        result = celery_app.app.AsyncResult(job_id)
        info = result.info if result.state == "STARTED" else None
        found[:] = [info["pid"]] if isinstance(info, dict) and "pid" in info else []
        return bool(found)

    wait_for(started, what="Celery's STARTED result")
    return found[0]


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), what=f"process {pid} to die")


def recorded(job_id: str) -> JobStatus:
    """Return the store's own record of the job (what the hooks wrote, nothing inferred)."""
    store = immortus.get_store()
    assert store is not None
    status = store.get(job_id)
    assert status is not None
    return status


# -- a prefork pool child dies; the worker's main process notices ------------------------------


def test_a_killed_pool_child_is_lost(harness: CeleryHarness, tmp_path: Path) -> None:
    harness.pool = "prefork"
    job_class = celery_app.blocks.name
    job_id = celery_app.blocks.delay(str(tmp_path / "never")).id
    with harness.worker():
        wait_for_status(job_id, job_class, running)
        kill(process_running(job_id))
        status = wait_for_status(job_id, job_class, lambda s: s.completed)
    assert (status.state, status.success, status.attempts) == (State.LOST, False, 1)
    assert status.error is not None
    assert status.error.type == WORKER_LOST
    assert "signal 9 (SIGKILL)" in status.error.message
    assert status.progress is not None  # the attempt's details stay
    assert recorded(job_id).state is State.LOST  # reported by the worker's main process...
    assert celery_app.app.AsyncResult(job_id).state == "FAILURE"  # ...a FAILURE to Celery...
    native = CeleryStrategy(celery_app.app).native_status(job_id)
    assert native is not None
    assert native.state is State.LOST  # ...which the result backend alone reads lost too
    assert native.error is not None
    assert native.error.type == WORKER_LOST


@pytest.mark.parametrize(
    "task",
    [celery_app.blocks_redelivered, celery_app.blocks_retried],
    ids=["reject_on_worker_lost", "retry_on_worker_lost"],
)
def test_a_task_celery_runs_again_is_attempt_2(
    harness: CeleryHarness, tmp_path: Path, task: Any
) -> None:
    """Celery requeues the message (``acks_late``, ``reject_on_worker_lost``) or sends a retry."""
    harness.pool = "prefork"
    job_class = task.name
    release = tmp_path / "release"
    job_id = task.delay(str(release)).id
    with harness.worker():
        wait_for_status(job_id, job_class, running)
        kill(process_running(job_id))
        again = wait_for_status(job_id, job_class, lambda s: running(s) and s.attempts == 2)
        release.touch()
        status = wait_for_status(job_id, job_class, lambda s: s.completed)
    assert again.error is None  # a new attempt starts clean
    assert (status.state, status.attempts, status.error) == (State.FINISHED, 2, None)
    assert celery_app.app.AsyncResult(job_id).state == "SUCCESS"


# -- the whole worker dies: the heartbeat ----------------------------------------------------


def test_a_killed_worker_is_lost_once_its_heartbeat_stops(
    harness: CeleryHarness, tmp_path: Path
) -> None:
    harness.pool = "solo"  # the task runs in the worker's main process
    job_class = celery_app.blocks.name
    unwatched = celery_app.blocks.delay(str(tmp_path / "never")).id
    with harness.worker(variables=NO_HEARTBEAT, clean_exit=False):
        wait_for_status(unwatched, job_class, running)
        kill(process_running(unwatched))
    watched = celery_app.blocks.delay(str(tmp_path / "never")).id
    with harness.worker(variables=HEARTBEAT, clean_exit=False):
        wait_for_status(watched, job_class, running)
        kill(process_running(watched))
    status = wait_for_status(watched, job_class, lambda s: s.completed)
    assert (status.state, status.attempts) == (State.LOST, 1)
    assert status.progress is not None
    # Killed earlier, but without a heartbeat nothing can tell: it still reads started, as
    # Celery says too, for ever.
    assert immortus.status(unwatched, job_class).state is State.STARTED
    assert celery_app.app.AsyncResult(unwatched).state == "STARTED"
    assert celery_app.app.AsyncResult(watched).state == "STARTED"
