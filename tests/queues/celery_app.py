"""The Celery app of the scenario tests, and of ``docs/queues/celery.md``'s examples.

The worker runs ``celery -A tests.queues.celery_app worker``; the test process imports the same
module to enqueue. The environment tells both where things are:

- ``IMMORTUS_TEST_CELERY_URL``: the Redis database used as broker and result backend;
- ``IMMORTUS_STORE``: immortus's store (read by immortus itself);
- ``IMMORTUS_TEST_CELERY_READY``: a file the worker creates once it consumes tasks;
- ``IMMORTUS_TEST_CELERY_RESULT_EXPIRES``: seconds a result is kept (Celery's default: a day).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from celery import Celery, Task, signals  # type: ignore[import-untyped]

import immortus
import immortus.queues.celery

# -- the documented example (docs/queues/celery.md) -------------------------------------------

app = Celery("tests.queues.celery_app")
app.conf.update(task_track_started=True)  # lets the result backend say STARTED
immortus.queues.celery.install(app)


@app.task  # type: ignore[untyped-decorator]
@immortus.track(queue="celery")
def steps() -> None:
    for step in (1, 2, 3):
        immortus.progress(step, 3, f"step {step}")


@app.task(ignore_result=True)  # type: ignore[untyped-decorator]
@immortus.track(queue="celery", strategy="store")  # no result kept: immortus's store alone
def notify() -> None:
    immortus.progress(1, 1)


# -- the other scenario jobs ---------------------------------------------------------------------


@app.task  # type: ignore[untyped-decorator]
@immortus.track(queue="celery")
def fails() -> None:
    immortus.progress(3, 5)
    raise ValueError("boom at 60%")


@app.task(  # type: ignore[untyped-decorator]
    bind=True, autoretry_for=(RuntimeError,), max_retries=1, retry_kwargs={"countdown": 0}
)
@immortus.track(queue="celery")
def flaky(self: Task) -> str:
    if self.request.retries == 0:
        raise RuntimeError("first attempt fails")
    return "second attempt"


@app.task  # type: ignore[untyped-decorator]
@immortus.track(queue="celery")
def slow() -> None:
    for tick in range(600):  # 30 s
        immortus.progress(tick, 600)
        time.sleep(0.05)


@app.task(bind=True, max_retries=1, default_retry_delay=0)  # type: ignore[untyped-decorator]
@immortus.track(queue="celery")
def stops_itself(self: Task) -> None:
    """Report progress 1 of 2, then stop as a cancelled job does (Celery may retry it once)."""
    immortus.progress(1, 2)
    raise immortus.JobCancelled(self.request.id)


@app.task(  # type: ignore[untyped-decorator]
    bind=True, autoretry_for=(RuntimeError,), max_retries=1, retry_kwargs={"countdown": 3}
)
@immortus.track(queue="celery")
def retried_later(self: Task) -> str:
    """Fail the first attempt; Celery retries it 3 s later (a countdown), and it returns."""
    if self.request.retries == 0:
        raise RuntimeError("first attempt fails")
    return "second attempt"


def _wait_for(release: str) -> None:
    """Report progress 0 of 1, wait until the file ``release`` exists, report 1 of 1.

    Raises ``TimeoutError`` after a minute without it.
    """
    immortus.progress(0, 1, "waiting")
    deadline = time.monotonic() + 60
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} did not appear")
        time.sleep(0.05)
    immortus.progress(1, 1, "released")


@app.task  # type: ignore[untyped-decorator]
@immortus.track(queue="celery")
def blocks(release: str) -> None:
    """Run until the file ``release`` exists: a test kills its worker mid-task, or lets it end."""
    _wait_for(release)


@app.task(acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
@immortus.track(queue="celery")
def blocks_redelivered(release: str) -> None:
    """:func:`blocks`, whose message Celery requeues when the process running it dies."""
    _wait_for(release)


@app.task(  # type: ignore[untyped-decorator]
    retry_on_worker_lost=True, max_retries=1, default_retry_delay=0
)
@immortus.track(queue="celery")
def blocks_retried(release: str) -> None:
    """:func:`blocks`, which Celery retries when the process running it dies."""
    _wait_for(release)


@app.task(name="tests.queues.celery_app.renamed_task")  # type: ignore[untyped-decorator]
@immortus.track(queue="celery")
def renamed() -> None:
    """A task whose Celery name is not the name @immortus.track gave it: not tracked."""


# -- the test set-up ---------------------------------------------------------------------------


def configure(url: str, *, result_expires: float | None = None) -> None:
    """Point the app at ``url`` (broker and result backend), as the worker's environment does."""
    app.conf.update(
        broker_url=url,
        result_backend=url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"polling_interval": 0.2},  # a worker stops within 0.2 s
        worker_hijack_root_logger=False,
    )
    if result_expires is not None:
        app.conf.update(result_expires=result_expires)


if "IMMORTUS_TEST_CELERY_URL" in os.environ:
    expires = os.environ.get("IMMORTUS_TEST_CELERY_RESULT_EXPIRES")
    configure(
        os.environ["IMMORTUS_TEST_CELERY_URL"],
        result_expires=None if expires is None else float(expires),
    )


@signals.worker_ready.connect  # type: ignore[untyped-decorator]
def _announce_ready(**_: Any) -> None:
    ready = os.environ.get("IMMORTUS_TEST_CELERY_READY")
    if ready:
        Path(ready).touch()
