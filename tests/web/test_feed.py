"""The change feed: one poll per tick for every stream, wake-ups, leaving, back-off, forks.

Real parts throughout: the memory store (``FaultyStore``, which counts reads and can be switched
off), real threads and event loops, real uvicorn and Werkzeug servers with httpx clients. The
strategies below count what they are asked; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncGenerator, Generator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from unittest.mock import patch

import httpx
import pytest
from flask import Flask
from starlette.applications import Starlette

import immortus
from immortus import (
    JobStatus,
    Progress,
    State,
    StoreStrategy,
    TrackingStrategy,
    config,
    lifecycle,
    query,
)
from immortus.backoff import backoff
from immortus.exceptions import StoreUnavailable
from immortus.stores.base import Changes, Store
from immortus.web import Verifier
from immortus.web.asgi import immortus_routes
from immortus.web.feed import (
    DEFAULT_TICK,
    ChangeFeed,
    JobRef,
    Outcome,
    Subscription,
    feed_for,
)
from immortus.web.flask import immortus_blueprint
from tests.services.base import wait_until
from tests.web.conftest import FaultyStore
from tests.web.http_contract import frames_of
from tests.web.servers import serve_asgi, serve_werkzeug
from tests.web.test_stream import collect, parse, status_of
from tests.web.tracing import TracingVerifier

#: Generous: the machine may be loaded.
DEADLINE = 10.0
TICK = 0.005


class Counting(TrackingStrategy):
    """Answers from a dict of states; counts ``status`` calls and each ``status_many``'s ids."""

    def __init__(self) -> None:
        self.states: dict[str, State] = {}
        self.singles = 0
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def _answer(self, job_id: str) -> JobStatus:
        return JobStatus(job_id=job_id, state=self.states.get(job_id, State.UNKNOWN))

    def status(self, job_id: str) -> JobStatus:
        with self.lock:
            self.singles += 1
        return self._answer(job_id)

    def status_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        with self.lock:
            self.calls.append(list(job_ids))
        return {job_id: self._answer(job_id) for job_id in job_ids}


@pytest.fixture
def counting(store: FaultyStore) -> Counting:
    strategy = Counting()
    immortus.track(name="feed.counted", strategy=strategy)(lambda: None)
    return strategy


class Settles:
    """``query.settle_many``, counted: how many calls, and the jobs of each."""

    def __init__(self) -> None:
        self.calls: list[list[JobRef]] = []

    def __call__(self, jobs: Sequence[JobRef]) -> Sequence[Outcome]:
        self.calls.append(list(jobs))
        return query.settle_many(jobs)


@pytest.fixture
def feed() -> Iterator[ChangeFeed]:
    """A private feed, polling every 5 ms; checked empty and stopped at the end."""
    made = ChangeFeed(TICK)
    yield made
    assert made.subscribers == 0, "a test left a subscription open"
    assert wait_until(lambda: not made.running, DEADLINE)


def until(predicate: Any) -> None:
    assert wait_until(predicate, DEADLINE, interval=0.001), "the condition never came true"


# -- subscribing ---------------------------------------------------------------------------


def test_a_subscriber_is_woken_by_a_change_and_takes_it(store: FaultyStore) -> None:
    lifecycle.job_enqueued("job-1")
    feed = ChangeFeed(TICK)
    with feed.subscribe("job-1") as changes:
        assert changes.next_change(DEADLINE)  # the first answer is news to the feed
        first = changes.take()
        assert isinstance(first, JobStatus)
        assert first.state is State.CREATED
        polls = feed.polls
        until(lambda: feed.polls > polls + 3)
        assert not changes.changed  # polls that found nothing new wake nobody
        lifecycle.job_started("job-1")
        assert changes.next_change(DEADLINE)
        started = changes.take()
        assert isinstance(started, JobStatus)
        assert started.state is State.STARTED
    until(lambda: not feed.running)


def test_a_subscriber_times_out_when_nothing_changes(store: FaultyStore) -> None:
    lifecycle.job_enqueued("job-1")
    feed = ChangeFeed(TICK)
    with feed.subscribe("job-1") as changes:
        assert changes.next_change(DEADLINE)
        changes.take()
        assert not changes.next_change(0.02)


def test_many_jobs_cost_one_settle_per_tick(store: FaultyStore) -> None:
    settles = Settles()
    feed = ChangeFeed(TICK, settle=settles, follow_changes=False)
    job_ids = [f"job-{number}" for number in range(50)]
    for job_id in job_ids:
        lifecycle.job_enqueued(job_id)
    subscriptions = [feed.subscribe(job_id) for job_id in job_ids]
    try:
        until(lambda: len(settles.calls) >= 3)
        reads, polls = store.reads, feed.polls
        until(lambda: feed.polls >= polls + 5)
        reads, polls = store.reads - reads, feed.polls - polls
    finally:
        for subscription in subscriptions:
            subscription.close()
    full = [call for call in settles.calls if len(call) == 50]
    assert len(full) >= 5
    assert all(sorted(call) == sorted((job_id, None) for job_id in job_ids) for call in full)
    # One store read per poll (the memory store's get_many), not one per job.
    assert reads <= polls + 1


def test_subscribers_of_one_job_share_its_poll(counting: Counting) -> None:
    counting.states["job-1"] = State.STARTED
    feed = ChangeFeed(TICK)
    subscriptions = [feed.subscribe("job-1", "feed.counted") for _ in range(20)]
    try:
        assert feed.jobs == [("job-1", "feed.counted")]
        assert feed.subscribers == 20
        until(lambda: len(counting.calls) >= 3)
        assert all(call == ["job-1"] for call in counting.calls)
        counting.states["job-1"] = State.FINISHED
        for subscription in subscriptions:
            assert subscription.next_change(DEADLINE)
            outcome = subscription.take()
            while isinstance(outcome, JobStatus) and outcome.state is not State.FINISHED:
                assert subscription.next_change(DEADLINE)
                outcome = subscription.take()
    finally:
        for subscription in subscriptions:
            subscription.close()
    assert feed.subscribers == 0
    assert feed.jobs == []


def test_the_thread_stops_when_the_last_subscriber_leaves_and_comes_back(
    store: FaultyStore,
) -> None:
    lifecycle.job_enqueued("job-1")
    feed = ChangeFeed(TICK)
    assert feed.polls == 0  # nobody subscribes: no thread, no poll
    first, second = feed.subscribe("job-1"), feed.subscribe("job-1")
    assert feed.running
    first.close()
    first.close()  # leaving twice is leaving once
    assert feed.subscribers == 1
    polls = feed.polls
    until(lambda: feed.polls > polls + 2)  # still polling for the second
    second.close()
    until(lambda: not feed.running)
    polls = feed.polls
    with feed.subscribe("job-1") as again:
        assert feed.running
        assert again.next_change(DEADLINE)
    until(lambda: not feed.running)
    assert feed.polls > polls


def test_take_before_any_poll_says_so(store: FaultyStore) -> None:
    gate = threading.Event()

    def held(jobs: Sequence[JobRef]) -> Sequence[Outcome]:
        gate.wait(DEADLINE)
        return query.settle_many(jobs)

    feed = ChangeFeed(TICK, settle=held)
    try:
        with feed.subscribe("job-1") as changes, pytest.raises(LookupError, match="job-1"):
            changes.take()
    finally:
        gate.set()
    until(lambda: not feed.running)


def test_a_tick_must_be_positive() -> None:
    with pytest.raises(ValueError, match="tick must be a positive"):
        ChangeFeed(0)


def test_feed_for_shares_one_feed_per_tick() -> None:
    assert feed_for(0.123) is feed_for(0.123)
    assert feed_for(0.123) is not feed_for(0.124)
    assert feed_for().tick == DEFAULT_TICK


# -- event loops -----------------------------------------------------------------------------


def test_async_subscribers_wait_on_their_own_loops(counting: Counting) -> None:
    """Two event loops in two threads, ten subscribers each: one wake-up call per loop a tick."""
    feed = ChangeFeed(TICK)
    for number in range(10):
        counting.states[f"job-{number}"] = State.STARTED
    wakeups: list[int] = []
    results: list[list[State]] = []

    async def watch_all() -> None:
        loop = asyncio.get_running_loop()
        original = loop.call_soon_threadsafe

        def counted(callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
            wakeups.append(threading.get_ident())
            return original(callback, *args, context=context)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign,assignment]
        subscriptions = [
            feed.subscribe(f"job-{number}", "feed.counted", loop=loop) for number in range(10)
        ]
        try:
            seen = await asyncio.gather(*(finished(s) for s in subscriptions))
        finally:
            for subscription in subscriptions:
                subscription.close()
        results.append(seen)

    async def finished(subscription: Subscription) -> State:
        while True:
            assert await subscription.anext_change(DEADLINE)
            outcome = subscription.take()
            assert isinstance(outcome, JobStatus)
            if outcome.state is State.FINISHED:
                return outcome.state

    threads = [threading.Thread(target=asyncio.run, args=(watch_all(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    until(lambda: feed.subscribers == 20)
    for number in range(10):
        counting.states[f"job-{number}"] = State.FINISHED
    for thread in threads:
        thread.join(DEADLINE)
    assert results == [[State.FINISHED] * 10] * 2
    # Each loop is woken once per poll that changed any of its jobs, never once per job.
    assert len(wakeups) < 20
    until(lambda: not feed.running)


def test_anext_change_times_out(store: FaultyStore) -> None:
    lifecycle.job_enqueued("job-1")
    feed = ChangeFeed(TICK)

    async def main() -> bool:
        with feed.subscribe("job-1", loop=asyncio.get_running_loop()) as changes:
            assert await changes.anext_change(DEADLINE)
            changes.take()
            return await changes.anext_change(0.02)

    assert asyncio.run(main()) is False


def test_anext_change_needs_a_loop(store: FaultyStore) -> None:
    feed = ChangeFeed(TICK)
    with feed.subscribe("job-1") as changes, pytest.raises(RuntimeError, match="event loop"):
        asyncio.run(changes.anext_change(1))


def test_a_closed_loop_loses_its_subscriptions(store: FaultyStore) -> None:
    lifecycle.job_enqueued("job-1")
    feed = ChangeFeed(TICK)
    loop = asyncio.new_event_loop()
    feed.subscribe("job-1", loop=loop)  # never closed by its (gone) stream
    loop.close()
    lifecycle.job_started("job-1")
    until(lambda: feed.subscribers == 0)
    until(lambda: not feed.running)


# -- following the store's changes ----------------------------------------------------------


class Annotating(StoreStrategy):
    """A store strategy that may add more than the record: the feed must not skip its jobs."""


class Untracked(FaultyStore):
    """A store that cannot name its changes, as the contract allows (SQLStore, third parties)."""

    tracks_changes = False

    def changes_since(self, cursor: int | None) -> Changes:
        return Store.changes_since(self, cursor)


def opened(feed: ChangeFeed, job_ids: Sequence[str], job_class: str | None = None) -> list[Any]:
    """Subscribe to every job and take its first answer."""
    subscriptions = [feed.subscribe(job_id, job_class) for job_id in job_ids]
    for subscription in subscriptions:
        assert subscription.next_change(DEADLINE)
        assert isinstance(subscription.take(), JobStatus)
    return subscriptions


def test_a_tick_reads_only_the_jobs_whose_records_changed(store: FaultyStore) -> None:
    settles = Settles()
    feed = ChangeFeed(TICK, settle=settles, full_reread=3600.0)
    job_ids = [f"job-{number}" for number in range(20)]
    for job_id in job_ids:
        lifecycle.job_started(job_id)
    subscriptions = opened(feed, job_ids)
    try:
        asked = len(settles.calls)
        polls = feed.polls
        until(lambda: feed.polls > polls + 5)
        assert len(settles.calls) == asked  # nothing changed: nothing read, ticks go on
        lifecycle.job_progress("job-3", Progress(current=1, total=2))
        lifecycle.job_progress("job-7", Progress(current=1, total=2))
        for number in (3, 7):
            assert subscriptions[number].next_change(DEADLINE)
            status = subscriptions[number].take()
            assert isinstance(status, JobStatus)
            assert status.progress == Progress(current=1, total=2)
        read = [job_id for call in settles.calls[asked:] for job_id, _ in call]
        assert sorted(read) == ["job-3", "job-7"]  # one read each, of the changed jobs only
        assert not any(subscription.changed for subscription in subscriptions)
    finally:
        for subscription in subscriptions:
            subscription.close()


def test_every_job_is_read_again_every_full_reread(store: FaultyStore) -> None:
    settles = Settles()
    feed = ChangeFeed(TICK, settle=settles, full_reread=0.1)
    job_ids = [f"job-{number}" for number in range(10)]
    for job_id in job_ids:
        lifecycle.job_enqueued(job_id)
    subscriptions = opened(feed, job_ids)
    try:
        asked, polls = len(settles.calls), feed.polls
        until(lambda: len(settles.calls) >= asked + 3)
        full = settles.calls[asked : asked + 3]
        assert all(sorted(call) == sorted((job_id, None) for job_id in job_ids) for call in full)
        assert feed.polls - polls > 3  # quiet ticks in between read nothing
    finally:
        for subscription in subscriptions:
            subscription.close()


def test_a_lapsed_lease_is_noticed_with_no_write(store: FaultyStore) -> None:
    lease = datetime.now(UTC) + timedelta(seconds=0.3)
    lifecycle.job_started("job-1", alive_until=lease)
    feed = ChangeFeed(TICK, full_reread=0.2)
    with feed.subscribe("job-1") as changes:
        assert changes.next_change(DEADLINE)
        first = changes.take()
        assert isinstance(first, JobStatus)
        assert first.state is State.STARTED
        cursor, _ = store.changes_since(None)
        assert changes.next_change(DEADLINE)
        lapsed = changes.take()
        assert isinstance(lapsed, JobStatus)
        assert lapsed.state is State.LOST
        assert store.changes_since(cursor) == (cursor, frozenset())  # nothing was written


@pytest.mark.parametrize("strategy", [Counting, Annotating])
def test_jobs_of_other_strategies_are_read_every_tick(
    store: FaultyStore, strategy: type[TrackingStrategy]
) -> None:
    lifecycle.job_started("job-1")
    immortus.track(name="feed.other", strategy=strategy())(lambda: None)
    settles = Settles()
    feed = ChangeFeed(TICK, settle=settles, full_reread=3600.0)
    with feed.subscribe("job-1", "feed.other") as changes:
        assert changes.next_change(DEADLINE)
        asked, polls = len(settles.calls), feed.polls
        until(lambda: feed.polls > polls + 5)
        assert len(settles.calls) - asked >= feed.polls - polls - 1  # one read per tick


def test_a_store_that_cannot_name_changes_is_read_every_tick() -> None:
    store = Untracked()
    config.configure(store=store, progress_interval=0)
    lifecycle.job_started("job-1")
    feed = ChangeFeed(TICK, full_reread=3600.0)
    with feed.subscribe("job-1") as changes:
        assert changes.next_change(DEADLINE)
        reads, polls = store.reads, feed.polls
        until(lambda: feed.polls > polls + 5)
        assert store.reads - reads >= feed.polls - polls - 1


def test_a_store_failing_to_name_changes_reads_everything(store: FaultyStore) -> None:
    """changes_since raising is no news by itself: the jobs are read, the read reports."""
    lifecycle.job_started("job-1")
    feed = ChangeFeed(TICK, full_reread=3600.0, max_backoff=TICK * 4)
    with feed.subscribe("job-1") as changes:
        assert changes.next_change(DEADLINE)
        changes.take()
        store.down = True
        broken = StoreUnavailable("cannot reach db-7.internal:5432 (connection refused)")
        with patch.object(store, "changes_since", side_effect=broken):
            assert changes.next_change(DEADLINE)
            assert isinstance(changes.take(), StoreUnavailable)
            store.down = False
            assert changes.next_change(DEADLINE)
            assert isinstance(changes.take(), JobStatus)


# -- failures --------------------------------------------------------------------------------


def test_a_store_outage_reaches_every_subscriber_once(store: FaultyStore) -> None:
    lifecycle.job_enqueued("job-1")
    lifecycle.job_enqueued("job-2")
    feed = ChangeFeed(TICK, max_backoff=TICK * 4)
    with feed.subscribe("job-1") as one, feed.subscribe("job-2") as two:
        for changes in (one, two):
            assert changes.next_change(DEADLINE)
            changes.take()
        store.down = True
        for changes in (one, two):
            assert changes.next_change(DEADLINE)
            assert isinstance(changes.take(), StoreUnavailable)
        polls = feed.polls
        until(lambda: feed.polls > polls + 3)
        assert not one.changed  # the same failure again is no news
        store.down = False
        for changes in (one, two):
            assert changes.next_change(DEADLINE)
            assert isinstance(changes.take(), JobStatus)


def test_backoff_doubles_up_to_its_ceiling() -> None:
    assert [backoff(0.05, failures, 1.0) for failures in range(7)] == [
        0.05,
        0.1,
        0.2,
        0.4,
        0.8,
        1.0,
        1.0,
    ]
    assert backoff(0.05, 10_000, 10.0) == 10.0


def test_a_new_subscriber_ends_a_backoff(store: FaultyStore) -> None:
    """The store is down: the feed waits a minute; a new subscriber makes it poll at once."""
    lifecycle.job_enqueued("job-1")
    store.down = True
    feed = ChangeFeed(30.0, max_backoff=60.0)
    with feed.subscribe("job-1") as first:
        assert first.next_change(DEADLINE)
        assert isinstance(first.take(), StoreUnavailable)
        store.down = False
        with feed.subscribe("job-2") as second:
            assert first.next_change(DEADLINE)  # not a minute later
            assert isinstance(first.take(), JobStatus)
            assert second.next_change(DEADLINE)
    until(lambda: not feed.running)


def test_a_settle_that_raises_is_every_subscribers_outcome(store: FaultyStore) -> None:
    def broken(jobs: Sequence[JobRef]) -> Sequence[Outcome]:
        raise RuntimeError("db-7 said no")

    feed = ChangeFeed(TICK, settle=broken)
    with feed.subscribe("job-1") as changes:
        assert changes.next_change(DEADLINE)
        outcome = changes.take()
    assert isinstance(outcome, RuntimeError)
    assert str(outcome) == "db-7 said no"


def test_a_settle_answering_too_little_is_a_failure(store: FaultyStore) -> None:
    feed = ChangeFeed(TICK, settle=lambda jobs: [])
    with feed.subscribe("job-1") as changes:
        assert changes.next_change(DEADLINE)
        assert "0 outcomes for 1 jobs" in str(changes.take())


# -- streams on the feed ---------------------------------------------------------------------


def test_streams_follow_a_custom_strategy_through_the_feed(counting: Counting) -> None:
    counting.states["job-1"] = State.STARTED
    response = Verifier(open_endpoints=True).stream("job-1", "feed.counted", interval=TICK)

    def react(index: int, frame: bytes) -> None:
        counting.states["job-1"] = State.FINISHED

    frames = collect(response, react)
    assert [status_of(frame) for frame in frames] == ["started", "finished"]
    assert counting.singles == 1  # the opening answer, as verify's; then the feed's polls
    assert counting.calls
    assert all(call == ["job-1"] for call in counting.calls)


def test_a_stream_subscribes_after_its_first_frame_and_leaves_when_closed(
    store: FaultyStore, feed: ChangeFeed
) -> None:
    lifecycle.job_enqueued("job-1")
    response = Verifier(open_endpoints=True).stream("job-1", interval=TICK)
    response.feed = feed
    frames = iter(response)
    assert isinstance(frames, Generator)  # closed below, as a WSGI server closes it
    assert status_of(next(frames)) == "created"
    assert feed.subscribers == 0  # nothing subscribed for a stream that is only started
    lifecycle.job_started("job-1")
    assert status_of(next(frames)) == "started"
    assert feed.subscribers == 1
    frames.close()  # what a WSGI server does when the client leaves
    assert feed.subscribers == 0


def test_an_async_stream_leaves_when_closed(store: FaultyStore, feed: ChangeFeed) -> None:
    lifecycle.job_enqueued("job-1")

    async def main() -> None:
        response = await Verifier(open_endpoints=True).astream("job-1", interval=TICK)
        response.feed = feed
        frames = aiter(response)
        assert isinstance(frames, AsyncGenerator)
        assert status_of(await anext(frames)) == "created"
        lifecycle.job_started("job-1")
        assert status_of(await anext(frames)) == "started"
        assert feed.subscribers == 1
        await frames.aclose()
        assert feed.subscribers == 0

    asyncio.run(main())


def test_a_hundred_streams_opened_and_dropped_leave_nothing(
    store: FaultyStore, feed: ChangeFeed
) -> None:
    for number in range(100):
        lifecycle.job_enqueued(f"job-{number}")

    async def one(number: int) -> None:
        response = await Verifier(open_endpoints=True).astream(f"job-{number}", interval=TICK)
        response.feed = feed
        frames = aiter(response)
        assert isinstance(frames, AsyncGenerator)
        await anext(frames)
        task = asyncio.ensure_future(anext(frames))  # waits on the feed...
        await asyncio.sleep(0.01)
        task.cancel()  # ...until the client leaves and the server cancels it
        with pytest.raises(asyncio.CancelledError):
            await task
        await frames.aclose()

    async def main() -> None:
        await asyncio.gather(*(one(number) for number in range(100)))

    asyncio.run(main())
    assert feed.subscribers == 0
    assert feed.jobs == []


def test_streams_of_many_jobs_cost_one_store_read_per_poll(store: FaultyStore) -> None:
    settles = Settles()
    feed = ChangeFeed(TICK, settle=settles)
    job_ids = [f"job-{number}" for number in range(30)]
    for job_id in job_ids:
        lifecycle.job_started(job_id)

    async def follow(job_id: str) -> list[str]:
        response = await Verifier(open_endpoints=True).astream(job_id, interval=TICK)
        response.feed = feed
        seen = []
        async for frame in response:
            body = parse(frame)[1]
            assert body is not None
            seen.append(f"{body['status']} {body['progress'] and body['progress']['current']}")
        return seen

    async def main() -> list[list[str]]:
        watchers = asyncio.gather(*(follow(job_id) for job_id in job_ids))
        await asyncio.to_thread(until, lambda: feed.subscribers == 30)
        for step in (1, 2):
            later = feed.polls + 2
            for job_id in job_ids:
                lifecycle.job_progress(job_id, Progress(current=step, total=2))
            await asyncio.to_thread(until, partial(lambda after: feed.polls > after, later))
        for job_id in job_ids:
            lifecycle.job_finished(job_id)
        return await watchers

    seen = asyncio.run(main())
    for frames in seen:
        assert frames[0] == "started None"
        assert frames[-1] == "finished 2"
        assert set(frames) <= {"started None", "started 1", "started 2", "finished 2"}
    # All 30 jobs were asked in one call per poll: 30 opening reads, then one read a poll.
    assert max(len(call) for call in settles.calls) == 30
    assert store.reads <= 30 + feed.polls


# -- real servers: a client leaving -----------------------------------------------------------

LEAVING_TICK = 0.0073  # a feed of its own for these tests: feed_for(LEAVING_TICK)


def test_an_asgi_client_leaving_unsubscribes(store: FaultyStore) -> None:
    lifecycle.job_started("job-1")
    app = Starlette(routes=[immortus_routes(verifier=TracingVerifier(interval=LEAVING_TICK))])
    shared = feed_for(LEAVING_TICK)
    with (
        serve_asgi(app) as url,
        httpx.Client(base_url=f"{url}/immortus/", timeout=DEADLINE) as client,
    ):
        with client.stream("GET", "stream/job-1") as response:
            frames = frames_of(response)
            assert next(frames)[1]["status"] == "started"  # type: ignore[index]
            until(lambda: shared.subscribers == 1)
        until(lambda: shared.subscribers == 0)
        until(lambda: not shared.running)


def test_a_wsgi_client_leaving_unsubscribes(store: FaultyStore) -> None:
    lifecycle.job_started("job-1")
    app = Flask(__name__)
    verifier = TracingVerifier(interval=LEAVING_TICK, heartbeat=0.01)
    app.register_blueprint(immortus_blueprint(verifier=verifier))
    shared = feed_for(LEAVING_TICK)
    with (
        serve_werkzeug(app) as url,
        httpx.Client(base_url=f"{url}/immortus/", timeout=DEADLINE) as client,
    ):
        with client.stream("GET", "stream/job-1") as response:
            frames = frames_of(response)
            assert next(frames)[1]["status"] == "started"  # type: ignore[index]
            assert next(frames)[0] == "comment"  # subscribed: the heartbeat comes from the wait
            assert shared.subscribers == 1
        # The server notices at its next write (a heartbeat) and closes the generator.
        until(lambda: shared.subscribers == 0)
        until(lambda: not shared.running)


# -- fork ------------------------------------------------------------------------------------


def test_a_forked_child_starts_with_a_fresh_feed(tmp_path: Any) -> None:
    """The parent follows a job; the forked child gets an empty feed that works on its own."""
    script = textwrap.dedent(
        f"""
        import os, sys, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with a thread running
        import immortus
        from immortus import lifecycle
        from immortus.web.feed import feed_for

        immortus.configure(store="sqlite:///{tmp_path / "jobs.sqlite3"}", progress_interval=0)
        lifecycle.job_enqueued("job-1")
        feed = feed_for(0.01)
        parent = feed.subscribe("job-1")
        assert parent.next_change(10) and feed.running
        pid = os.fork()
        if pid == 0:
            assert feed.subscribers == 0 and not feed.running, "the parent's feed leaked"
            with feed.subscribe("job-1") as child:
                assert feed.running
                assert child.next_change(10)
                lifecycle.job_started("job-1")
                state = child.take().state.value
                while state != "started":
                    assert child.next_change(10)
                    state = child.take().state.value
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert feed.subscribers == 1 and feed.running
        parent.close()
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
