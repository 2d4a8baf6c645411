"""A Dramatiq app whose broker redelivers a dead worker's messages within about a second.

The worker subprocess runs ``dramatiq tests.queues.dramatiq_redelivery_app``. Dramatiq's Redis
broker requeues the messages a worker took but never acknowledged once that worker's heartbeat
is ``heartbeat_timeout`` old, during the queue maintenance that a share of its commands runs:
here 1 s, and every command. The broker's URL comes from ``IMMORTUS_TEST_DRAMATIQ_URL``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Final

import dramatiq
from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker

import immortus
import immortus.queues.dramatiq

#: The broker's key prefix in Redis, away from the other tests'.
NAMESPACE: Final = "immortus-dramatiq-redelivery"
#: Milliseconds without a heartbeat after which the broker takes a worker for dead.
HEARTBEAT_TIMEOUT_MS: Final = 1000

broker = RedisBroker(  # type: ignore[no-untyped-call]
    url=os.environ["IMMORTUS_TEST_DRAMATIQ_URL"],
    namespace=NAMESPACE,
    heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
    maintenance_chance=MAINTENANCE_SCALE,
)
immortus.queues.dramatiq.install(broker)
dramatiq.set_broker(broker)


@dramatiq.actor(max_retries=0)
@immortus.track(queue="dramatiq")
def blocks(release: str) -> None:
    """Report the worker process's pid, then progress every 50 ms until ``release`` exists."""
    immortus.update_meta(pid=os.getpid())
    tick = 0
    while not Path(release).exists():
        tick += 1
        immortus.progress(tick)
        time.sleep(0.05)


@dramatiq.actor(max_retries=1, min_backoff=1, max_backoff=10)
@immortus.track(queue="dramatiq")
def blocks_then_fails_once(release: str) -> None:
    """As :func:`blocks`; once released, raise the first time (a retry follows), then return."""
    blocks.fn(release)
    raised = Path(f"{release}.raised")
    if not raised.exists():
        raised.touch()
        raise RuntimeError("the run after the redelivery fails")
