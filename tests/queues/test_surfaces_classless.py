"""A page that lost a job's class learns what a page that kept it learns.

Asked without a class, a job is read by immortus's store; asked with it, by its queue's strategy,
which corrects the store's record with the queue's own state. When the two differ for good (the
worker ran the job while the store was down, so the store still holds the enqueue), the
class-less surfaces must still give the queue-corrected answer: the store's record names the
job's class, and so its strategy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from immortus import State
from tests.queues.scenarios import wait_for
from tests.queues.stores import tracking_into_sqlite
from tests.queues.test_rq import RQ_DB, RQHarness
from tests.surfaces import answers, assert_one_answer


@pytest.fixture
def harness(redis_url: str, tmp_path: Path) -> Iterator[RQHarness]:
    url = redis_url.rpartition("/")[0] + f"/{RQ_DB}"
    with Redis.from_url(url) as client:
        client.flushdb()
    with tracking_into_sqlite(tmp_path) as store_url:
        rq_harness = RQHarness(url, store_url, tmp_path)
        try:
            yield rq_harness
        finally:
            rq_harness.close()


def test_a_job_run_while_the_store_was_down_reads_alike_without_its_class(
    harness: RQHarness,
) -> None:
    job_class = harness.job_class("steps")
    job_id = harness.enqueue("steps")  # the store records it created, with its class
    with harness.worker_with_store_down():
        wait_for(lambda: harness.outcome_from_the_queue(job_id) is not None, what="the job")
    assert harness.outcome_from_the_queue(job_id) is State.FINISHED
    found = answers(job_id, job_class)
    assert found["immortus.status"]["status"] == "finished"  # RQ's hash says so
    assert_one_answer(found)
