"""Push: a store's write wakes its change source's watchers (Redis pub/sub, PostgreSQL LISTEN).

Real servers throughout; the subscription connection is killed on the server (``CLIENT KILL``,
``pg_terminate_backend``) and the server itself stopped. Each wait below polls at most once an
hour (``poll=3600``), so a change seen within the deadline was pushed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator

import pytest
import redis
import sqlalchemy as sa

from devservices import RedisServer
from immortus.status import Progress
from immortus.stores.base import Store
from immortus.stores.memory import MemoryStore
from immortus.stores.notify import Listener, PollingSource
from immortus.stores.redis import RedisStore
from immortus.stores.sql import SQLStore
from immortus.strategy import ChangeSource
from immortus.transitions import EventKind
from tests.services.base import wait_until
from tests.stores.contract import event

#: Generous: the machine may be loaded. Far below the hour a source would wait to poll.
DEADLINE = 10.0
NEVER = 3600.0


def listener_of(source: ChangeSource) -> Listener[object]:
    listener = getattr(source, "listener", None)
    assert isinstance(listener, Listener)
    return listener


@pytest.fixture(params=["redis", "postgres"])
def url(request: pytest.FixtureRequest) -> str:
    """The URL of an empty Redis database or PostgreSQL schema."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    opened: Store = RedisStore(url) if url.startswith("redis") else SQLStore(url)
    yield opened
    opened.close()


def kill_subscription(store: Store, url: str) -> None:
    """Kill the listener's connection on the server, as a failover or an admin would."""
    if isinstance(store, RedisStore):
        with redis.Redis.from_url(url) as client:
            assert int(client.client_kill_filter(_type="pubsub")) >= 1
        return
    assert isinstance(store, SQLStore)
    with store.engine.connect() as conn:
        killed = conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
            )
        ).all()
    assert killed


def written(store: Store, job_id: str, current: float = 1.0) -> None:
    store.record(event(EventKind.PROGRESS, job_id, progress=Progress(current=current)))


def waits_for(source: ChangeSource, cursor: int, job_id: str) -> int:
    """Wait (no polling) until ``source`` names ``job_id`` after ``cursor``; return the cursor."""
    later, changed = source.wait(cursor, DEADLINE, poll=NEVER)
    assert changed is None or job_id in changed, f"{source!r} was not woken by {job_id}"
    return later


def test_a_write_wakes_a_waiting_source(store: Store) -> None:
    store.record(event(EventKind.STARTED, "job-1"))
    source = store.change_source()
    assert source is store.change_source()  # one per store: watchers share it
    woken = threading.Event()
    watch = source.watch(woken.set)
    assert watch is not None
    try:
        assert wait_until(lambda: watch.live, timeout=DEADLINE)
        cursor, _ = source.changes_since(None)
        woken.clear()
        writer = threading.Timer(0.05, written, (store, "job-1"))
        writer.start()
        assert woken.wait(DEADLINE)
        writer.join()
        assert waits_for(source, cursor, "job-1") > cursor
    finally:
        watch.close()
    assert wait_until(lambda: not listener_of(source).running, timeout=DEADLINE)  # nobody watches


def test_a_killed_subscription_is_polled_meanwhile_and_comes_back(store: Store, url: str) -> None:
    store.record(event(EventKind.STARTED, "job-1"))
    source = store.change_source()
    listener = listener_of(source)
    woken = threading.Event()
    watch = source.watch(woken.set)
    assert watch is not None
    try:
        assert wait_until(lambda: watch.live, timeout=DEADLINE)
        subscriptions = listener.subscriptions
        cursor, _ = source.changes_since(None)
        kill_subscription(store, url)
        written(store, "job-1", 2.0)  # perhaps while nobody listens: not missed
        _, changed = source.wait(cursor, DEADLINE, poll=0.01)
        assert changed is None or "job-1" in changed
        assert wait_until(lambda: listener.subscriptions > subscriptions and watch.live, DEADLINE)
        cursor, _ = source.changes_since(None)
        written(store, "job-1", 3.0)
        waits_for(source, cursor, "job-1")  # pushed again
    finally:
        watch.close()


def test_a_server_down_and_back(redis_server: RedisServer, redis_url: str) -> None:
    store = RedisStore(redis_url)
    try:
        store.record(event(EventKind.STARTED, "job-1"))
        source = store.change_source()
        listener = listener_of(source)
        watch = source.watch(lambda: None)
        assert watch is not None
        try:
            assert wait_until(lambda: watch.live, timeout=DEADLINE)
            subscriptions = listener.subscriptions
            redis_server.stop()
            assert wait_until(lambda: not watch.live, timeout=DEADLINE)
            redis_server.start()
            assert wait_until(
                lambda: watch.live and listener.subscriptions > subscriptions, DEADLINE
            )
            cursor, _ = source.changes_since(None)
            written(store, "job-1")
            waits_for(source, cursor, "job-1")
        finally:
            watch.close()
    finally:
        store.close()


@pytest.mark.parametrize("make", [MemoryStore])
def test_stores_without_push_are_polled(make: Callable[[], Store]) -> None:
    store = make()
    source = store.change_source()
    assert isinstance(source, PollingSource)
    assert source.watch(lambda: None) is None
    cursor, _ = source.changes_since(None)
    written(store, "job-1")
    assert source.wait(cursor, DEADLINE, poll=0.01)[1] == frozenset({"job-1"})


def test_a_forked_child_holds_no_subscription_until_it_watches(redis_url: str) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with a thread running
        from tests.services.base import wait_until
        from immortus.stores.redis import RedisStore

        store = RedisStore({redis_url!r})
        source = store.change_source()
        watch = source.watch(lambda: None)
        assert wait_until(lambda: watch.live, timeout=10)
        pid = os.fork()
        if pid == 0:
            listener = source.listener
            assert not listener.running and not listener.live, "the parent's listener leaked"
            assert listener.subscriptions == 0
            mine = source.watch(lambda: None)
            assert wait_until(lambda: mine.live, timeout=10)
            mine.close()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert watch.live
        watch.close()
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
