"""A job whose worker was killed reads ``lost`` alike on every surface, in every style.

Real workers killed mid-job (SIGKILL, as the OOM killer does), as the reliability tests do:

- RQ, the **work horse** killed: RQ's worker notices and fails the job, immortus's hook
  records ``lost``; both RQ's hash and immortus's store know it;
- RQ, the **whole worker** killed: nothing but the heartbeat notices; RQ still says started,
  the store's lease lapses and reads ``lost``;
- Celery, a **prefork pool child** killed: the worker's main process fails the task with
  ``WorkerLostError``, and immortus's hooks record ``lost``;
- Huey, the **consumer** killed: Huey keeps no state about a running task, the store's lease
  lapses and reads ``lost``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

import immortus
from immortus import State
from immortus.config import HEARTBEAT_INTERVAL_ENV, HEARTBEAT_TIMEOUT_ENV
from immortus.jobs import job_class_of
from immortus.queues.celery import install
from immortus.status import JobStatus
from tests.queues import celery_app, rq_app
from tests.queues.scenarios import QueueHarness, completed, wait_for, wait_for_status
from tests.queues.stores import tracking_into_sqlite
from tests.queues.test_celery import CELERY_DB, CeleryHarness
from tests.queues.test_huey import HueyHarness, huey_harness
from tests.queues.test_rq import RQ_DB, RQHarness
from tests.reliability.test_lost_huey import killed_consumer
from tests.services.base import pid_alive
from tests.surfaces import one_answer_in_every_style

#: Celery 5.7's Redis result backend calls redis-py's deprecated ``setex`` (as test_celery says).
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")
#: A beat every 0.2 s, ``lost`` after 1.5 s without one.
HEARTBEAT = {HEARTBEAT_INTERVAL_ENV: "0.2", HEARTBEAT_TIMEOUT_ENV: "1.5"}


def running(status: JobStatus) -> bool:
    """Whether the job has started and reported progress: a worker process runs it now."""
    return status.state is State.STARTED and status.progress is not None


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), what=f"process {pid} to die")


def assert_lost_everywhere(harness: QueueHarness, job_id: str, job_class: str) -> None:
    """Once the queue and immortus's store both know the job ended, every surface says lost."""
    wait_for_status(job_id, job_class, completed)
    store = immortus.get_store()
    assert store is not None

    def recorded_ended() -> bool:  # the worker's hook records it a moment after the queue
        record = store.get(job_id)
        return record is not None and record.completed

    wait_for(recorded_ended, what="immortus's store to record the ending")
    lost = one_answer_in_every_style(job_id, job_class, harness.surfaces)
    assert (lost["status"], lost["success"], lost["attempts"]) == ("lost", False, 1)
    assert lost["progress"] is not None


# -- RQ ----------------------------------------------------------------------------------------


@pytest.fixture
def rq_harness(redis_url: str, tmp_path: Path) -> Iterator[RQHarness]:
    url = redis_url.rpartition("/")[0] + f"/{RQ_DB}"
    with Redis.from_url(url) as client:
        client.flushdb()
    with tracking_into_sqlite(tmp_path) as store_url:
        harness = RQHarness(url, store_url, tmp_path)
        try:
            yield harness
        finally:
            harness.close()


def test_rq_a_killed_work_horse(rq_harness: RQHarness, tmp_path: Path) -> None:
    job_class = job_class_of(rq_app.blocks)
    job_id = rq_harness.queue.enqueue(rq_app.blocks, str(tmp_path / "never")).id
    with rq_harness.worker():
        wait_for_status(job_id, job_class, running)
        kill(rq_harness.horse_of(rq_harness.worker_pids[-1]))
        assert_lost_everywhere(rq_harness, job_id, job_class)


def test_rq_a_killed_worker_once_its_heartbeat_stops(rq_harness: RQHarness, tmp_path: Path) -> None:
    job_class = job_class_of(rq_app.blocks)
    job_id = rq_harness.queue.enqueue(rq_app.blocks, str(tmp_path / "never")).id
    with rq_harness.worker(environment=HEARTBEAT):
        wait_for_status(job_id, job_class, running)
        worker = rq_harness.worker_pids[-1]
        horse = rq_harness.horse_of(worker)
        kill(worker)  # first, so that it cannot notice its horse's death
        kill(horse)
    assert_lost_everywhere(rq_harness, job_id, job_class)


# -- Celery ------------------------------------------------------------------------------------


@pytest.fixture
def celery_harness(redis_url: str, tmp_path: Path) -> Iterator[CeleryHarness]:
    url = redis_url.rpartition("/")[0] + f"/{CELERY_DB}"
    with Redis.from_url(url) as client:
        client.flushdb()
    with tracking_into_sqlite(tmp_path) as store_url:
        celery_app.configure(url)
        install(celery_app.app)
        yield CeleryHarness(url, store_url, tmp_path)


def pid_running(job_id: str) -> int:
    """Return the pid of the process running the task, as Celery's STARTED result says."""
    found: list[int] = []

    def started() -> bool:
        result = celery_app.app.AsyncResult(job_id)
        info = result.info if result.state == "STARTED" else None
        found[:] = [info["pid"]] if isinstance(info, dict) and "pid" in info else []
        return bool(found)

    wait_for(started, what="Celery's STARTED result")
    return found[0]


def test_celery_a_killed_pool_child(celery_harness: CeleryHarness, tmp_path: Path) -> None:
    celery_harness.pool = "prefork"
    job_class = celery_app.blocks.name
    job_id = celery_app.blocks.delay(str(tmp_path / "never")).id
    with celery_harness.worker():
        wait_for_status(job_id, job_class, running)
        kill(pid_running(job_id))
        assert_lost_everywhere(celery_harness, job_id, job_class)


# -- Huey --------------------------------------------------------------------------------------


@pytest.fixture
def huey(tmp_path: Path) -> Iterator[HueyHarness]:
    with huey_harness("sqlite", str(tmp_path / "huey.sqlite3"), tmp_path) as made:
        yield made


def test_huey_a_killed_consumer_once_its_heartbeat_stops(huey: HueyHarness) -> None:
    job_class = huey.job_class("slow")
    job_id = huey.enqueue("slow")
    with killed_consumer(huey, HEARTBEAT) as consumer:
        wait_for_status(job_id, job_class, running)
        consumer.kill()
    assert_lost_everywhere(huey, job_id, job_class)
