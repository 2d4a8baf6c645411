"""The Redis store on a real Redis Cluster: the whole store contract, its keys' slot, a failover.

The cluster (:mod:`devservices.redis_cluster`) has three primaries and a replica each, on
loopback. "Acknowledged" below means what a store made with ``replicas=1`` promises: its
``record`` returned, so a replica held the write (``WAIT``) before it did.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Protocol

import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot

from devservices.processes import wait_until
from devservices.redis_cluster import RedisClusterServer
from immortus import outbox
from immortus.exceptions import ConfigurationError, InvalidStoreURL, StoreUnavailable
from immortus.status import Progress, State
from immortus.stores import open_store
from immortus.stores.base import DEFAULT_TTL
from immortus.stores.redis import RedisStore
from immortus.transitions import EventKind
from tests.services import free_port
from tests.stores.contract import OpenStore, PersistentStoreContract, event, known
from tests.stores.contract_counts import CountsContract
from tests.stores.contract_groups import GroupsContract
from tests.stores.contract_history import PersistentHistoryContract
from tests.stores.test_redis import opened_stores  # noqa: F401  # the ``stores`` fixture

#: Generous bound while waiting for an outcome (a failover, a replay); never a timing claim.
TIMEOUT = 60.0


class MakeStore(Protocol):
    def __call__(
        self,
        *,
        ttl: float | timedelta | None = DEFAULT_TTL,
        prefix: str | None = None,
        replicas: int = 0,
    ) -> RedisStore: ...


@pytest.fixture
def make(redis_cluster_url: str, stores: list[RedisStore]) -> MakeStore:
    def make(
        *,
        ttl: float | timedelta | None = DEFAULT_TTL,
        prefix: str | None = None,
        replicas: int = 0,
    ) -> RedisStore:
        store = RedisStore(redis_cluster_url, ttl=ttl, prefix=prefix, replicas=replicas)
        stores.append(store)
        return store

    return make


@pytest.fixture
def cluster_client(redis_cluster_url: str) -> Iterator[RedisCluster]:
    plain = redis_cluster_url.replace("redis+cluster://", "redis://", 1)
    with RedisCluster.from_url(plain, decode_responses=True) as client:
        yield client


class TestRedisClusterStore(
    PersistentStoreContract, PersistentHistoryContract, CountsContract, GroupsContract
):
    @pytest.fixture
    def open_store(self, make: MakeStore) -> OpenStore:
        return make


def test_every_key_of_a_store_lives_in_the_slot_of_its_hash_tag(
    make: MakeStore, redis_cluster: RedisClusterServer
) -> None:
    store = make()
    assert store.prefix == "{immortus}:"
    for job_id in ("a", "b{x}", "c"):
        store.record(event(EventKind.STARTED, job_id, job_class="reports.build"))
        store.record(event(EventKind.FINISHED, job_id))
    store.request_cancel("c")
    store.prune()
    keys: dict[str, set[str]] = {}
    for node in redis_cluster.nodes:
        with node.client() as client:
            if client.execute_command("ROLE")[0] == "master":
                keys[node.address] = set(client.scan_iter())
    stored = {address: found for address, found in keys.items() if found}
    assert list(stored) == [redis_cluster.primary_for("{immortus}:jobs").address]
    (found,) = stored.values()
    assert {"{immortus}:job:a", "{immortus}:job:b{x}", "{immortus}:jobs"} <= found
    assert {key_slot(key.encode()) for key in found} == {key_slot(b"immortus")}


def test_stores_under_other_tags_spread_over_the_cluster(
    make: MakeStore, redis_cluster: RedisClusterServer
) -> None:
    tags = ["{a}:", "{b}:", "{c}:"]  # slots 15495, 3300 and 7365: one per primary
    assert len({redis_cluster.primary_for(tag).address for tag in tags}) == 3
    first, second, _ = (make(prefix=tag) for tag in tags)
    first.record(event(EventKind.FINISHED, "mine"))
    assert second.get("mine") is None
    assert known(first, "mine").state is State.FINISHED


def test_a_prefix_without_a_hash_tag_is_refused(
    redis_cluster_url: str, cluster_client: RedisCluster
) -> None:
    for prefix in ("app:", "{}:", "{app:"):
        with pytest.raises(InvalidStoreURL, match="hash tag"):
            RedisStore(redis_cluster_url, prefix=prefix)
        with pytest.raises(ConfigurationError, match="hash tag"):
            RedisStore(cluster_client, prefix=prefix)
    given = RedisStore(cluster_client, prefix="{app}:")
    given.record(event(EventKind.ENQUEUED))
    given.close()  # a given client is left open
    assert cluster_client.hget("{app}:job:job-1", "state") == "created"


def test_open_store_reads_the_prefix_and_replicas_from_the_url(redis_cluster_url: str) -> None:
    store = open_store(f"{redis_cluster_url}/?prefix=%7Bmine%7D:&replicas=1", ttl=30)
    try:
        assert isinstance(store, RedisStore)
        assert (store.prefix, store.replicas, store.ttl) == ("{mine}:", 1, 30)
        assert store.location.startswith("redis+cluster:127.0.0.1:")
        assert store.location.endswith(" {mine}:")
        store.record(event(EventKind.STARTED))  # acknowledged by the replica
        assert known(store, "job-1").state is State.STARTED
    finally:
        store.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://127.0.0.1:1/3",
        "unix+cluster:///tmp/redis.sock",
        "redis+cluster://127.0.0.1:notaport",
        "redis+cluster://127.0.0.1:1/?replicas=some",
        "redis+cluster://127.0.0.1:1/?replicas=-1",
    ],
)
def test_malformed_cluster_urls(url: str) -> None:
    with pytest.raises(InvalidStoreURL):
        RedisStore.from_url(url)


def test_an_unreachable_cluster_is_unavailable_without_showing_the_password() -> None:
    url = f"redis+cluster://user:hunter2-secret@127.0.0.1:{free_port()}"
    with pytest.raises(StoreUnavailable) as caught:
        open_store(url)
    assert "hunter2" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)


def test_writes_are_pushed_to_a_watcher(make: MakeStore) -> None:
    store = make()
    source = store.change_source()
    woken = threading.Event()
    watch = source.watch(woken.set)
    assert watch is not None
    try:
        assert wait_until(lambda: watch.live, TIMEOUT)
        cursor, _ = source.changes_since(None)
        woken.clear()
        store.record(event(EventKind.STARTED, "pushed"))
        assert woken.wait(TIMEOUT)
        assert source.changes_since(cursor) == (cursor + 1, frozenset({"pushed"}))
    finally:
        watch.close()


def test_a_plain_server_takes_the_same_url_options_and_cannot_acknowledge_alone(
    redis_url: str,
) -> None:
    store = open_store(f"{redis_url}?prefix=mine:&replicas=1")
    try:
        assert isinstance(store, RedisStore)
        assert (store.prefix, store.replicas) == ("mine:", 1)
        with pytest.raises(StoreUnavailable, match="0 of 1 replicas"):  # the server has none
            store.record(event(EventKind.STARTED))
        assert known(store, "job-1").state is State.STARTED  # written, but not acknowledged
    finally:
        store.close()


def test_a_failover_loses_no_acknowledged_write_and_the_store_follows_it(
    make: MakeStore, redis_cluster: RedisClusterServer
) -> None:
    store = make(replicas=1)
    primary = redis_cluster.primary_for("{immortus}:jobs")
    acknowledged: dict[str, State] = {}
    for number in range(60):
        job_id = f"acked-{number}"
        store.record(event(EventKind.STARTED, job_id, job_class="c"))
        if number % 2:
            store.record(event(EventKind.FINISHED, job_id))
        acknowledged[job_id] = State.FINISHED if number % 2 else State.STARTED
    redis_cluster.kill_node(primary)
    with pytest.raises(StoreUnavailable):  # nobody serves the slot until the replica takes over
        store.record(event(EventKind.STARTED, "during"))
    promoted = redis_cluster.wait_for_failover(primary, "{immortus}:jobs")
    assert promoted is not primary
    # The same store object reads every acknowledged write from the promoted replica.
    assert wait_until(lambda: _reads(store), TIMEOUT)
    found = store.get_many(list(acknowledged))
    assert {job_id: status.state for job_id, status in found.items()} == acknowledged
    # Alone, the new primary cannot acknowledge: the write lands but is reported unsafe.
    with pytest.raises(StoreUnavailable, match="0 of 1 replicas"):
        store.record(event(EventKind.STARTED, "alone"))
    redis_cluster.start_node(primary)  # comes back as the replica of its successor
    redis_cluster.wait_until_healthy()
    assert redis_cluster.replicas_of(promoted) == [primary]
    assert store.record(event(EventKind.FINISHED, "alone")) is not None
    assert known(store, "alone").state is State.FINISHED
    with primary.client() as replica:  # reading a replica takes READONLY
        assert replica.execute_command("READONLY")
        assert replica.hget("{immortus}:job:alone", "state") == "finished"


def _reads(store: RedisStore) -> bool:
    try:
        store.get("acked-0")
    except StoreUnavailable:
        return False
    return True


def test_events_held_while_the_primary_is_down_are_written_after_the_failover(
    make: MakeStore, redis_cluster: RedisClusterServer
) -> None:
    store = make()
    outbox.record(store, event(EventKind.ENQUEUED, "held", job_class="c"))
    primary = redis_cluster.primary_for("{immortus}:jobs")
    redis_cluster.kill_node(primary)
    try:
        outbox.record(store, event(EventKind.STARTED, "held"))  # held: nobody serves the slot
        outbox.record(store, event(EventKind.PROGRESS, "held", progress=Progress(current=1)))
        outbox.record(store, event(EventKind.FINISHED, "held"))
        assert outbox.stats().buffered >= 1
        assert outbox.flush(TIMEOUT), "the outbox still holds events after the failover"
        assert known(store, "held").state is State.FINISHED
        assert redis_cluster.primary_for("{immortus}:jobs") is not primary
    finally:
        redis_cluster.start_node(primary)
