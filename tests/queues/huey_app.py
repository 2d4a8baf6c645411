"""What a user writes to track Huey tasks (docs/queues/huey.md shows the same).

The tasks of the shared scenarios (``tests/queues/scenarios.py``) and of the Huey tests. A user
writes ``huey = RedisHuey("reports")``; here the queue comes from the test's environment, so that
the test process and the consumer it starts share it.
"""

from __future__ import annotations

import time

from huey.exceptions import CancelExecution

import immortus
from immortus.queues.huey import check_cancelled, install
from tests.queues.huey_storage import TypedHuey, huey_from_environment

huey: TypedHuey = huey_from_environment()
install(huey)


@huey.task(retries=1)
@immortus.track(queue="huey")
def build_report(rows: int) -> int:
    """The docs' example: a report built row by row, which stops if it is revoked."""
    for row in range(1, rows + 1):
        check_cancelled()  # raises CancelExecution if huey.revoke_by_id(job_id) was called
        time.sleep(0.01)  # the work on one row
        immortus.progress(row, rows, f"row {row}")
    return rows


# -- the scenario jobs -----------------------------------------------------------------------


@huey.task()
@immortus.track(queue="huey")
def steps() -> int:
    """Report progress 1, 2, 3 of 3, then return."""
    for step in range(1, 4):
        immortus.progress(step, 3, f"step {step}")
    return 3


@huey.task()
@immortus.track(queue="huey")
def fails() -> None:
    """Report progress 3 of 5, then fail."""
    immortus.progress(3, 5)
    raise ValueError("boom at 60%")


@huey.task(retries=1)
@immortus.track(queue="huey")
def flaky() -> str:
    """Fail the first attempt; Huey retries at once (no retry delay) and the second returns."""
    job = immortus.current_job()
    if job is not None and job.attempt == 1:
        raise RuntimeError("first attempt fails")
    return "second attempt"


@huey.task()
@immortus.track(queue="huey")
def slow() -> None:
    """Report progress every 50 ms for up to 30 s, stopping if revoked."""
    for step in range(600):
        check_cancelled()
        immortus.progress(step, 600)
        time.sleep(0.05)


# -- for the Huey tests ----------------------------------------------------------------------


@huey.task()
def not_tracked() -> str:
    """A task that did not opt in: the hooks ignore it."""
    return "done"


@huey.task(retries=1)
@immortus.track(queue="huey")
def cancels_then_retries() -> str:
    """Cancel the first attempt asking Huey to run it again; the second returns."""
    job = immortus.current_job()
    if job is not None and job.attempt == 1:
        raise CancelExecution(retry=True)
    return "second attempt"


# -- the cancel scenarios' jobs (tests/queues/cancelling.py) ---------------------------------


@huey.task(retries=1)
@immortus.track(queue="huey")
def stops_itself() -> None:
    """Report progress 1 of 2, then stop as a cancelled job does; Huey would retry a failure."""
    immortus.progress(1, 2)
    job = immortus.current_job()
    raise immortus.JobCancelled(job.job_id if job is not None else "?")


@huey.task(retries=1, retry_delay=3)
@immortus.track(queue="huey")
def retried_later() -> str:
    """Fail the first attempt; Huey runs the second 3 s later, and it returns."""
    job = immortus.current_job()
    if job is not None and job.attempt == 1:
        raise RuntimeError("first attempt fails")
    return "second attempt"
