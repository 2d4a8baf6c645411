"""A feed lets go of a busy store's push, and listens again once the store is quiet.

Real Redis and PostgreSQL servers, real threads. While writes land at every tick the feed
ticks anyway, so it stops listening to Redis (the listener's thread ends); once the writes
stop it listens again, and a write then wakes it without ticks. No write is missed in
between: they are read through the store's change numbers. PostgreSQL's changes are named by
its notices, so its push stays on.
"""

from __future__ import annotations

import threading
import time

from immortus import JobStatus, Progress, lifecycle
from immortus.stores.base import Store
from immortus.stores.notify import LISTEN_SLICE
from immortus.stores.redis import RedisStore
from immortus.web.feed import BUSY_TICKS, ChangeFeed
from tests.services.base import wait_until
from tests.web.test_feed_push import listener_of, store

__all__ = ["store"]  # the Redis and PostgreSQL stores of the push tests

#: Generous: the machine may be loaded.
DEADLINE = 10.0
TICK = 0.01


def test_a_busy_store_is_polled_and_a_quiet_one_pushes_again(store: Store) -> None:
    lifecycle.job_started("watched")
    lifecycle.job_started("busy")
    listener = listener_of(store)
    feed = ChangeFeed(TICK, full_reread=3600.0)
    stop = threading.Event()

    def write_at_every_tick() -> None:
        step = 0
        while not stop.is_set():
            step += 1
            lifecycle.job_progress("busy", Progress(current=step % 100, total=100))
            time.sleep(TICK / 5)

    with feed.subscribe("watched") as changes:
        assert changes.next_change(DEADLINE)
        changes.take()
        assert wait_until(lambda: listener.live, timeout=DEADLINE)
        writer = threading.Thread(target=write_at_every_tick, daemon=True)
        writer.start()
        try:
            if isinstance(store, RedisStore):
                # Busy: the feed let go of the push, and the listener, watched by nobody, ended.
                assert wait_until(lambda: not listener.running, timeout=DEADLINE)
            else:
                # PostgreSQL's changes are named by its notices alone: its push stays on.
                time.sleep(LISTEN_SLICE * 2)
                assert listener.live
            lifecycle.job_progress("watched", Progress(current=1, total=3))
            assert changes.next_change(DEADLINE)  # read at a tick, without the push
            assert _progress(changes.take()) == Progress(current=1, total=3)
        finally:
            stop.set()
            writer.join(DEADLINE)
        # Quiet again: the feed listens again, stops ticking, and a write wakes it.
        assert wait_until(lambda: listener.live, timeout=DEADLINE)
        time.sleep(TICK * (BUSY_TICKS + 10))  # the poll after the subscription was confirmed
        polls = feed.polls
        time.sleep(TICK * 50)  # fifty ticks' time, with nothing written
        assert feed.polls == polls
        lifecycle.job_progress("watched", Progress(current=2, total=3))
        assert changes.next_change(DEADLINE)
        assert _progress(changes.take()) == Progress(current=2, total=3)
        assert feed.polls - polls <= 2  # woken by the write, not by ticks
    assert wait_until(lambda: not feed.running and not listener.running, timeout=DEADLINE)


def _progress(outcome: object) -> Progress | None:
    assert isinstance(outcome, JobStatus)
    return outcome.progress
