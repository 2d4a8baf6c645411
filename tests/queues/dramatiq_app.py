"""The scenario jobs as Dramatiq actors: what the worker runs and what the tests enqueue.

The worker subprocess runs ``dramatiq tests.queues.dramatiq_app``; the tests' process imports
this module too (it enqueues). Both read the broker's Redis URL from ``IMMORTUS_TEST_DRAMATIQ_URL``
and immortus's store from ``IMMORTUS_STORE`` (the worker) or ``immortus.configure`` (the tests).
The set-up below is the example of ``docs/queues/dramatiq.md``.
"""

from __future__ import annotations

import os
import time
from typing import Final

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware, Retries
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

import immortus
import immortus.queues.dramatiq

#: The environment variable naming the Redis database the broker uses.
BROKER_URL_ENV: Final = "IMMORTUS_TEST_DRAMATIQ_URL"
#: The broker's key prefix in Redis, away from the other queues' tests.
NAMESPACE: Final = "immortus-dramatiq-tests"

BROKER_URL = os.environ[BROKER_URL_ENV]

# Dramatiq keeps no status, so the tests ask the Results middleware how a job ended, "according
# to the queue alone". It needs the Message object: a results key is not the message id.
results = RedisBackend(url=BROKER_URL, namespace=f"{NAMESPACE}-results")  # type: ignore[no-untyped-call]


def new_broker(namespace: str, middleware: list[Middleware] | None = None) -> RedisBroker:
    """Return a broker on the tests' Redis database, with its own key ``namespace``."""
    return RedisBroker(url=BROKER_URL, namespace=namespace, middleware=middleware)  # type: ignore[no-untyped-call]


# -- the example of docs/queues/dramatiq.md ------------------------------------------------
broker = RedisBroker(url=BROKER_URL, namespace=NAMESPACE)  # type: ignore[no-untyped-call]
immortus.queues.dramatiq.install(broker)
dramatiq.set_broker(broker)
# ------------------------------------------------------------------------------------------

# One retry, at once (the scenarios' "flaky" job), instead of Dramatiq's 20 with a 15 s backoff.
for middleware in broker.middleware:
    if isinstance(middleware, Retries):
        middleware.max_retries = 1
        middleware.min_backoff = 1
        middleware.max_backoff = 10
broker.add_middleware(Results(backend=results, store_results=True))  # type: ignore[no-untyped-call]


@dramatiq.actor
@immortus.track(queue="dramatiq")
def steps() -> None:
    """Report progress 1, 2, 3 of 3, then return."""
    for step in (1, 2, 3):
        immortus.progress(step, 3, f"step {step}")


@dramatiq.actor
@immortus.track(queue="dramatiq")
def fails() -> None:
    """Report progress 3 of 5, then raise."""
    immortus.progress(3, 5)
    raise ValueError("boom at 60%")


@dramatiq.actor
@immortus.track(queue="dramatiq")
def flaky() -> None:
    """Raise on the first attempt; return on the next."""
    job = immortus.current_job()
    if job is None or job.attempt == 1:
        raise RuntimeError("first attempt fails")


@dramatiq.actor
@immortus.track(queue="dramatiq")
def slow(seconds: float = 30.0) -> None:
    """Report progress every 50 ms for ``seconds``."""
    ticks = round(seconds / 0.05)
    for tick in range(1, ticks + 1):
        immortus.progress(tick, ticks)
        time.sleep(0.05)


@dramatiq.actor
def untracked() -> None:
    """An actor that is not opted in: the middleware leaves its messages alone."""


# -- the cancel scenarios' jobs (tests/queues/cancelling.py) ---------------------------------


@dramatiq.actor
@immortus.track(queue="dramatiq")
def stops_itself() -> None:
    """Report progress 1 of 2, then stop as a cancelled job does (Retries would retry it)."""
    immortus.progress(1, 2)
    job = immortus.current_job()
    raise immortus.JobCancelled(job.job_id if job is not None else "?")


@dramatiq.actor
@immortus.track(queue="dramatiq")
def retried_later() -> None:
    """Ask Retries to run the message again 3 s later, once; the second attempt returns."""
    job = immortus.current_job()
    if job is None or job.attempt == 1:
        raise dramatiq.Retry("first attempt fails", delay=3000)
