"""RQ: a job whose worker is killed (SIGKILL, as the OOM killer does) ends ``lost``, not running.

Real ``rq worker`` subprocesses on the session's redis-server, killed mid-job; the job is
:func:`tests.queues.rq_app.blocks`, which runs until a file appears, so a test knows it runs and
can let it end. Three ways RQ's worker dies, three ways immortus learns it:

- the **work horse** dies while the worker lives: RQ's worker notices at once and fails the job
  ("Work-horse terminated unexpectedly"), or retries it; immortus's hooks report ``lost`` (or
  ``retrying``, then the next attempt);
- the **whole worker** dies (main process and horse): nothing notices but immortus's heartbeat,
  whose lease runs out (:data:`HEARTBEAT`: 0.2 s beats, lost after 1.5 s without one);
- later, **RQ's maintenance** finds the job abandoned in its started registry and fails it with
  ``AbandonedJobError``: ``lost`` too, never ``failed``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq import Retry
from rq.job import Job
from rq.job import JobStatus as RQState
from rq.registry import StartedJobRegistry

import immortus
from immortus import State
from immortus.config import HEARTBEAT_INTERVAL_ENV, HEARTBEAT_TIMEOUT_ENV
from immortus.jobs import job_class_of
from immortus.queues.rq import ABANDONED, HORSE_DIED, RQStrategy
from immortus.status import JobStatus
from tests.queues import rq_app
from tests.queues.scenarios import wait_for, wait_for_status
from tests.queues.stores import tracking_into_sqlite
from tests.queues.test_rq import RQ_DB, RQHarness
from tests.services.base import pid_alive
from tests.support import pristine_immortus

#: The worker's heartbeat in these tests: a beat every 0.2 s, ``lost`` after 1.5 s without one.
HEARTBEAT = {HEARTBEAT_INTERVAL_ENV: "0.2", HEARTBEAT_TIMEOUT_ENV: "1.5"}
#: A worker without heartbeats: only RQ's own signals can end its jobs.
NO_HEARTBEAT = {HEARTBEAT_INTERVAL_ENV: "off"}
JOB_CLASS = job_class_of(rq_app.blocks)


@pytest.fixture(params=["sqlite"])
def store_url(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> Iterator[str]:
    """immortus's store, shared by the test and its workers: an SQLite file, or Redis."""
    if request.param == "sqlite":
        with tracking_into_sqlite(tmp_path) as url:
            yield url
    else:
        with pristine_immortus():
            immortus.configure(store=redis_url)  # database 0; RQ uses database RQ_DB
            yield redis_url


@pytest.fixture
def harness(redis_url: str, store_url: str, tmp_path: Path) -> Iterator[RQHarness]:
    url = redis_url.rpartition("/")[0] + f"/{RQ_DB}"
    with Redis.from_url(url) as client:
        client.flushdb()
    rq_harness = RQHarness(url, store_url, tmp_path)
    try:
        yield rq_harness
    finally:
        rq_harness.close()


def enqueue_blocking(harness: RQHarness, release: Path, *, retry: Retry | None = None) -> str:
    job_id: str = harness.queue.enqueue(rq_app.blocks, str(release), retry=retry).id
    return job_id


def running(status: JobStatus) -> bool:
    """Whether the job has started and reported progress: it runs in a work horse now."""
    return status.state is State.STARTED and status.progress is not None


def kill_worker_and_horse(harness: RQHarness) -> None:
    """SIGKILL the newest worker's main process, then its work horse, as a machine loss would.

    The main process goes first, so that it cannot notice its horse's death.
    """
    worker = harness.worker_pids[-1]
    horse = harness.horse_of(worker)
    os.kill(worker, signal.SIGKILL)
    os.kill(horse, signal.SIGKILL)
    wait_for(lambda: not pid_alive(horse), what="the work horse to die")


def recorded(job_id: str) -> JobStatus:
    """Return the store's own record of the job (what the hooks wrote, nothing inferred)."""
    store = immortus.get_store()
    assert store is not None
    status = store.get(job_id)
    assert status is not None
    return status


def rq_status(harness: RQHarness, job_id: str) -> RQState:
    return Job.fetch(job_id, connection=harness.connection).get_status()


# -- the work horse dies; RQ's worker notices ------------------------------------------------


@pytest.mark.parametrize("store_url", ["sqlite", "redis"], indirect=True)
def test_a_killed_work_horse_is_lost(harness: RQHarness, tmp_path: Path) -> None:
    job_id = enqueue_blocking(harness, tmp_path / "never")
    with harness.worker():
        wait_for_status(job_id, JOB_CLASS, running)
        os.kill(harness.horse_of(harness.worker_pids[-1]), signal.SIGKILL)
        status = wait_for_status(job_id, JOB_CLASS, lambda s: s.completed)
    assert (status.state, status.success, status.attempts) == (State.LOST, False, 1)
    assert status.error is not None
    assert (status.error.type, status.error.message) == (
        HORSE_DIED,
        "the work horse was killed by signal 9 (SIGKILL)",
    )
    assert status.progress is not None  # the attempt's details stay
    assert status.finished_at is not None
    assert "waitpid" not in str(status.to_dict())  # RQ's own text stays on the server
    assert recorded(job_id).state is State.LOST  # reported by the worker's hook...
    native = RQStrategy(harness.connection).native_status(job_id)
    assert native is not None
    assert rq_status(harness, job_id) is RQState.FAILED  # ...which RQ itself calls failed...
    assert native.state is State.LOST  # ...and which the hash alone reads lost too
    assert native.error is not None
    assert native.error.type == HORSE_DIED


def test_a_killed_work_horse_with_a_retry_left_runs_again(
    harness: RQHarness, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    job_id = enqueue_blocking(harness, release, retry=Retry(max=1))
    with harness.worker():
        wait_for_status(job_id, JOB_CLASS, running)
        os.kill(harness.horse_of(harness.worker_pids[-1]), signal.SIGKILL)
        again = wait_for_status(job_id, JOB_CLASS, lambda s: running(s) and s.attempts == 2)
        release.touch()
        status = wait_for_status(job_id, JOB_CLASS, lambda s: s.completed)
    assert again.error is None  # a new attempt starts clean
    assert (status.state, status.attempts, status.error) == (State.FINISHED, 2, None)
    assert rq_status(harness, job_id) is RQState.FINISHED


# -- the whole worker dies: the heartbeat ----------------------------------------------------


def test_a_killed_worker_is_lost_once_its_heartbeat_stops(
    harness: RQHarness, tmp_path: Path
) -> None:
    unwatched = enqueue_blocking(harness, tmp_path / "never")
    with harness.worker(environment=NO_HEARTBEAT):
        wait_for_status(unwatched, JOB_CLASS, running)
        kill_worker_and_horse(harness)
    watched = enqueue_blocking(harness, tmp_path / "never")
    with harness.worker(environment=HEARTBEAT):
        wait_for_status(watched, JOB_CLASS, running)
        kill_worker_and_horse(harness)
    status = wait_for_status(watched, JOB_CLASS, lambda s: s.completed)
    assert (status.state, status.attempts) == (State.LOST, 1)
    assert status.progress is not None
    # Killed earlier, but without a heartbeat nothing can tell: it still reads started, as
    # RQ says too (its own check comes minutes later: the next test).
    assert immortus.status(unwatched, JOB_CLASS).state is State.STARTED
    assert rq_status(harness, unwatched) is RQState.STARTED
    assert rq_status(harness, watched) is RQState.STARTED


# -- RQ's maintenance finds the job abandoned ------------------------------------------------


def expire_started_registry(harness: RQHarness) -> None:
    """Age every entry of the started registry past its TTL, as a minute without the dead
    worker's heartbeats would: RQ's next maintenance then finds their jobs abandoned."""
    key = StartedJobRegistry(queue=harness.queue).key
    entries = [entry for entry in harness.connection.zrange(key, 0, -1) if isinstance(entry, bytes)]
    assert entries, "no job in RQ's started registry"
    harness.connection.zadd(key, dict.fromkeys(entries, 1))


@pytest.mark.parametrize("tracked", [True, False], ids=["tracked", "plain"])
def test_an_abandoned_job_is_lost_when_rq_cleans_it_up(
    harness: RQHarness, tmp_path: Path, tracked: bool
) -> None:
    job_id = enqueue_blocking(harness, tmp_path / "never")
    with harness.worker(environment=NO_HEARTBEAT):
        wait_for_status(job_id, JOB_CLASS, running)
        kill_worker_and_horse(harness)
    expire_started_registry(harness)
    with harness.worker(tracked=tracked):  # a new worker cleans the registries as it starts
        wait_for(lambda: rq_status(harness, job_id) is RQState.FAILED, what="RQ's clean-up")
        status = wait_for_status(job_id, JOB_CLASS, lambda s: s.completed)
    assert (status.state, status.attempts) == (State.LOST, 1)
    assert status.error is not None
    assert status.error.type == ABANDONED
    assert status.error.message == "the worker running the job died: RQ found the job abandoned"
    # A worker with the hooks records it lost; from a plain one, the hash alone says so.
    assert recorded(job_id).state is (State.LOST if tracked else State.STARTED)
