"""The seeded tasks of ``bench/peer/``: run by a real Celery worker, checked.

:func:`seed` enqueues the tasks of ``bench/peer/project.py`` from this process, with immortus's
hooks installed as a Django view would have them, in the order of :data:`KINDS` (half in
progress, a quarter finished, a quarter failed); a ``celery worker`` subprocess runs them all
and is stopped. The result backend and immortus's store are then checked to hold what each
task left, and every task gets the token immortus's enqueue view would have handed out.
The worker runs with its heartbeat on, as users run it (:data:`WORKER_LEASE`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import immortus
from bench.common import BenchError, log
from bench.peer import project as peer_project
from devservices import end_process, tail
from devservices.processes import ROOT, python_path
from immortus.config import HEARTBEAT_TIMEOUT_ENV
from immortus.queues.celery import CeleryStrategy, install, uninstall
from immortus.status import JobStatus, State
from immortus.web.core import Verifier
from immortus.web.django.settings import derive_secret_key

__all__ = ["EXPECTED", "KINDS", "SeededJob", "environment", "seed"]

#: The kinds of seeded task (the names of ``peer_project``'s tasks), enqueued in this order,
#: over and over.
KINDS: Final = ("in_progress", "finishes", "in_progress", "fails")
#: What each kind of task leaves: immortus's state, celery-progress's state.
EXPECTED: Final[Mapping[str, tuple[State, str]]] = {
    "in_progress": (State.STARTED, "PROGRESS"),
    "finishes": (State.FINISHED, "SUCCESS"),
    "fails": (State.FAILED, "FAILURE"),
}
#: The worker's heartbeat lease (``IMMORTUS_HEARTBEAT_TIMEOUT``, seconds). An in-progress task
#: leaves its record ``started`` with the lease its worker's heartbeat last gave it, as a running
#: task's record is while its worker lives; this one outlasts the benchmark, so every load reads
#: the tasks in progress as a live worker's, not ``lost``, without holding 500 worker threads.
WORKER_LEASE: Final = "3600"


@dataclass(frozen=True, slots=True)
class SeededJob:
    """One seeded task: its id, what it did, and the path of its status on each route."""

    job_id: str
    kind: str
    number: int
    job_class: str
    token: str

    @property
    def row(self) -> int:
        """The progress the task reported: ``row`` of 100."""
        return self.number % 100

    @property
    def ours(self) -> str:
        """immortus's verify path, with the token the enqueue view would have handed out."""
        return f"/immortus/verify/{self.job_id}/{self.job_class}?token={self.token}"

    @property
    def theirs(self) -> str:
        """celery-progress's progress path."""
        return f"/celery-progress/{self.job_id}/"


def seed(redis_url: str, folder: Path, count: int) -> tuple[list[SeededJob], str]:
    """Run ``count`` tasks with a real worker; return them and immortus's store URL.

    The tasks are enqueued from this process with immortus's hooks installed (and taken off
    again), tracked into an SQLite store in ``folder``; a Celery worker then runs them all and
    is stopped. Leaves immortus's settings at their defaults.

    Raises:
        BenchError: the worker failed, or the result backend or the store does not hold what
            the tasks left.
    """
    store_url = f"sqlite:///{folder / 'peer-jobs.sqlite3'}"
    tasks = {kind: getattr(peer_project, kind) for kind in EXPECTED}
    kinds = [KINDS[number % len(KINDS)] for number in range(count)]
    peer_project.configure(redis_url)
    immortus.configure(store=store_url)
    install(peer_project.app)
    try:
        ids: list[str] = [tasks[kind].delay(number).id for number, kind in enumerate(kinds)]
        _run_worker(redis_url, store_url, folder, ids)
        _check(ids, kinds)
    finally:
        uninstall(peer_project.app)
        _close_app()
        immortus.config.reset()  # closes the store immortus opened
    tokens = Verifier(secret_key=derive_secret_key(peer_project.SECRET_KEY))
    jobs = []
    for number, (job_id, kind) in enumerate(zip(ids, kinds, strict=True)):
        job_class: str = tasks[kind].name
        token = tokens.token_for(job_id, job_class)
        assert token is not None
        jobs.append(SeededJob(job_id, kind, number, job_class, token))
    return jobs, store_url


def environment(redis_url: str, store_url: str) -> dict[str, str]:
    """Return the environment of the project's processes (worker, server)."""
    path = python_path()
    return {
        **os.environ,
        "PYTHONPATH": path,
        "DJANGO_SETTINGS_MODULE": "bench.peer.project",
        peer_project.REDIS_ENV: redis_url,
        "IMMORTUS_STORE": store_url,
    }


def _close_app() -> None:
    """Close this process's connections to the broker and the result backend."""
    app = peer_project.app
    app.close()  # the broker's connection pool
    client = getattr(app.backend, "client", None)
    if client is not None:
        client.close()
        client.connection_pool.disconnect()


def _run_worker(redis_url: str, store_url: str, folder: Path, ids: Sequence[str]) -> None:
    """Start a Celery worker, wait until every task of ``ids`` ran, then stop it.

    Raises:
        BenchError: the worker exited early or with an error, or was too slow to be waited for.
    """
    log_file = folder / "peer-worker.log"
    command = [
        sys.executable, "-m", "celery", "-A", "bench.peer.project", "worker",
        "--pool", "threads", "--concurrency", "4", "--queues", peer_project.QUEUE,
        "--without-heartbeat", "--without-mingle", "--without-gossip", "--loglevel", "error",
    ]  # fmt: skip
    log(f"seeding: a Celery worker runs {len(ids)} tasks")
    deadline = time.monotonic() + 120 + len(ids) / 10  # generous: a loaded machine
    with log_file.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**environment(redis_url, store_url), HEARTBEAT_TIMEOUT_ENV: WORKER_LEASE},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        while not _all_ran(ids):
            if process.poll() is not None:
                raise BenchError(f"the Celery worker exited early:\n{tail(log_file)}")
            if time.monotonic() > deadline:
                raise BenchError(f"the Celery worker did not run every task:\n{tail(log_file)}")
            time.sleep(0.2)
    finally:
        code = end_process(process, 60)  # SIGTERM: Celery's warm shutdown, running tasks end first
    if code != 0:
        raise BenchError(f"the Celery worker exited with {code}:\n{tail(log_file)}")


def _all_ran(ids: Sequence[str]) -> bool:
    """Tell whether the result backend holds a state for every task (one ``MGET``)."""
    return len(CeleryStrategy(peer_project.app).native_status_many(ids)) == len(ids)


def _check(ids: Sequence[str], kinds: Sequence[str]) -> None:
    """Check the result backend and the store hold what each task left (else figures are void).

    Raises:
        BenchError: a task's state, progress or times are not what it left.
    """
    native = CeleryStrategy(peer_project.app).native_status_many(ids)
    store = immortus.get_store()
    assert store is not None
    recorded = store.get_many(ids)
    for number, (job_id, kind) in enumerate(zip(ids, kinds, strict=True)):
        for where, found in (("result backend", native), ("store", recorded)):
            problem = _problem(found.get(job_id), EXPECTED[kind][0], number, where == "store")
            if problem:
                raise BenchError(f"task {number} ({kind}) in the {where}: {problem}")


def _problem(found: JobStatus | None, state: State, number: int, store: bool) -> str:
    if found is None:
        return "missing"
    if found.state is not state:
        return f"{found.state.value}, not {state.value}"
    progress = found.progress
    if state is State.STARTED and (progress is None or progress.current != number % 100):
        return f"progress {progress}, not {number % 100} of 100"
    if store and (found.enqueued_at is None or found.started_at is None):
        return "no enqueued_at or started_at"
    return ""
