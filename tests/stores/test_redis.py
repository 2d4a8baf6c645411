from __future__ import annotations

import multiprocessing
import threading
import time
import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import pytest
import redis

import immortus.stores.redis as redis_module
from immortus.exceptions import (
    ConfigurationError,
    CorruptRecord,
    InvalidStoreURL,
    StoreUnavailable,
)
from immortus.status import Progress, State
from immortus.stores import open_store
from immortus.stores.base import DEFAULT_TTL
from immortus.stores.redis import RedisStore
from immortus.transitions import EventKind
from tests.services import RedisServer, free_port
from tests.stores.contract import OpenStore, PersistentStoreContract, event, known
from tests.stores.contract_counts import CountsContract, recount
from tests.stores.contract_groups import GroupsContract
from tests.stores.contract_history import PersistentHistoryContract
from tests.support import import_error_without


class MakeStore(Protocol):
    def __call__(
        self, *, ttl: float | timedelta | None = DEFAULT_TTL, prefix: str = "immortus:"
    ) -> RedisStore: ...


@pytest.fixture(name="stores")
def opened_stores() -> Iterator[list[RedisStore]]:
    """Stores a test opened, closed when it ends (the contract does not close them all)."""
    opened: list[RedisStore] = []
    yield opened
    for store in opened:
        store.close()


@pytest.fixture
def make(redis_url: str, stores: list[RedisStore]) -> MakeStore:
    def make(
        *, ttl: float | timedelta | None = DEFAULT_TTL, prefix: str = "immortus:"
    ) -> RedisStore:
        store = RedisStore(redis_url, ttl=ttl, prefix=prefix)
        stores.append(store)
        return store

    return make


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url, decode_responses=True) as raw:
        yield raw


class TestRedisStore(
    PersistentStoreContract, PersistentHistoryContract, CountsContract, GroupsContract
):
    @pytest.fixture
    def open_store(self, make: MakeStore) -> OpenStore:
        return make


def ids_of(store: RedisStore, *, limit: int, state: State | None = None) -> list[str]:
    """Walk every page of the listing and return the ids in the order they came."""
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = store.list_jobs(state=state, limit=limit, cursor=cursor)
        assert len(page.jobs) == limit or page.next_cursor is None
        seen.extend(status.job_id for status in page.jobs)
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every job the store creates from now on is first seen at the same instant."""
    clock = types.SimpleNamespace(time=lambda: 1_800_000_000.25, sleep=time.sleep)
    monkeypatch.setattr(redis_module, "time", clock)


def test_key_layout(make: MakeStore, client: redis.Redis) -> None:
    store = make(ttl=60)
    store.record(event(EventKind.STARTED, "j1", job_class="reports.build"))
    row = client.hgetall("immortus:job:j1")
    assert row["state"] == "started"
    assert row["job_class"] == "reports.build"
    assert "error_type" not in row  # empty fields are left out
    assert float(row["expires"]) == pytest.approx(time.time() + 60, abs=5)
    created = float(row["created"])
    assert client.zscore("immortus:jobs", "j1") == created
    assert client.zscore("immortus:state:started", "j1") == created
    store.record(event(EventKind.PROGRESS, "j1", progress=Progress(current=1)))
    assert "progress_current" in client.hgetall("immortus:job:j1")
    store.record(event(EventKind.RETRYING, "j1"))
    assert "progress_current" in client.hgetall("immortus:job:j1")
    store.record(event(EventKind.STARTED, "j1"))  # a new attempt clears the progress
    assert "progress_current" not in client.hgetall("immortus:job:j1")
    store.record(event(EventKind.FINISHED, "j1"))
    assert client.zscore("immortus:state:finished", "j1") == created
    for state in State:
        if state is not State.FINISHED:
            assert client.zscore(f"immortus:state:{state}", "j1") is None
    assert client.pttl("immortus:jobs") == -1  # indexes never expire


def test_ttl_is_the_hash_pttl(make: MakeStore, client: redis.Redis) -> None:
    make(ttl=60).record(event(EventKind.ENQUEUED, "short"))
    assert 55_000 < client.pttl("immortus:job:short") <= 60_600  # ttl, rounded up by <= 1 %
    make(ttl=None).record(event(EventKind.ENQUEUED, "forever"))
    assert client.pttl("immortus:job:forever") == -1
    assert "expires" not in client.hgetall("immortus:job:forever")
    make(ttl=None).record(event(EventKind.STARTED, "short"))  # ttl=None clears an old expiry
    assert client.pttl("immortus:job:short") == -1
    assert "expires" not in client.hgetall("immortus:job:short")


def test_a_beat_writes_the_lease_field_and_resets_the_pttl(
    make: MakeStore, client: redis.Redis
) -> None:
    store = make(ttl=60)
    alive_until = datetime.now(UTC) + timedelta(seconds=30)
    store.record(event(EventKind.STARTED, "j1", alive_until=alive_until))
    assert float(client.hgetall("immortus:job:j1")["alive_until"]) == alive_until.timestamp()
    client.pexpire("immortus:job:j1", 5_000)
    later = alive_until + timedelta(seconds=30)
    assert store.beat(["j1", "missing"], later) == 1
    row = client.hgetall("immortus:job:j1")
    assert float(row["alive_until"]) == later.timestamp()
    assert float(row["expires"]) == pytest.approx(time.time() + 60, abs=5)
    assert 55_000 < client.pttl("immortus:job:j1") <= 60_600
    assert not client.exists("immortus:job:missing")  # never created by a beat
    make(ttl=None).beat(["j1"], later)  # a store without TTL keeps it for good
    assert client.pttl("immortus:job:j1") == -1
    assert "expires" not in client.hgetall("immortus:job:j1")
    store.record(event(EventKind.FINISHED, "j1"))
    assert "alive_until" not in client.hgetall("immortus:job:j1")  # an ended job has no lease
    assert client.zscore("immortus:state:finished", "j1") is not None


def test_reaping_moves_the_job_between_state_sets(make: MakeStore, client: redis.Redis) -> None:
    store = make()
    store.record(event(EventKind.STARTED, "j1", alive_until=datetime.now(UTC)))
    assert client.zscore("immortus:state:started", "j1") is not None  # presumed lost only
    assert store.reap_lost() == 1
    assert client.zscore("immortus:state:started", "j1") is None
    assert client.zscore("immortus:state:lost", "j1") is not None


@pytest.mark.usefixtures("frozen_clock")
def test_many_jobs_with_one_created_time_page_exactly(make: MakeStore) -> None:
    store = make()
    ids = [f"same-{(index * 37) % 101:03d}" for index in range(101)]  # shuffled on purpose
    for job_id in ids:
        store.record(event(EventKind.ENQUEUED, job_id))
        if job_id.endswith(("1", "5")):
            store.record(event(EventKind.STARTED, job_id))
    newest_first = sorted(ids, reverse=True)
    for limit in (1, 5, 7, 100, 101, 1000):
        assert ids_of(store, limit=limit) == newest_first
    started = [job_id for job_id in newest_first if job_id.endswith(("1", "5"))]
    assert ids_of(store, limit=3, state=State.STARTED) == started
    # The lost listing merges two sets with one created time: lost ones and lapsed leases.
    lost = started[::2]
    for job_id in lost[::2]:
        store.record(event(EventKind.LOST, job_id))
    store.beat(lost[1::2], datetime.now(UTC) - timedelta(seconds=1))
    for limit in (1, 2, 3, 100):
        assert ids_of(store, limit=limit, state=State.LOST) == lost
    assert ids_of(store, limit=2, state=State.STARTED) == started[1::2]


@pytest.mark.usefixtures("frozen_clock")
def test_paging_resumes_when_the_cursors_job_is_gone(make: MakeStore, client: redis.Redis) -> None:
    store = make()
    ids = [f"k{index:02d}" for index in range(30)]
    for job_id in ids:
        store.record(event(EventKind.ENQUEUED, job_id))
    first = store.list_jobs(limit=10)
    assert [status.job_id for status in first.jobs] == sorted(ids, reverse=True)[:10]
    client.delete("immortus:job:k20")  # the cursor's job expires and is pruned
    assert store.prune() == 1
    rest = store.list_jobs(limit=50, cursor=first.next_cursor)
    assert [status.job_id for status in rest.jobs] == sorted(ids, reverse=True)[10:]


def test_expired_index_members_are_skipped_and_pages_stay_full(
    make: MakeStore, client: redis.Redis
) -> None:
    store = make()
    ids = [f"e{index:02d}" for index in range(12)]
    for job_id in ids:
        store.record(event(EventKind.ENQUEUED, job_id))
    for job_id in ids[2:10]:  # Redis expires these hashes; their index members stay behind
        client.delete(f"immortus:job:{job_id}")
    page = store.list_jobs(limit=3)
    assert [status.job_id for status in page.jobs] == ["e11", "e10", "e01"]
    assert page.next_cursor is not None
    rest = store.list_jobs(limit=3, cursor=page.next_cursor)
    assert ([status.job_id for status in rest.jobs], rest.next_cursor) == (["e00"], None)
    assert client.zcard("immortus:jobs") == 4  # the listing dropped what it skipped
    assert client.zcard("immortus:state:created") == 4


def test_prune_counts_what_redis_expired(make: MakeStore, client: redis.Redis) -> None:
    store = make(ttl=0.05)
    for index in range(3):
        store.record(event(EventKind.STARTED, f"p{index}"))
    time.sleep(0.2)
    assert client.zcard("immortus:jobs") == 3
    assert store.prune() == 3
    assert client.zcard("immortus:jobs") == 0
    assert client.zcard("immortus:state:started") == 0
    assert client.zcard("immortus:changes") == 0  # pruned ids leave the changes set too


def test_groups_forget_members_redis_expired(make: MakeStore, client: redis.Redis) -> None:
    store = make(ttl=0.05)
    for index in range(3):
        store.record(event(EventKind.STARTED, f"p{index}", group_id="g"))
    store.record(event(EventKind.STARTED, "q", group_id="h"))
    time.sleep(0.2)
    assert client.hgetall("immortus:group:g")["started"] == "3"  # counted as stored: not pruned
    store.record(event(EventKind.ENQUEUED, "q"))  # a new life of "q", in no group
    assert store.group("h") is None
    assert client.exists("immortus:group:h") == 0
    assert store.prune() == 3
    assert store.group("g") is None
    assert client.exists("immortus:group:g") == 0
    assert client.hkeys("immortus:grouped") == []


def test_a_group_read_is_one_hgetall_at_any_size(make: MakeStore, client: redis.Redis) -> None:
    store = make()

    def calls() -> dict[str, int]:
        stats = client.info("commandstats")
        return {name: int(value["calls"]) for name, value in stats.items()}

    for size in (1, 300):
        for n in range(size):
            store.record(event(EventKind.STARTED, f"{size}-{n}", group_id=f"g{size}"))
        before = calls()
        answer = store.group(f"g{size}")
        after = calls()
        assert answer is not None
        assert answer.total == size
        changed = {name: after[name] - before.get(name, 0) for name in after}
        assert {name: n for name, n in changed.items() if n and name != "cmdstat_info"} == {
            "cmdstat_hgetall": 1
        }


def test_changes_are_numbered_inside_the_write_transaction(
    make: MakeStore, client: redis.Redis
) -> None:
    store = make()
    cursor, _ = store.changes_since(None)
    store.record(event(EventKind.STARTED, "numbered"))
    assert client.get("immortus:seq") == str(cursor + 1)
    assert client.zscore("immortus:changes", "numbered") == cursor + 1
    assert store.beat(["numbered"], datetime.now(UTC) + timedelta(hours=1)) == 1
    assert store.changes_since(cursor) == (cursor + 1, frozenset({"numbered"}))
    assert store.changes_since(cursor + 1) == (cursor + 1, frozenset())  # a beat is no change


def test_a_cursor_past_the_counter_means_assume_everything_changed(
    make: MakeStore, client: redis.Redis
) -> None:
    store = make()
    store.record(event(EventKind.STARTED, "flushed"))
    cursor, _ = store.changes_since(None)
    client.delete("immortus:seq", "immortus:changes")  # as a flushed or restarted server
    assert store.changes_since(cursor) == (0, None)


def test_prune_keeps_a_job_recorded_again(make: MakeStore) -> None:
    store = make(ttl=3600)
    store.record(event(EventKind.STARTED, "again"))
    later = datetime.now(UTC) + timedelta(minutes=30)
    assert store.prune(now=later) == 0
    assert known(store, "again").state is State.STARTED


def test_prefix_isolates_stores_on_one_database(make: MakeStore) -> None:
    first, second = make(prefix="app1:"), make(prefix="app2:")
    first.record(event(EventKind.FINISHED, "mine"))
    assert second.get("mine") is None
    assert second.list_jobs().jobs == ()
    assert second.prune(now=datetime.now(UTC) + timedelta(days=30)) == 0
    assert known(first, "mine").state is State.FINISHED


def test_hammering_one_job_from_eight_clients(make: MakeStore) -> None:
    workers = 8
    make().record(event(EventKind.STARTED))
    clients = [make() for _ in range(workers + 1)]
    barrier = threading.Barrier(workers + 1)
    errors: list[BaseException] = []

    def report(store: RedisStore, offset: int) -> None:
        try:
            barrier.wait()
            for step in range(offset, 400, workers):
                store.record(event(EventKind.PROGRESS, progress=Progress(current=step)))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [
        threading.Thread(target=report, args=(clients[index], index)) for index in range(workers)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    time.sleep(0.01)
    clients[-1].record(event(EventKind.FINISHED))
    for thread in threads:
        thread.join()
    assert errors == []
    assert known(clients[-1], "job-1").state is State.FINISHED


def test_corrupt_records_raise_corrupt_record(make: MakeStore, client: redis.Redis) -> None:
    store = make()
    client.hset("immortus:job:bad", mapping={"job_id": "bad", "state": "bogus", "created": 1})
    client.zadd("immortus:jobs", {"bad": 1})
    with pytest.raises(CorruptRecord):
        store.get("bad")
    with pytest.raises(CorruptRecord):
        store.get_many(["bad"])
    with pytest.raises(CorruptRecord):
        store.list_jobs()
    with pytest.raises(CorruptRecord):
        store.record(event(EventKind.FINISHED, "bad"))
    client.set("immortus:job:string", "not a hash")
    with pytest.raises(CorruptRecord):
        store.get("string")


@pytest.mark.parametrize("outage", ["stop", "kill"])
def test_redis_going_away_and_coming_back(
    make: MakeStore, redis_server: RedisServer, outage: str
) -> None:
    store = make()
    store.record(event(EventKind.STARTED, "before"))
    getattr(redis_server, outage)()
    try:
        started = time.monotonic()
        for call in (
            lambda: store.record(event(EventKind.FINISHED, "before")),
            lambda: store.get("before"),
            lambda: store.get_many(["before", "other"]),
            store.list_jobs,
            store.prune,
        ):
            with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{redis_server.port}"):
                call()
        assert time.monotonic() - started < 5
    finally:
        redis_server.start()
    store.record(event(EventKind.FINISHED, "after"))  # the server restarted empty
    assert known(store, "after").state is State.FINISHED
    assert [status.job_id for status in store.list_jobs().jobs] == ["after"]


def test_unreachable_server_never_shows_the_password(stores: list[RedisStore]) -> None:
    port = free_port()
    store = RedisStore(f"redis://user:hunter2-secret@127.0.0.1:{port}/0")
    stores.append(store)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        store.get("job-1")
    assert time.monotonic() - started < 5
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_missing_unix_socket_is_unavailable(tmp_path: Path, stores: list[RedisStore]) -> None:
    socket_path = tmp_path / "redis.sock"
    store = open_store(f"unix://{socket_path}")
    assert isinstance(store, RedisStore)
    stores.append(store)
    with pytest.raises(StoreUnavailable, match=r"redis\.sock"):
        store.list_jobs()


def test_wrong_password_is_unavailable_without_showing_it(
    redis_server: RedisServer, stores: list[RedisStore]
) -> None:
    url = redis_server.url.replace("redis://", "redis://nobody:hunter2-secret@")
    store = RedisStore(url)
    stores.append(store)
    with pytest.raises(StoreUnavailable) as caught:
        store.record(event(EventKind.STARTED))
    assert "hunter2" not in str(caught.value)


def test_open_store_routes_redis_urls(redis_url: str) -> None:
    store = open_store(redis_url, ttl=30)
    try:
        assert isinstance(store, RedisStore)
        assert store.ttl == 30
    finally:
        store.close()


@pytest.mark.parametrize(
    "url", ["redis://localhost:notaport/0", "redis://h/0?db=zero", "redis://h/0?colour=red"]
)
def test_malformed_url(url: str) -> None:
    with pytest.raises(InvalidStoreURL):
        RedisStore.from_url(url)


def test_a_given_client_is_used_and_left_open(redis_url: str, client: redis.Redis) -> None:
    store = RedisStore(client, prefix="own:")
    store.record(event(EventKind.ENQUEUED))
    store.close()
    assert client.hget("own:job:job-1", "state") == "created"
    with (
        redis.Redis.from_url(redis_url) as raw_bytes,
        pytest.raises(ConfigurationError, match="decode_responses"),
    ):
        RedisStore(raw_bytes)


def test_missing_driver_names_the_extra() -> None:
    error = import_error_without("immortus.stores.redis", "redis")
    assert error.startswith("MissingDependency: ")
    assert 'pip install "immortus[redis]"' in error


def test_jobs_written_before_the_counters_are_counted_once(
    make: MakeStore, client: redis.Redis
) -> None:
    old = make(prefix="old:")
    for job_id in ("a", "b"):
        old.record(event(EventKind.STARTED, job_id, job_class="c"))
    old.record(event(EventKind.FINISHED, "b"))
    client.delete("old:counted", "old:counts", "old:ended", "old:durations")  # as before them
    since = datetime.now(UTC) - timedelta(hours=1)
    store = make(prefix="old:")
    expected = {("c", State.STARTED): 1, ("c", State.FINISHED): 1}
    assert store.tally(since=since).jobs == expected
    store.record(event(EventKind.FINISHED, "a"))
    assert make(prefix="old:").tally(since=since).jobs == {("c", State.FINISHED): 2}


def _write_jobs(url: str, worker: int) -> None:
    """Run in a spawned process: walk 20 jobs of its own and one shared job through their lives."""
    store = RedisStore(url)
    try:
        for number in range(20):
            for kind in (EventKind.ENQUEUED, EventKind.STARTED, EventKind.FINISHED):
                store.record(event(kind, f"p{worker}-{number}", job_class="c"))
                store.record(event(kind, "shared", job_class="c", attempt=1))
    finally:
        store.close()


@pytest.mark.slow
def test_writers_in_several_processes_never_double_count(make: MakeStore, redis_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_jobs, args=(redis_url, n)) for n in range(3)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=60)
    assert [process.exitcode for process in workers] == [0, 0, 0]
    store = make()
    assert (
        store.tally(since=datetime.now(UTC)).jobs == recount(store) == {("c", State.FINISHED): 61}
    )
