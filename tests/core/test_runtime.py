"""The runtime: one reset and one fork hook for the process's immortus state."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from pathlib import Path

import pytest

import immortus
from immortus import (
    cancel_requests,
    cancelling,
    config,
    finder,
    heartbeat,
    lifecycle,
    outbox,
    registry,
    runtime,
)
from immortus.exceptions import StoreUnavailable
from immortus.status import JobStatus, State
from immortus.stores import notify
from immortus.stores.memory import MemoryStore
from immortus.stores.spool import SPOOL_DIR_ENV
from immortus.transitions import Event
from immortus.web import feed

SPAWN = multiprocessing.get_context("spawn")
#: Generous bound while waiting for a process; never a timing assertion.
TIMEOUT = 60.0


class DownStore(MemoryStore):
    """A memory store whose writes raise ``StoreUnavailable`` while ``down``."""

    def __init__(self) -> None:
        super().__init__(ttl=None)
        self.down = False

    def record(self, event: Event) -> JobStatus | None:
        if self.down:
            raise StoreUnavailable("the store is away")
        return super().record(event)


def test_one_reset_brings_every_part_back_to_a_fresh_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(SPOOL_DIR_ENV, str(tmp_path))
    import immortus.queues.rq  # registers its canceller at import (RQ: on every tested Python)

    declared = registry.registered()
    cancellers = dict(runtime.part(cancelling.Cancellers).by_queue)
    assert "rq" in cancellers
    store = DownStore()
    immortus.configure(store=store, open_endpoints=True, progress_interval=0)
    finder.register_strategy("mine", "store")
    finder.resolve_strategy("mine")
    finder.find_recording_strategy("not.a.TrackedJob")  # warns once, and remembers it did
    cancel_requests.request("asked")
    store.down = True
    lifecycle.job_started("held", None)
    assert outbox.stats().buffered == 1
    assert heartbeat.watch("running") is not None
    assert heartbeat.process_heartbeat().alive
    shared = feed.feed_for(0.25)
    strategies = runtime.part(finder.Strategies)
    assert strategies.registered
    assert strategies.by_name
    assert strategies.warned_untracked

    runtime.reset()

    assert config.get_config() == config.Config()
    assert config.get_config().open_endpoints is False
    assert (strategies.registered, strategies.by_name, strategies.by_job_class) == ({}, {}, {})
    assert strategies.warned_untracked == set()
    assert not cancel_requests.is_requested("asked")
    assert outbox.stats() == outbox.OutboxStats(buffered=0, dropped=0, replayed=0, outages=0)
    assert runtime.part(outbox.Outboxes).backlog == {}
    assert not heartbeat.process_heartbeat().alive
    assert heartbeat.process_heartbeat().running() == []
    assert feed.feed_for(0.25) is not shared
    # What modules declared at import time stays.
    assert registry.registered() == declared
    assert runtime.part(cancelling.Cancellers).by_queue == cancellers
    store.down = False  # the replay thread, told to give up, ends


def _child_facts(
    folder: str, shared: feed.ChangeFeed, parent_locks: list[threading.Lock]
) -> dict[str, object]:
    """In the forked child: what it inherited, then a job tracked into SQLite."""
    locks = [runtime.part(feed.Feeds).lock, runtime.part(notify.Listeners).lock]
    free = [lock.acquire(blocking=False) for lock in locks]
    for lock in locks:
        lock.release()
    beat = heartbeat.process_heartbeat()
    facts: dict[str, object] = {
        "buffered": outbox.stats().buffered,
        "backlog": len(runtime.part(outbox.Outboxes).backlog),
        "heartbeat alive": beat.alive,
        "heartbeat jobs": beat.running(),
        "feed running": shared.running,
        "locks new": [lock is not old for lock, old in zip(locks, parent_locks, strict=True)],
        "locks free": free,
    }
    immortus.configure(store=f"sqlite:///{folder}/child.sqlite3")
    with immortus.running("child-job"):
        pass
    facts["child job"] = immortus.status("child-job").state.value
    return facts


def _fork_and_report(folder: str) -> None:
    """In a spawned process: hold state, fork with the locks held, write the child's facts."""
    os.environ[SPOOL_DIR_ENV] = folder
    store = DownStore()
    config.configure(store=store, progress_interval=0)
    lifecycle.job_enqueued("followed", None)
    shared = feed.feed_for(0.25)
    subscription = shared.subscribe("followed")
    assert shared.running
    assert heartbeat.watch("parent-job") is not None
    store.down = True
    lifecycle.job_started("parent-job", None)
    assert outbox.stats().buffered == 1
    parent_locks = [runtime.part(feed.Feeds).lock, runtime.part(notify.Listeners).lock]
    read, write = os.pipe()
    with parent_locks[0], parent_locks[1]:  # held by the parent at the fork
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(read)
                os.write(write, json.dumps(_child_facts(folder, shared, parent_locks)).encode())
                code = 0
            finally:
                os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        facts = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    Path(folder, "facts.json").write_bytes(facts)
    assert outbox.stats().buffered == 1  # the parent's held event stays the parent's
    subscription.close()
    store.down = False


def test_a_forked_child_starts_fresh_and_tracks_into_sqlite(tmp_path: Path) -> None:
    process = SPAWN.Process(target=_fork_and_report, args=(str(tmp_path),))
    process.start()
    process.join(TIMEOUT)
    assert process.exitcode == 0
    facts = json.loads((tmp_path / "facts.json").read_text())
    assert facts == {
        "buffered": 0,
        "backlog": 0,
        "heartbeat alive": False,
        "heartbeat jobs": [],
        "feed running": False,
        "locks new": [True, True],
        "locks free": [True, True],
        "child job": State.FINISHED.value,
    }


class _Slow:
    """A part whose making takes a while, and counts how often it is made."""

    made = 0
    gate = threading.Barrier(8)

    def __init__(self) -> None:
        type(self).made += 1

    def reset(self) -> None:
        """Nothing to forget."""

    def after_fork(self) -> None:
        """Nothing to drop."""


def test_a_part_is_made_once_when_eight_threads_ask_at_once() -> None:
    fresh = runtime.Runtime()
    found: list[_Slow] = []

    def ask() -> None:
        _Slow.gate.wait(TIMEOUT)
        found.append(fresh.part(_Slow))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert len(found) == 8
    assert all(each is found[0] for each in found)
    assert _Slow.made == 1


def test_reset_goes_newest_first_and_the_fork_hook_oldest_first() -> None:
    calls: list[str] = []

    class First:
        def reset(self) -> None:
            calls.append("reset first")

        def after_fork(self) -> None:
            calls.append("fork first")

    class Second:
        def reset(self) -> None:
            calls.append("reset second")

        def after_fork(self) -> None:
            calls.append("fork second")

    fresh = runtime.Runtime()
    fresh.part(First)
    fresh.part(Second)
    fresh.reset()
    fresh._after_fork()
    assert calls == ["reset second", "reset first", "fork first", "fork second"]
