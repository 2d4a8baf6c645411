"""The change feed over a store that pushes: it waits for notices instead of ticking.

Real Redis and PostgreSQL servers, real threads; the feed's ``polls`` counts its reads.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from immortus import JobStatus, Progress, config, lifecycle
from immortus.stores.base import Store
from immortus.stores.notify import Listener
from immortus.stores.redis import RedisStore
from immortus.stores.sql import SQLStore
from immortus.web.feed import ChangeFeed
from tests.services.base import wait_until

#: Generous: the machine may be loaded.
DEADLINE = 10.0
TICK = 0.01


@pytest.fixture(params=["redis", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    url = request.getfixturevalue(f"{request.param}_url")
    opened: Store = RedisStore(url) if request.param == "redis" else SQLStore(url)
    config.configure(store=opened, progress_interval=0)
    yield opened
    opened.close()


def listener_of(store: Store) -> Listener[object]:
    listener = getattr(store.change_source(), "listener", None)
    assert isinstance(listener, Listener)
    return listener


def test_an_idle_feed_waits_for_the_push_and_a_write_still_arrives(store: Store) -> None:
    lifecycle.job_started("job-1")
    listener = listener_of(store)
    feed = ChangeFeed(TICK, full_reread=3600.0)
    with feed.subscribe("job-1") as changes:
        assert changes.next_change(DEADLINE)
        changes.take()
        assert wait_until(lambda: listener.live, timeout=DEADLINE)
        time.sleep(TICK * 10)  # the poll after the subscription was confirmed
        polls = feed.polls
        time.sleep(TICK * 50)  # fifty ticks' time, with nothing written
        assert feed.polls == polls
        lifecycle.job_progress("job-1", Progress(current=1, total=2))
        assert changes.next_change(DEADLINE)
        status = changes.take()
        assert isinstance(status, JobStatus)
        assert status.progress == Progress(current=1, total=2)
        assert feed.polls - polls <= 2  # woken by the write, not by ticks
    assert wait_until(lambda: not feed.running and not listener.running, timeout=DEADLINE)
    assert not listener.live  # nobody follows a job: no subscription


def test_without_push_the_feed_ticks(store: Store) -> None:
    lifecycle.job_started("job-1")
    feed = ChangeFeed(TICK, full_reread=3600.0, push=False)
    with feed.subscribe("job-1") as changes:
        assert changes.next_change(DEADLINE)
        polls = feed.polls
        assert wait_until(lambda: feed.polls > polls + 5, timeout=DEADLINE)
        assert not listener_of(store).running  # never subscribed
    assert wait_until(lambda: not feed.running, timeout=DEADLINE)  # no read after the store closed
