"""A job running in another process stops when ``immortus.cancel`` is called here.

The request travels through the store (SQLite, Redis): the worker's job sees it at its next
``progress()`` after its next poll of the store, and ends ``cancelled``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import immortus
from immortus import CancelOutcome, State, cancel_requests

#: Generous bound while waiting for an outcome; never a timing assertion.
WAIT = 60.0

#: The worker: one tracked job reporting progress until it is stopped.
_WORKER = """
import sys, time
import immortus

immortus.configure(store=sys.argv[1], progress_interval=0)
try:
    with immortus.running(sys.argv[2]):
        for step in range(100_000):
            immortus.progress(step)
            time.sleep(0.02)
except immortus.JobCancelled:
    print("stopped", flush=True)
"""


def _wait_for(job_id: str, state: State) -> immortus.JobStatus:
    deadline = time.monotonic() + WAIT
    while True:
        status = immortus.status(job_id)
        if status.state is state or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def _cancel_a_job_in_another_process(url: str) -> None:
    immortus.configure(store=url)
    worker = subprocess.Popen(
        [sys.executable, "-c", _WORKER, url, "far-away"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        running = _wait_for("far-away", State.STARTED)
        assert running.state is State.STARTED
        answer = immortus.cancel("far-away")
        assert answer.outcome in (CancelOutcome.CANCELLING, CancelOutcome.CANCELLED)
        cancel_requests.forget("far-away")  # only the store carries it to the worker
        out, _ = worker.communicate(timeout=WAIT)
        assert out.strip() == "stopped"
        status = _wait_for("far-away", State.CANCELLED)
        assert status.state is State.CANCELLED
        history = immortus.status("far-away", history=True).history
        assert [entry.event.value for entry in history] == [
            "started",
            "cancel_requested",
            "cancelled",
        ]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_over_sqlite(tmp_path: Path) -> None:
    _cancel_a_job_in_another_process(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")


@pytest.mark.redis
def test_over_redis(redis_url: str) -> None:
    _cancel_a_job_in_another_process(redis_url)
