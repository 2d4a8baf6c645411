"""The worker's heartbeat: leases on ``started``, one beat per store per tick, and its thread.

The stores here are memory stores that count their ``beat`` calls (a fault-injection style
wrapper: the counting changes nothing else); the contract suite checks what ``beat`` does on
every real store, and ``tests/reliability/test_lost_huey.py`` kills a real worker.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import ClassVar

import pytest

import immortus
from immortus import heartbeat, jobs, outbox
from immortus.exceptions import InvalidInput, StoreUnavailable
from immortus.heartbeat import Heartbeat, process_heartbeat
from immortus.status import JobStatus, Progress, State
from immortus.store_strategy import StoreStrategy
from immortus.stores.memory import MemoryStore
from immortus.strategy import TrackingStrategy
from immortus.transitions import Event, EventKind, utcnow
from tests.queues.scenarios import wait_for


class CountingStore(MemoryStore):
    """A memory store that keeps every event and every ``beat`` call it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []
        self.beats: list[list[str]] = []
        self.down = False  # fault injection: beats fail as if the server were gone

    def record(self, event: Event) -> JobStatus | None:
        self.events.append(event)
        return super().record(event)

    def beat(self, job_ids: Sequence[str], alive_until: datetime) -> int:
        self.beats.append(list(job_ids))
        if self.down:
            raise StoreUnavailable("redis://127.0.0.1:6379 refused the connection")
        return super().beat(job_ids, alive_until)

    def beaten(self) -> set[str]:
        return {job_id for call in list(self.beats) for job_id in call}


class LeaselessStore(CountingStore):
    """A store that keeps no leases, as a third-party store may."""

    supports_heartbeat: ClassVar[bool] = False


class OwnBeats(TrackingStrategy):
    """A custom strategy that keeps its own heartbeats: it takes part with its own call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def completed(self, job_id: str) -> bool:
        return False

    def beat(self, job_ids: Sequence[str], alive_until: datetime) -> None:
        self.calls.append(list(job_ids))


class NoBeats(TrackingStrategy):
    """A seed-style strategy: no ``beat``, so its jobs get no heartbeat."""

    def completed(self, job_id: str) -> bool:
        return False


@pytest.fixture(autouse=True)
def quiet_heartbeat() -> Iterator[None]:
    """Leave this process's heartbeat as each test found it: no thread, no job."""
    yield
    beating = process_heartbeat()
    beating.stop(timeout=10)
    beating._forget_everything()


@pytest.fixture
def store() -> CountingStore:
    """The configured store, beating every 50 ms; lost after 0.5 s without a beat."""
    counting = CountingStore()
    immortus.configure(store=counting, heartbeat_interval=0.05, heartbeat_timeout=0.5)
    return counting


# -- the lease on started, and the registration ------------------------------------------------


def test_a_started_job_carries_a_lease_and_is_watched_until_it_ends(store: CountingStore) -> None:
    before = utcnow()
    with immortus.running("j1", "reports.build"):
        assert process_heartbeat().running() == [("j1", "reports.build")]
        assert process_heartbeat().alive
    started = store.events[0]
    assert started.kind is EventKind.STARTED
    assert started.alive_until is not None
    assert before + timedelta(seconds=0.5) <= started.alive_until <= utcnow() + timedelta(1)
    assert process_heartbeat().running() == []


@pytest.mark.parametrize("ending", ["finish", "fail", "retry", "cancel", "leave"])
def test_every_ending_stops_the_watch(store: CountingStore, ending: str) -> None:
    other = jobs.start_attempt("j2")
    attempt = jobs.start_attempt("j1")  # ended first, as nested attempts end
    assert {job_id for job_id, _ in process_heartbeat().running()} == {"j1", "j2"}
    if ending == "finish":
        attempt.finish()
    elif ending in ("fail", "retry"):
        attempt.fail(ValueError("boom"), final_attempt=ending == "fail")
    elif ending == "cancel":
        attempt.cancel()
    else:
        attempt.leave()
    attempt.finish()  # ending twice forgets nothing more
    assert process_heartbeat().running() == [("j2", None)]
    other.finish()
    assert process_heartbeat().running() == []


@pytest.mark.parametrize("raised", [ValueError("boom"), KeyboardInterrupt()])
def test_running_stops_the_watch_when_the_job_raises(
    store: CountingStore, raised: BaseException
) -> None:
    with pytest.raises(type(raised)), immortus.running("j1"):
        raise raised
    assert process_heartbeat().running() == []


def test_without_heartbeats_no_lease_no_watch_no_thread(store: CountingStore) -> None:
    immortus.configure(heartbeat_interval=None)
    with immortus.running("j1"):
        assert process_heartbeat().running() == []
    assert store.events[0].alive_until is None
    assert not process_heartbeat().alive
    assert heartbeat.watch("j2") is None


def test_a_lease_must_be_timezone_aware() -> None:
    with pytest.raises(InvalidInput, match="alive_until must be timezone-aware"):
        Event(kind=EventKind.STARTED, job_id="j", alive_until=datetime(2030, 1, 1))  # naive


# -- one beat per store per tick ---------------------------------------------------------------


def test_a_tick_makes_one_beat_per_store_whatever_the_number_of_jobs(
    store: CountingStore,
) -> None:
    other = CountingStore()
    own = OwnBeats()
    immortus.track(name="x.default")(lambda: None)
    immortus.track(name="x.inline", strategy=StoreStrategy(store))(lambda: None)  # same store
    immortus.track(name="x.other", strategy=StoreStrategy(other))(lambda: None)
    immortus.track(name="x.own", strategy=own)(lambda: None)
    immortus.track(name="x.seed", strategy=NoBeats())(lambda: None)
    beating = Heartbeat()  # no thread: the test ticks it
    for index in range(50):
        beating.add(f"d{index}", "x.default" if index % 2 else None)
    for job_id, job_class in [("i1", "x.inline"), ("o1", "x.other"), ("o2", "x.other")]:
        beating.add(job_id, job_class)
    beating.add("w1", "x.own")
    beating.add("s1", "x.seed")
    assert beating.tick() == 3
    assert len(store.beats) == 1
    assert sorted(store.beats[0]) == sorted([*(f"d{index}" for index in range(50)), "i1"])
    assert other.beats == [["o1", "o2"]]
    assert own.calls == [["w1"]]
    assert beating.tick() == 3
    assert (len(store.beats), len(other.beats), len(own.calls)) == (2, 2, 2)


def test_a_job_of_a_class_nobody_declared_is_beaten_like_its_events_are_recorded(
    store: CountingStore,
) -> None:
    beating = Heartbeat()  # no thread: the test ticks it
    beating.add("u1", "never.declared")
    assert beating.tick() == 1
    assert store.beats == [["u1"]]


def test_a_tick_extends_the_leases_it_beats(store: CountingStore) -> None:
    immortus.configure(heartbeat_interval=3600, heartbeat_timeout=7200)  # the thread sleeps
    attempt = jobs.start_attempt("j1")
    store.beat(["j1"], utcnow() - timedelta(seconds=1))  # as if its last beat was long ago
    lapsed = store.get("j1")
    assert lapsed is not None
    assert lapsed.state is State.LOST
    beating = Heartbeat()
    beating.add("j1", None)
    assert beating.tick() == 1
    status = store.get("j1")
    assert status is not None
    assert status.state is State.STARTED
    attempt.finish()


def test_nothing_to_beat_costs_nothing(store: CountingStore) -> None:
    beating = Heartbeat()
    assert beating.tick() == 0
    token = beating.add("j1", None)
    beating.remove(token)
    beating.remove(token)  # twice is harmless
    assert beating.tick() == 0
    assert store.beats == []


def test_a_store_without_leases_is_left_alone_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    leaseless = LeaselessStore()
    immortus.configure(store=leaseless)
    beating = Heartbeat()
    beating.add("j1", None)
    with caplog.at_level(logging.INFO, logger="immortus"):
        assert beating.tick() == 0
        assert beating.tick() == 0
    assert leaseless.beats == []
    assert [r.getMessage() for r in caplog.records] == [
        "immortus: LeaselessStore keeps no heartbeat leases (supports_heartbeat is False): jobs "
        "tracked in it are never detected lost"
    ]


def test_with_store_tracking_off_there_is_nothing_to_beat() -> None:
    immortus.configure(store=None)
    immortus.track(name="x.store", strategy="store")(lambda: None)
    beating = Heartbeat()
    beating.add("j1", "x.store")
    assert beating.tick() == 0


# -- failures ---------------------------------------------------------------------------------


def test_a_failing_store_is_logged_once_per_outage(
    store: CountingStore, caplog: pytest.LogCaptureFixture
) -> None:
    beating = Heartbeat()
    beating.add("j1", None)
    store.down = True
    with caplog.at_level(logging.INFO, logger="immortus"):
        for _ in range(3):
            assert beating.tick() == 1  # tried every tick
        store.down = False
        beating.tick()
        beating.tick()
        store.down = True
        beating.tick()
    levels = [(r.levelno, r.getMessage().split(" (")[0]) for r in caplog.records]
    warned = "immortus: the heartbeat of 1 running job(s) to " + repr(store) + " failed"
    assert levels == [
        (logging.WARNING, warned),
        (logging.INFO, f"immortus: the heartbeat to {store!r} works again"),
        (logging.WARNING, warned),
    ]
    assert "refused the connection" in caplog.records[0].getMessage()
    assert not caplog.records[0].exc_info  # a store error: its message says it all
    assert len(store.beats) == 6


def test_a_job_runs_and_ends_while_its_heartbeats_fail(
    store: CountingStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.down = True
    with caplog.at_level(logging.WARNING, logger="immortus"), immortus.running("j1"):
        wait_for(lambda: len(store.beats) >= 3, timeout=30, what="three failed beats")
    status = store.get("j1")
    assert status is not None
    assert status.state is State.FINISHED
    assert len([r for r in caplog.records if "heartbeat" in r.getMessage()]) == 1


def test_a_strategy_that_cannot_be_found_is_skipped(store: CountingStore) -> None:
    immortus.configure(strategy="no.such:Strategy")
    beating = Heartbeat()
    beating.add("j1", None)
    assert beating.tick() == 0


# -- the thread --------------------------------------------------------------------------------


def test_the_thread_keeps_a_running_job_started_past_its_timeout(store: CountingStore) -> None:
    with immortus.running("long"):
        started = time.monotonic()
        wait_for(lambda: time.monotonic() - started > 2 * 0.5, timeout=30, what="two timeouts")
        wait_for(lambda: len(store.beats) >= 5, timeout=30, what="five beats")
        status = store.get("long")
        assert status is not None
        assert status.state is State.STARTED  # no event since it started: only beats
        assert "long" in store.beaten()
    assert process_heartbeat().running() == []
    time.sleep(0.2)  # a tick that saw the job before it ended has made its call
    calls = len(store.beats)
    time.sleep(0.3)  # six intervals
    assert len(store.beats) == calls  # no job left: no call at all


def test_configure_reaches_a_sleeping_thread(store: CountingStore) -> None:
    immortus.configure(heartbeat_interval=3600, heartbeat_timeout=7200)
    with immortus.running("j1"):
        assert process_heartbeat().alive
        immortus.configure(heartbeat_interval=0.05, heartbeat_timeout=0.5)
        wait_for(lambda: "j1" in store.beaten(), timeout=30, what="a beat at the new interval")


def test_a_forked_child_forgets_its_parents_jobs_and_beats_its_own(store: CountingStore) -> None:
    parent_job = jobs.start_attempt("parent-job")
    assert process_heartbeat().alive
    # The parent's thread sleeps through the fork, so it holds no lock the child would inherit.
    immortus.configure(heartbeat_interval=3600, heartbeat_timeout=7200)
    with warnings.catch_warnings():
        # Python warns that forking a threaded process may deadlock the child: exactly the
        # situation of RQ's work horse and Celery's prefork children, which this test is about.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report through the exit code, never return into pytest
        code = 1
        try:
            code = _child_beats_its_own_jobs(store)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "see the child's checks for the code"
    assert process_heartbeat().running() == [("parent-job", None)]  # the parent's, untouched
    assert process_heartbeat().alive
    store.beats.clear()
    immortus.configure(heartbeat_interval=0.05, heartbeat_timeout=0.5)
    wait_for(lambda: "parent-job" in store.beaten(), timeout=30, what="the parent's beat")
    parent_job.finish()


def _child_beats_its_own_jobs(store: CountingStore) -> int:
    """The forked child's side; returns its exit code (the first check that failed)."""
    if process_heartbeat().running() != [] or process_heartbeat().alive:
        return 2  # it inherited the parent's jobs or believes the parent's thread is its own
    store.beats.clear()
    immortus.configure(heartbeat_interval=0.05, heartbeat_timeout=0.5)
    with immortus.running("child-job"):
        deadline = time.monotonic() + 30
        while "child-job" not in store.beaten():
            if time.monotonic() > deadline or not process_heartbeat().alive:
                return 3
            time.sleep(0.02)
    if "parent-job" in store.beaten():
        return 4  # the child beat for a job it does not run
    return 0


def test_the_thread_is_a_daemon_named_for_what_it_does(store: CountingStore) -> None:
    with immortus.running("j1"):
        threads = [t for t in threading.enumerate() if t.name == "immortus-heartbeat"]
    assert len(threads) == 1
    assert threads[0].daemon


# -- through a store outage -------------------------------------------------------------------


class OutageStore(CountingStore):
    """A counting store whose writes fail too while it is down; it logs every call in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def record(self, event: Event) -> JobStatus | None:
        if self.down:
            raise StoreUnavailable("redis://127.0.0.1:6379 refused the connection")
        self.calls.append(f"record {event.kind.value} {event.job_id}")
        return super().record(event)

    def beat(self, job_ids: Sequence[str], alive_until: datetime) -> int:
        touched = super().beat(job_ids, alive_until)
        self.calls.append(f"beat {','.join(job_ids)}")
        return touched


@pytest.fixture
def outage_store() -> Iterator[OutageStore]:
    """The configured store; heartbeats so rare that no tick happens during a test."""
    down = OutageStore()
    immortus.configure(
        store=down, heartbeat_interval=600, heartbeat_timeout=1200, progress_interval=0
    )
    yield down
    down.down = False
    assert outbox.flush(30)


def test_a_failed_beat_is_sent_again_as_soon_as_the_store_is_back(
    outage_store: OutageStore,
) -> None:
    lapsed = utcnow() - timedelta(seconds=5)
    outage_store.record(Event(kind=EventKind.STARTED, job_id="j1", alive_until=lapsed))
    assert (status := outage_store.get("j1")) is not None
    assert status.state is State.LOST  # its lease ran out while the store was away
    assert outage_store.reap_lost() == 1  # and a reaper wrote it down
    process_heartbeat().add("j1", None)
    outage_store.down = True
    assert process_heartbeat().tick() == 1  # fails: held, not left to the next tick
    outage_store.down = False
    wait_for(
        lambda: (found := outage_store.get("j1")) is not None and found.state is State.STARTED,
        timeout=30,
        what="the held beat to revive the job",
    )  # long before the next tick, 600 s away


def test_on_recovery_live_jobs_are_beaten_before_the_held_events_are_written(
    outage_store: OutageStore,
) -> None:
    outage_store.record(Event(kind=EventKind.STARTED, job_id="j1", alive_until=utcnow()))
    process_heartbeat().add("j1", None)
    outage_store.down = True
    for step in (1, 2):
        progress = Progress(current=step, total=2)
        outbox.record(outage_store, Event(kind=EventKind.PROGRESS, job_id="j2", progress=progress))
    assert process_heartbeat().tick() == 1
    outage_store.down = False
    assert outbox.flush(30)
    assert outage_store.calls[1:] == [  # after the first started: the beat, then the history
        "beat j1",
        "record progress j2",
        "record progress j2",
        "beat j1",  # once more, for jobs whose started event was among the held ones
    ]
    assert (status := outage_store.get("j1")) is not None
    assert status.state is State.STARTED
