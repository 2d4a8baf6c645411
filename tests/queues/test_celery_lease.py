"""Celery: a running task whose worker heart-beats is answered without reading the result backend.

A real ``celery worker`` (solo pool: the task runs in its main process, whose heartbeat thread
keeps the task's lease) on the session's redis-server; the strategy counts its backend reads.
Once the worker is killed its lease runs out, and the backend is read again: an ending it knows
and the hooks never recorded wins over the presumed ``lost``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from immortus import JobStatus, State
from immortus.queues.celery import CeleryStrategy
from immortus.transitions import utcnow
from tests.queues import celery_app
from tests.queues.scenarios import wait_for, wait_for_status
from tests.queues.test_celery import CeleryHarness
from tests.reliability.test_lost_celery import (
    HEARTBEAT,
    harness,
    kill,
    process_running,
    running,
)

#: The Celery worker and store of a test, shared with the lost-worker tests.
__all__ = ["harness"]

#: Celery 5.7's Redis result backend calls redis-py's deprecated ``setex`` (as test_celery says).
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")


class CountingCelery(CeleryStrategy):
    """Celery's strategy, keeping the ids of every read of the result backend."""

    def __init__(self) -> None:
        super().__init__(celery_app.app)
        self.asked: list[list[str]] = []

    def native_status_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        self.asked.append(list(job_ids))
        return super().native_status_many(job_ids)


def test_a_heart_beating_task_is_answered_without_the_backend_until_its_worker_dies(
    harness: CeleryHarness, tmp_path: Path
) -> None:
    harness.pool = "solo"
    job_class = celery_app.blocks.name
    job_id = celery_app.blocks.delay(str(tmp_path / "never")).id
    strategy = CountingCelery()
    with harness.worker(variables=HEARTBEAT, clean_exit=False):
        wait_for_status(job_id, job_class, running)
        answers = [strategy.status(job_id) for _ in range(3)]
        assert all(answer.state is State.STARTED for answer in answers)
        assert answers[-1].alive_until is not None
        assert answers[-1].alive_until > utcnow()
        assert strategy.asked == []  # the worker's lease vouched for the task
        kill(process_running(job_id))
    # The result backend learns an ending the worker's hooks never recorded.
    celery_app.app.backend.store_result(job_id, ValueError("ended elsewhere"), "FAILURE")
    wait_for(lambda: strategy.status(job_id).completed, what="the lease to run out")
    answer = strategy.status(job_id)
    assert answer.state is State.FAILED
    assert answer.error is not None
    assert (answer.error.type, answer.error.message) == ("ValueError", "ended elsewhere")
    assert answer.progress is not None  # the record's details stay
    assert strategy.asked[-1] == [job_id]
