"""Huey: a task whose consumer is killed (SIGKILL, as the OOM killer does) ends ``lost``.

Huey keeps no state about a running task, so nothing but immortus's heartbeat can tell that its
consumer died: a real ``huey_consumer`` subprocess runs :func:`tests.queues.huey_app.slow`
(progress every 50 ms, for up to 30 s), beats every 0.2 s and leases for 1.5 s
(:data:`HEARTBEAT`), and is killed mid-task. Progress events carry no lease, so a task that
still reads ``started`` long after its first lease ran out does so by the heartbeat alone.
The store immortus tracks into is an SQLite file, then Redis. A consumer without heartbeats,
killed the same way, leaves its task ``started``: the fault is real, the heartbeat is what
detects it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import immortus
from immortus import State
from immortus.config import HEARTBEAT_INTERVAL_ENV, HEARTBEAT_TIMEOUT_ENV
from immortus.status import JobStatus
from tests.queues.scenarios import wait_for, wait_for_status
from tests.queues.test_huey import APP, HueyHarness, huey_harness
from tests.queues.workers import WorkerProcess, worker_environment

#: Seconds without a beat after which the task reads lost.
TIMEOUT = 1.5
#: The consumer's heartbeat: a beat every 0.2 s, ``lost`` after :data:`TIMEOUT` without one.
HEARTBEAT = {HEARTBEAT_INTERVAL_ENV: "0.2", HEARTBEAT_TIMEOUT_ENV: str(TIMEOUT)}
#: A consumer without heartbeats.
NO_HEARTBEAT = {HEARTBEAT_INTERVAL_ENV: "off"}


@pytest.fixture(params=["sqlite", "redis"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HueyHarness]:
    """SqliteHuey, with immortus tracking into an SQLite file or into Redis."""
    with huey_harness("sqlite", str(tmp_path / "huey.sqlite3"), tmp_path) as made:
        if request.param == "redis":
            made.store_url = request.getfixturevalue("redis_url")
            immortus.configure(store=made.store_url)
        yield made


@contextmanager
def killed_consumer(harness: HueyHarness, heartbeat: dict[str, str]) -> Iterator[WorkerProcess]:
    """Run ``huey_consumer`` on the app's Huey; the block kills it (else it is killed after)."""
    harness.consumers += 1
    command = [
        sys.executable, "-m", "huey.bin.huey_consumer", f"{APP}.huey",
        "--workers", "2", "--worker-type", "thread", "--delay", "0.02", "--max-delay", "0.1",
        "--no-periodic", "--disable-health-check",
    ]  # fmt: skip
    consumer = WorkerProcess(
        "the Huey consumer",
        command,
        env=worker_environment(harness.store_url, **harness.environment, **heartbeat),
        log=harness.folder / f"consumer-{harness.consumers}.log",
    )
    try:
        yield consumer
    finally:
        if not consumer.exited():
            consumer.kill()


def running(status: JobStatus) -> bool:
    """Whether the task runs: started, and its first progress written."""
    return status.state is State.STARTED and status.progress is not None


def wait_seconds(seconds: float) -> None:
    """Let ``seconds`` pass (polled, like every wait here)."""
    until = time.monotonic() + seconds
    wait_for(lambda: time.monotonic() >= until, what=f"{seconds:g} s to pass")


def test_a_killed_consumers_task_reads_lost_once_its_heartbeat_stops(
    harness: HueyHarness,
) -> None:
    job_class = harness.job_class("slow")
    job_id = harness.enqueue("slow")
    with killed_consumer(harness, HEARTBEAT) as consumer:
        wait_for_status(job_id, job_class, running)
        wait_seconds(2 * TIMEOUT)  # its first lease ran out long ago: beats keep it alive
        alive = immortus.status(job_id, job_class)
        assert (alive.state, alive.error) == (State.STARTED, None)
        consumer.kill()
    lost = wait_for_status(job_id, job_class, lambda status: status.completed)
    assert (lost.state, lost.success, lost.attempts) == (State.LOST, False, 1)
    assert lost.error is not None
    assert lost.error.type == "WorkerLost"
    assert lost.finished_at is not None
    assert lost.progress is not None  # how far it got is kept
    store = immortus.get_store()
    assert store is not None
    assert store.reap_lost() == 1  # what reads presumed, written down
    assert store.reap_lost() == 0
    assert immortus.status(job_id, job_class) == lost


def test_without_a_heartbeat_a_killed_consumers_task_stays_started(
    harness: HueyHarness,
) -> None:
    job_class = harness.job_class("slow")
    job_id = harness.enqueue("slow")
    with killed_consumer(harness, NO_HEARTBEAT) as consumer:
        wait_for_status(job_id, job_class, running)
        consumer.kill()
    wait_seconds(2 * TIMEOUT)  # longer than the heartbeat case needed to read lost
    status = immortus.status(job_id, job_class)
    assert (status.state, status.completed) == (State.STARTED, False)  # forever, sadly
    store = immortus.get_store()
    assert store is not None
    assert store.reap_lost() == 0
