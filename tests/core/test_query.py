from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

import immortus
from immortus import JobStatus, State, TrackingStrategy, lifecycle, query
from immortus.exceptions import (
    InvalidJobClass,
    InvalidJobId,
    InvalidStrategy,
    StoreUnavailable,
    StrategyError,
    StrategyNotFound,
)
from immortus.store_strategy import StoreStrategy
from immortus.stores.memory import MemoryStore


class CountingStore(MemoryStore):
    """A memory store that counts its reads, and can be switched off."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0
        self.get_manys: list[list[str]] = []
        self.down = False

    def get(self, job_id: str) -> JobStatus | None:
        self.gets += 1
        return super().get(job_id)

    def get_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        if self.down:
            raise StoreUnavailable("memory store switched off")
        self.get_manys.append(list(job_ids))
        return super().get_many(job_ids)


class Fixed(TrackingStrategy):
    """Answers ``started`` for everything, one status() call per id."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def status(self, job_id: str) -> JobStatus:
        self.asked.append(job_id)
        return JobStatus(job_id=job_id, state=State.STARTED)

    def meta(self, job_id: str) -> dict[str, str]:
        return {"by": "fixed", "status": "overridden?"}


class Broken(TrackingStrategy):
    def status(self, job_id: str) -> JobStatus:
        raise RuntimeError("secret host db-7.internal refused")


@pytest.fixture
def store() -> CountingStore:
    store = CountingStore()
    immortus.configure(store=store)
    return store


def test_answers_in_input_order_with_one_store_read(store: CountingStore) -> None:
    @immortus.track(name="jobs.a")
    def a() -> None: ...

    lifecycle.job_enqueued("one", "jobs.a")
    lifecycle.job_started("two")
    answers = immortus.status_many(
        [("two", None), ("missing", "jobs.a"), ("one", "jobs.a"), ("two", "jobs.a")]
    )
    assert [(s.job_id, s.state) for s in answers] == [
        ("two", State.STARTED),
        ("missing", State.UNKNOWN),
        ("one", State.CREATED),
        ("two", State.STARTED),
    ]
    assert answers[1].job_class == "jobs.a"  # filled in from the request, as status() does
    assert answers[3].job_class == "jobs.a"
    assert store.get_manys == [["two", "missing", "one"]]
    assert store.gets == 0
    assert immortus.status_many([]) == []


def test_each_answer_is_what_status_would_give(store: CountingStore) -> None:
    immortus.register_strategy("fixed", Fixed())

    @immortus.track(name="jobs.fixed", strategy="fixed")
    def fixed() -> None: ...

    lifecycle.job_enqueued("s1")
    items: list[tuple[str, str | None]] = [("s1", None), ("f1", "jobs.fixed"), ("x", None)]
    assert immortus.status_many(items) == [immortus.status(*item) for item in items]
    fixed_answer = immortus.status_many([("f1", "jobs.fixed")])[0]
    assert fixed_answer.meta == {"by": "fixed", "status": "overridden?"}
    assert fixed_answer.to_dict()["status"] == "started"  # reserved keys win


def test_groups_by_strategy_and_the_default_asks_status_per_id(store: CountingStore) -> None:
    strategy = Fixed()

    @immortus.track(name="jobs.one", strategy=strategy)
    def one() -> None: ...

    @immortus.track(name="jobs.two", strategy=strategy)
    def two() -> None: ...

    immortus.status_many([("a", "jobs.one"), ("b", None), ("a", "jobs.two"), ("c", "jobs.one")])
    assert strategy.asked == ["a", "c"]  # one group for both classes, each id asked once
    assert store.get_manys == [["b"]]


def test_malformed_items_are_refused_before_any_io(store: CountingStore) -> None:
    with pytest.raises(InvalidJobId):
        immortus.status_many([("ok", None), ("", None)])
    with pytest.raises(InvalidJobClass):
        immortus.status_many([("ok", None), ("ok", "has space")])
    assert store.get_manys == []


def test_errors_are_translated_as_status_does(store: CountingStore) -> None:
    @immortus.track(name="jobs.broken", strategy=Broken())
    def broken() -> None: ...

    with pytest.raises(StrategyError) as caught:
        immortus.status_many([("a", None), ("b", "jobs.broken")])
    assert isinstance(caught.value.__cause__, RuntimeError)
    store.down = True
    with pytest.raises(StoreUnavailable):
        immortus.status_many([("a", None)])
    immortus.configure(store=None)
    with pytest.raises(StrategyNotFound):
        immortus.status_many([("a", None)])


def test_settle_many_fails_only_the_group_that_failed(store: CountingStore) -> None:
    @immortus.track(name="jobs.broken", strategy=Broken())
    def broken() -> None: ...

    lifecycle.job_enqueued("a")
    answers = query.settle_many([("a", None), ("b", "jobs.broken"), ("c", "jobs.broken")])
    assert isinstance(answers[0], JobStatus)
    assert answers[0].state is State.CREATED
    assert isinstance(answers[1], StrategyError)
    assert answers[2] is answers[1]


def test_a_strategy_whose_status_many_answers_badly_is_refused(store: CountingStore) -> None:
    class Lazy(TrackingStrategy):
        def status(self, job_id: str) -> JobStatus:
            return JobStatus.unknown(job_id)

        def status_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
            return {}

    @immortus.track(name="jobs.lazy", strategy=Lazy())
    def lazy() -> None: ...

    with pytest.raises(InvalidStrategy, match="status_many"):
        immortus.status_many([("a", "jobs.lazy")])


def test_astatus_many(store: CountingStore) -> None:
    lifecycle.job_enqueued("a")
    answers = asyncio.run(immortus.astatus_many([("a", None), ("b", None)]))
    assert [s.state for s in answers] == [State.CREATED, State.UNKNOWN]


class ThreadCounter:
    """Counts the calls that went to a worker thread through ``asyncio.to_thread``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = asyncio.to_thread

        async def counted(function: Any, /, *args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await real(function, *args, **kwargs)

        monkeypatch.setattr(asyncio, "to_thread", counted)


def test_astatus_reads_a_store_that_never_waits_on_the_loop(
    store: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = ThreadCounter(monkeypatch)
    immortus.declare("jobs.x")
    lifecycle.job_started("a", "jobs.x")
    answers = asyncio.run(_both(("a", "jobs.x"), ("b", None)))
    assert [(s.state, s.job_class) for s in answers] == [
        (State.STARTED, "jobs.x"),
        (State.UNKNOWN, None),
    ]
    assert threads.calls == 0
    assert store.gets == 0  # get_nowait answered; get() was never needed


def test_astatus_goes_to_a_thread_when_the_store_is_busy(
    store: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = ThreadCounter(monkeypatch)
    lifecycle.job_started("a")
    with store._lock:
        pending = asyncio.run(_later(store, "a"))
    assert pending.state is State.STARTED
    assert threads.calls == 1
    assert store.gets == 1


def test_astatus_asks_other_strategies_and_meta_in_a_thread(
    store: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = ThreadCounter(monkeypatch)

    class WithMeta(StoreStrategy):
        def meta(self, job_id: str) -> Mapping[str, Any]:
            return {"download": f"/files/{job_id}"}

    @immortus.track(name="jobs.meta", strategy=WithMeta())
    def with_meta() -> None: ...

    @immortus.track(name="jobs.fixed", strategy=Fixed())
    def fixed() -> None: ...

    lifecycle.job_started("a", "jobs.meta")
    answers = asyncio.run(_both(("a", "jobs.meta"), ("b", "jobs.fixed")))
    assert answers[0].meta == {"download": "/files/a"}
    assert answers[1].state is State.STARTED
    assert threads.calls == 2


def test_astatus_of_a_store_that_is_down_is_unavailable(store: CountingStore) -> None:
    class Down(MemoryStore):
        def get_nowait(self, job_id: str) -> JobStatus | None:
            raise StoreUnavailable("switched off")

    immortus.configure(store=Down())
    with pytest.raises(StoreUnavailable):
        asyncio.run(immortus.astatus("a"))


async def _both(*refs: tuple[str, str | None]) -> list[JobStatus]:
    return [await immortus.astatus(job_id, job_class) for job_id, job_class in refs]


async def _later(store: CountingStore, job_id: str) -> JobStatus:
    """Ask while the test holds the store's lock; release it once the read went to a thread."""
    asking = asyncio.ensure_future(immortus.astatus(job_id))
    await asyncio.sleep(0)  # astatus tried get_nowait, was refused, and handed get() to a thread
    store._lock.release()
    try:
        return await asking
    finally:
        store._lock.acquire()
