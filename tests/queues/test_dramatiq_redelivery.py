"""Dramatiq: a message whose worker is killed (SIGKILL) runs again as the next attempt.

A real ``dramatiq`` worker runs :func:`tests.queues.dramatiq_redelivery_app.blocks` and its
worker process is killed mid-job; a second worker takes the message once the broker has
requeued it (its dead worker's heartbeat is 1 s old). Before the redelivery, immortus's record
still reads ``started`` (no heartbeat of immortus's) or already ``lost`` (a heartbeat of 0.2 s,
lost after 1.5 s without a beat): either way the second delivery is attempt 2.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import immortus
from immortus import State
from immortus.config import HEARTBEAT_INTERVAL_ENV, HEARTBEAT_TIMEOUT_ENV
from immortus.status import JobStatus
from tests.queues.scenarios import wait_for, wait_for_status
from tests.queues.stores import tracking_into_sqlite
from tests.queues.workers import WorkerProcess, running_worker, worker_environment
from tests.services.base import pid_alive

APP = "tests.queues.dramatiq_redelivery_app"
#: immortus's heartbeat in the worker: lost after 1.5 s without a beat; or none at all.
HEARTBEATS = {
    "lost": {HEARTBEAT_INTERVAL_ENV: "0.2", HEARTBEAT_TIMEOUT_ENV: "1.5"},
    "started": {HEARTBEAT_INTERVAL_ENV: "off"},
}


@pytest.fixture
def app(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("IMMORTUS_TEST_DRAMATIQ_URL", redis_url)
    return importlib.import_module(APP)


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[str]:
    with tracking_into_sqlite(tmp_path) as url:
        yield url


def worker(app: ModuleType, store_url: str, log: Path, heartbeat: dict[str, str]) -> WorkerProcess:
    """Start ``dramatiq`` with one worker process and one thread."""
    env = worker_environment(
        store_url,
        IMMORTUS_TEST_DRAMATIQ_URL=os.environ["IMMORTUS_TEST_DRAMATIQ_URL"],
        dramatiq_worker_timeout="100",  # ms between idle fetches: each one runs maintenance
        **heartbeat,
    )
    command = [sys.executable, "-m", "dramatiq", app.__name__, "--processes", "1", "--threads", "1"]
    return WorkerProcess("the dramatiq worker", command, env=env, log=log)


def running(status: JobStatus) -> bool:
    return status.state is State.STARTED and status.progress is not None and "pid" in status.meta


def ended(status: JobStatus) -> bool:
    """Whether the job ended for good: ``lost`` is a presumption a redelivery overrides."""
    return status.completed and status.state is not State.LOST


@pytest.mark.parametrize("recorded", ["started", "lost"])
def test_a_message_redelivered_after_its_worker_died_is_the_next_attempt(
    app: ModuleType, store_url: str, tmp_path: Path, recorded: str
) -> None:
    release = tmp_path / "release"
    message = app.blocks.send(str(release))
    job_id, job_class = message.message_id, "tests.queues.dramatiq_redelivery_app.blocks"
    first = worker(app, store_url, tmp_path / "worker-1.log", HEARTBEATS[recorded])
    try:
        status = wait_for_status(job_id, job_class, running)
        child = status.meta["pid"]
        os.kill(child, signal.SIGKILL)  # the process running the actor, mid-job
        wait_for(lambda: not pid_alive(child), what="the worker process to die")
    finally:
        first.kill()  # and its parent, before it can do anything about it
    assert immortus.status(job_id, job_class).attempts == 1
    if recorded == "lost":
        wait_for_status(job_id, job_class, lambda s: s.state is State.LOST)
    release.touch()  # the redelivery returns at once
    with running_worker(worker(app, store_url, tmp_path / "worker-2.log", HEARTBEATS[recorded])):
        final = wait_for_status(job_id, job_class, ended)
    assert (final.state, final.attempts, final.error) == (State.FINISHED, 2, None)
    assert final.meta["pid"] != child


def test_a_retry_after_a_redelivery_numbers_on(
    app: ModuleType, store_url: str, tmp_path: Path
) -> None:
    """Dramatiq's retries count from the redelivered attempt: 1 killed, 2 failed, 3 finished."""
    release = tmp_path / "release"
    message = app.blocks_then_fails_once.send(str(release))
    job_id = message.message_id
    job_class = "tests.queues.dramatiq_redelivery_app.blocks_then_fails_once"
    first = worker(app, store_url, tmp_path / "worker-1.log", HEARTBEATS["started"])
    try:
        child = wait_for_status(job_id, job_class, running).meta["pid"]
        os.kill(child, signal.SIGKILL)
        wait_for(lambda: not pid_alive(child), what="the worker process to die")
    finally:
        first.kill()
    release.touch()
    with running_worker(worker(app, store_url, tmp_path / "worker-2.log", HEARTBEATS["started"])):
        final = wait_for_status(job_id, job_class, ended)
    assert (final.state, final.attempts) == (State.FINISHED, 3)
