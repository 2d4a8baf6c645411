"""A group of real Huey jobs run by a real consumer: one aggregate answer for all twenty.

The consumer is ``huey_consumer`` in a subprocess (as in ``test_huey.py``), tracking into the
SQLite store this process reads; the group's answer is read from the store's group counters.
"""

from __future__ import annotations

from pathlib import Path

import immortus
from immortus.status import JobError, State
from tests.queues.scenarios import wait_for
from tests.queues.test_huey import huey_harness


def test_a_group_of_twenty_huey_jobs_ends_with_one_answer(tmp_path: Path) -> None:
    with huey_harness("sqlite", str(tmp_path / "huey.sqlite3"), tmp_path) as harness:
        with immortus.group() as batch:
            job_ids = [harness.run("steps") for _ in range(19)]
            job_ids.append(harness.run("fails"))
        harness.run("steps")  # enqueued after the block: in no group
        group_id = batch.group_id
        waiting = immortus.group_status(group_id)
        assert (waiting.total, waiting.state) == (20, State.CREATED)
        assert {immortus.status(job_id).group_id for job_id in job_ids} == {group_id}
        with harness.worker():
            wait_for(
                lambda: immortus.group_status(group_id).completed == 20,
                what="every job of the group to complete",
            )
        answer = immortus.group_status(group_id)
    assert answer.jobs == {State.FINISHED: 19, State.FAILED: 1}
    assert (answer.total, answer.completed, answer.progress) == (20, 20, 1.0)
    assert answer.state is State.FAILED
    assert answer.first_error == JobError(type="ValueError", message="boom at 60%")
    body = answer.to_dict()
    assert (body["status"], body["error"]) == (
        "failed",
        {"type": "ValueError", "message": "boom at 60%"},
    )
