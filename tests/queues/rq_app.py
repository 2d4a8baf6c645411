"""The RQ jobs the tests run: the example of ``docs/queues/rq.md``, imported by a real worker.

The worker is ``rq worker --job-class immortus.queues.rq.TrackedJob``; the enqueuing side is
:func:`make_queue`. The four scenario jobs are those of ``tests/queues/scenarios.py``.
"""

from __future__ import annotations

import os
import time

from redis import Redis
from rq import Queue, Retry, get_current_job
from rq.job import Job

import immortus
from immortus.queues.rq import install

#: The queue the tests use (its own name, so nothing else ever takes its jobs).
QUEUE_NAME = "immortus-tests"


def make_queue(connection: Redis) -> Queue:
    """Return the tests' queue with immortus's hooks installed: the docs' one-line install."""
    return install(Queue(QUEUE_NAME, connection=connection))


@immortus.track(queue="rq")
def steps() -> None:
    """Report progress 1, 2, 3 of 3, then return."""
    for step in range(1, 4):
        immortus.progress(step, 3, f"step {step}")


@immortus.track(queue="rq")
def fails() -> None:
    """Report progress 3 of 5, then fail."""
    immortus.progress(3, 5)
    raise ValueError("boom at 60%")


@immortus.track(queue="rq")
def flaky() -> str:
    """Fail the first attempt (RQ still has a retry left), succeed the second."""
    job = get_current_job()
    if job is not None and job.retries_left:
        raise RuntimeError("first attempt fails")
    return "second attempt"


@immortus.track(queue="rq")
def slow() -> None:
    """Report progress every 50 ms for up to 30 s, so that a test can stop it on the way."""
    for step in range(1, 601):
        immortus.progress(step, 600)
        time.sleep(0.05)


@immortus.track(queue="rq")
def blocks(release: str) -> str:
    """Report progress 0 of 1, then wait until the file ``release`` exists, and return.

    A test knows the job runs once it reads the progress, and kills its worker mid-job or
    lets it end by creating the file. Raises ``TimeoutError`` after a minute without it.
    """
    immortus.progress(0, 1, "waiting")
    deadline = time.monotonic() + 60
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} did not appear")
        time.sleep(0.05)
    immortus.progress(1, 1, "released")
    return "released"


@immortus.track(queue="rq")
def progress_in_meta() -> None:
    """Report progress the RQ way only, in ``job.meta``, which RQStrategy reads too."""
    job = get_current_job()
    assert job is not None
    job.meta["progress"] = {"current": 2, "total": 4, "message": "half way"}
    job.save_meta()  # type: ignore[no-untyped-call]
    time.sleep(30)


@immortus.track(queue="rq")
def asks_to_retry() -> Retry:
    """Ask RQ to run it again, every time: RQ fails it once the retry is spent."""
    return Retry(max=1)


@immortus.track(queue="rq")
def quiet() -> str:
    """Report nothing: it runs the same under a worker without immortus's hooks."""
    return "done"


@immortus.track(queue="rq")
def breaks() -> None:
    """Fail without reporting anything."""
    raise ValueError("boom")


@immortus.track(queue="rq", strategy="store")
def notify() -> None:
    """Tracked by immortus's store alone: the docs' inline strategy."""


@immortus.track(name="reports.nightly", queue="rq")
def nightly() -> None:
    """A job tracked under a name of its own, not its dotted path."""


#: Ids of the jobs :func:`remember_stop` was called for (in the process that stopped them).
STOPPED: list[str] = []


def remember_stop(job: Job, connection: Redis) -> None:
    """An ``on_stopped`` callback of the project's own."""
    STOPPED.append(job.id)


def untracked() -> None:
    """A job nobody opted in: the hooks leave it alone."""


# -- the cancel scenarios' jobs (tests/queues/cancelling.py) ---------------------------------


@immortus.track(queue="rq")
def stops_itself() -> None:
    """Report progress 1 of 2, then stop as a cancelled job does (enqueued with a retry)."""
    immortus.progress(1, 2)
    job = immortus.current_job()
    raise immortus.JobCancelled(job.job_id if job is not None else "?")


@immortus.track(queue="rq")
def retried_later() -> str:
    """Fail the first attempt; enqueued with ``Retry(max=1, interval=3)``, the second returns."""
    job = get_current_job()
    if job is not None and job.retries_left:
        raise RuntimeError("first attempt fails")
    return "second attempt"
