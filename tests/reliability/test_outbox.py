"""The outbox: events a store refused wait in memory, in order, and are written when it is back.

The store is a real memory store that refuses writes on demand (fault injection); the events
come through immortus's own lifecycle functions, as a job's would. The real outages (Redis
killed, PostgreSQL stopped) are in ``test_outage.py``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import immortus
from immortus import config, lifecycle, outbox, runtime
from immortus.exceptions import ConfigurationError, CorruptRecord, StoreUnavailable
from immortus.status import JobStatus, Progress, State
from immortus.stores.memory import MemoryStore
from immortus.stores.spool import SPOOL_DIR_ENV
from immortus.transitions import Event, EventKind, utcnow
from tests.queues.stores import dead_store_url
from tests.queues.workers import ROOT, worker_environment
from tests.services.base import wait_until
from tests.support import pristine_immortus

#: Generous: the machine may be loaded.
TIMEOUT = 30.0
SPAWN = multiprocessing.get_context("spawn")


class FlakyStore(MemoryStore):
    """A real memory store whose writes fail on demand, and which lists what it wrote.

    ``down``: every write raises ``StoreUnavailable``. ``takes``: that many more writes
    succeed, then the store goes down. ``corrupt``: job ids whose events raise
    ``CorruptRecord``. ``gate``: writes from the outbox's replay thread wait until it is set.
    """

    def __init__(self) -> None:
        super().__init__(ttl=None)
        self.down = False
        self.takes: int | None = None
        self.corrupt: set[str] = set()
        self.gate = threading.Event()
        self.gate.set()
        self.replaying = threading.Event()  # set once the replay thread is inside record()
        self.written: list[Event] = []

    def record(self, event: Event) -> JobStatus | None:
        if threading.current_thread().name.startswith("immortus-outbox"):
            self.replaying.set()
            assert self.gate.wait(TIMEOUT)
        if self.takes == 0:
            self.takes, self.down = None, True
        self._reachable()
        if self.takes is not None:
            self.takes -= 1
        if event.job_id in self.corrupt:
            raise CorruptRecord(f"the record of job {event.job_id!r} cannot be decoded")
        status = super().record(event)
        self.written.append(event)
        return status

    def get(self, job_id: str) -> JobStatus | None:
        self._reachable()
        return super().get(job_id)

    def get_nowait(self, job_id: str) -> JobStatus | None:
        self._reachable()
        return super().get_nowait(job_id)

    def get_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        self._reachable()
        return super().get_many(job_ids)

    def _reachable(self) -> None:
        if self.down:
            raise StoreUnavailable("cannot reach db-7.internal:6379 (connection refused)")

    def steps(self) -> list[tuple[str, str, float | None]]:
        """What was written, in order: (job id, kind, progress) of each event."""
        return [
            (e.job_id, e.kind.value, None if e.progress is None else e.progress.current)
            for e in self.written
        ]


@pytest.fixture(autouse=True)
def fresh_outbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Default settings and zeroed counters; no store is left holding events after the test."""
    monkeypatch.setenv(SPOOL_DIR_ENV, str(tmp_path / "spool"))
    with pristine_immortus():
        yield
        for store in list(runtime.part(outbox.Outboxes).backlog):
            if isinstance(store, FlakyStore):
                store.down, store.takes = False, None
                store.gate.set()
        assert outbox.flush(TIMEOUT), "the test left events held"


@pytest.fixture
def store() -> FlakyStore:
    store = FlakyStore()
    config.configure(store=store, progress_interval=0)
    return store


@pytest.fixture
def patient_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    """The replay thread waits for a flush before its first try: no race with the test."""
    monkeypatch.setattr(outbox, "FIRST_RETRY", 3600.0)


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "immortus" and r.levelno == level]


def replay_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("immortus-outbox")]


# -- the fast path ------------------------------------------------------------------------------


def test_a_store_that_answers_is_written_at_once_and_nothing_is_held(store: FlakyStore) -> None:
    threads = replay_threads()
    with immortus.running("job-1", None):
        immortus.progress(1, 2)

    assert store.steps() == [
        ("job-1", "started", None),
        ("job-1", "progress", 1),
        ("job-1", "finished", None),
    ]
    assert outbox.stats() == outbox.OutboxStats(buffered=0, dropped=0, replayed=0, outages=0)
    assert replay_threads() == threads


# -- an outage ----------------------------------------------------------------------------------


def test_events_of_every_job_wait_in_order_and_are_written_in_order(
    store: FlakyStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="immortus")
    store.down = True
    sent = [
        lifecycle.job_enqueued("a", None),
        lifecycle.job_started("a", None),
        lifecycle.job_enqueued("b", None),
        lifecycle.job_progress("a", Progress(current=1, total=2), None),
        lifecycle.job_started("b", None),
        lifecycle.job_failed("b", ValueError("boom"), None),
        lifecycle.job_progress("a", Progress(current=2, total=2), None),
        lifecycle.job_finished("a", None),
    ]
    assert sent == [True] * 8  # held, not failed: notify logged nothing
    assert store.written == []
    assert outbox.stats().buffered == 8
    with pytest.raises(StoreUnavailable):  # reads are never held
        immortus.status("a")

    store.down = False
    assert outbox.flush(TIMEOUT)

    assert store.steps() == [
        ("a", "enqueued", None),
        ("a", "started", None),
        ("b", "enqueued", None),
        ("a", "progress", 1),
        ("b", "started", None),
        ("b", "failed", None),
        ("a", "progress", 2),
        ("a", "finished", None),
    ]
    a, b = immortus.status("a"), immortus.status("b")
    assert (a.state, a.progress, b.state) == (
        State.FINISHED,
        Progress(current=2, total=2),
        State.FAILED,
    )
    assert b.error is not None
    assert b.error.message == "boom"
    assert outbox.stats() == outbox.OutboxStats(buffered=0, dropped=0, replayed=8, outages=1)
    [began] = messages(caplog, logging.WARNING)
    assert "is unreachable (cannot reach db-7.internal:6379" in began
    assert "outbox_limit=10000" in began
    [ended] = messages(caplog, logging.INFO)
    assert "is back: wrote 8 held tracking events in order (0 dropped" in ended
    assert messages(caplog, logging.ERROR) == []


def test_new_events_queue_behind_held_ones_even_once_the_store_answers(store: FlakyStore) -> None:
    store.down = True
    lifecycle.job_started("job-1", None)
    store.gate.clear()  # the replay thread will stop inside record()
    store.down = False
    assert store.replaying.wait(TIMEOUT)

    # The store answers now, but "started" is still being written: this must not overtake it.
    lifecycle.job_finished("job-1", None)
    assert store.written == []
    assert outbox.stats().buffered == 2  # one being written, one waiting

    store.gate.set()
    assert outbox.flush(TIMEOUT)
    assert store.steps() == [("job-1", "started", None), ("job-1", "finished", None)]
    assert immortus.status("job-1").state is State.FINISHED


def test_replayed_events_keep_the_times_they_happened(store: FlakyStore) -> None:
    store.down = True
    with immortus.running("job-1", None):
        pass
    ended = utcnow()
    assert wait_until(lambda: utcnow() > ended, TIMEOUT)  # the clock moves on

    store.down = False
    assert outbox.flush(TIMEOUT)
    status = immortus.status("job-1")
    assert status.started_at is not None
    assert status.finished_at is not None
    assert status.started_at <= status.finished_at <= ended


def test_the_replay_stops_at_the_first_refusal_and_resumes_in_order(store: FlakyStore) -> None:
    store.down = True
    for step in range(1, 5):
        lifecycle.job_progress("job-1", Progress(current=step, total=4), None)
    store.takes = 2  # once back, the store takes two events, then goes away again
    store.down = False

    assert not outbox.flush(0.5)  # two written; the third was refused and waits
    wait_until(lambda: len(store.written) == 2 and outbox.stats().buffered == 2, TIMEOUT)
    assert store.down

    store.down = False
    assert outbox.flush(TIMEOUT)
    assert [current for _, _, current in store.steps()] == [1, 2, 3, 4]
    assert outbox.stats() == outbox.OutboxStats(buffered=0, dropped=0, replayed=4, outages=1)


def test_an_event_the_store_refuses_for_good_is_logged_and_dropped(
    store: FlakyStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.down = True
    lifecycle.job_started("bad", None)
    lifecycle.job_started("good", None)
    store.corrupt.add("bad")
    store.down = False

    assert outbox.flush(TIMEOUT)
    assert store.steps() == [("good", "started", None)]
    assert outbox.stats().dropped == 1
    assert outbox.outbox_for(store).buffered == 0  # the dropped one is not counted twice
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "refused a held started event of job 'bad'" in error.getMessage()
    assert error.exc_info is not None


# -- the bound ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("patient_replay")
def test_past_the_limit_progress_and_meta_go_first_then_the_oldest_event(
    store: FlakyStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="immortus")
    config.configure(outbox_limit=3)
    store.down = True
    lifecycle.job_started("a", None)
    lifecycle.job_progress("a", Progress(current=1, total=2), None)
    lifecycle.job_progress("a", Progress(current=2, total=2), None)
    assert outbox.stats().dropped == 0
    lifecycle.job_finished("a", None)  # 4 > 3: the oldest progress goes
    lifecycle.job_meta("b", {"rows": 7}, None)  # the other progress goes
    lifecycle.job_started("b", None)  # the meta goes
    lifecycle.job_enqueued("c", None)  # only state changes left: the oldest goes ("a" started)

    assert outbox.stats() == outbox.OutboxStats(buffered=3, dropped=4, replayed=0, outages=1)
    assert outbox.outbox_for(store).dropped == 4
    dropping = [m for m in messages(caplog, logging.WARNING) if "fill its outbox" in m]
    assert len(dropping) == 1  # once per outage, not once per event
    assert "outbox_limit=3" in dropping[0]
    assert "immortus.outbox.stats().dropped" in dropping[0]

    store.down = False
    assert outbox.flush(TIMEOUT)
    assert store.steps() == [
        ("a", "finished", None),
        ("b", "started", None),
        ("c", "enqueued", None),
    ]
    assert immortus.status("a").state is State.FINISHED  # the ending survived the drops
    assert any("(4 dropped during the outage)" in m for m in messages(caplog, logging.INFO))


@pytest.mark.usefixtures("patient_replay")
def test_a_long_outage_holds_no_more_than_the_limit(store: FlakyStore) -> None:
    config.configure(outbox_limit=10)
    store.down = True
    lifecycle.job_started("job-1", None)
    for step in range(1, 5001):
        lifecycle.job_progress("job-1", Progress(current=step, total=5000), None)

    box = outbox.outbox_for(store)
    assert (box.buffered, box.dropped) == (10, 4991)
    assert len(box._waiting) <= 2 * 10 + 64  # dropped events leave no trail behind them
    assert len(box._supersedable) <= 2 * 10 + 64

    store.down = False
    assert outbox.flush(TIMEOUT)
    assert store.steps()[0] == ("job-1", "started", None)  # the state change outlived them all
    assert immortus.status("job-1").progress == Progress(current=5000, total=5000)


def test_outbox_limit_zero_keeps_the_old_way_log_and_lose(
    store: FlakyStore, caplog: pytest.LogCaptureFixture
) -> None:
    config.configure(outbox_limit=0)
    store.down = True
    assert lifecycle.job_started("job-1", None) is False
    assert outbox.stats() == outbox.OutboxStats(buffered=0, dropped=0, replayed=0, outages=0)
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "the job goes on untracked for this event" in error.getMessage()
    store.down = False
    assert lifecycle.job_finished("job-1", None) is True
    assert store.steps() == [("job-1", "finished", None)]


@pytest.mark.parametrize("limit", [-1, 1.5, True, "10", None])
def test_outbox_limit_must_be_a_whole_number_from_zero(limit: object) -> None:
    with pytest.raises(ConfigurationError, match="outbox_limit must be a whole number"):
        config.configure(outbox_limit=limit)


# -- many stores, many threads ------------------------------------------------------------------


def test_each_store_object_has_an_outbox_of_its_own(store: FlakyStore) -> None:
    other = FlakyStore()
    store.down = True
    lifecycle.job_started("held", None)
    outbox.record(other, Event(kind=EventKind.STARTED, job_id="direct"))

    assert other.steps() == [("direct", "started", None)]  # not held behind the other store
    assert outbox.outbox_for(store) is outbox.outbox_for(store)
    assert outbox.outbox_for(other).outages == 0
    assert outbox.outbox_for(store).buffered == 1
    store.down = False
    assert outbox.flush(TIMEOUT)
    assert outbox.outbox_for(store).replayed == 1


def test_jobs_in_many_threads_keep_their_order_through_an_outage(store: FlakyStore) -> None:
    steps, workers = 60, 8
    halfway = threading.Barrier(workers + 1)
    resume = threading.Event()

    def job(number: int) -> None:
        with immortus.running(f"job-{number}", None):
            for step in range(1, steps + 1):
                if step == steps // 2:
                    halfway.wait(TIMEOUT)
                    assert resume.wait(TIMEOUT)
                immortus.progress(step, steps)

    threads = [threading.Thread(target=job, args=(number,)) for number in range(workers)]
    store.down = True
    for thread in threads:
        thread.start()
    halfway.wait(TIMEOUT)
    store.down = False  # the store comes back while the jobs still report
    resume.set()
    for thread in threads:
        thread.join(TIMEOUT)
    assert outbox.flush(TIMEOUT)

    for number in range(workers):
        mine = [
            (kind, current) for job_id, kind, current in store.steps() if job_id == f"job-{number}"
        ]
        assert mine == [
            ("started", None),
            *(("progress", s) for s in range(1, steps + 1)),
            ("finished", None),
        ]
        status = immortus.status(f"job-{number}")
        assert (status.state, status.progress) == (
            State.FINISHED,
            Progress(current=steps, total=steps),
        )
    assert outbox.stats().dropped == 0


# -- exit and fork -------------------------------------------------------------------------------


def test_the_exit_flush_writes_what_the_store_takes(
    store: FlakyStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.down = True
    lifecycle.job_finished("job-1", None)
    store.down = False
    outbox._flush_at_exit()
    assert store.steps() == [("job-1", "finished", None)]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


_EXIT_SCRIPT = """
import logging, immortus
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
with immortus.running("job-1", None):
    immortus.progress(1, 2)
print("job done", flush=True)
"""


def run_exit_script(spool: str) -> subprocess.CompletedProcess[str]:
    """Run the job of ``_EXIT_SCRIPT`` against a real dead store: Redis where nothing listens."""
    return subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT],
        cwd=ROOT,
        env=worker_environment(dead_store_url(), IMMORTUS_SPOOL_DIR=spool),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_at_exit_with_the_store_still_down_the_held_events_are_left_in_the_spool(
    tmp_path: Path,
) -> None:
    result = run_exit_script(str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "job done\n"  # the job ran to its end
    assert [line for line in result.stderr.splitlines() if line.startswith("ERROR")] == []
    (left,) = tmp_path.iterdir()
    assert f"3 tracking events are left in {left}; the next process" in result.stderr
    assert "Traceback" not in result.stderr


def test_at_exit_without_a_spool_the_lost_events_are_logged() -> None:
    result = run_exit_script("off")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "job done\n"
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, result.stderr
    assert "is still unreachable at exit: 3 tracking events held in memory are lost" in errors[0]
    assert "Traceback" not in result.stderr


def _fork_with_events_held() -> None:
    """In a spawned process: hold events, fork, and check each side keeps its own."""
    parent_store = FlakyStore()
    config.configure(store=parent_store, progress_interval=0)
    parent_store.down = True
    lifecycle.job_started("parent-job", None)
    assert outbox.stats().buffered == 1
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            assert outbox.stats() == outbox.OutboxStats(
                buffered=0, dropped=0, replayed=0, outages=0
            )
            assert runtime.part(outbox.Outboxes).backlog == {}
            assert not replay_threads()  # threads do not survive a fork
            lifecycle.job_started("child-job", None)  # still down: held in the child's own outbox
            assert outbox.stats().buffered == 1
            assert len(replay_threads()) == 1
            parent_store.down = False
            assert outbox.flush(TIMEOUT)
            assert parent_store.steps() == [("child-job", "started", None)]
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parent_store.down = False
    assert outbox.flush(TIMEOUT)
    assert parent_store.steps() == [("parent-job", "started", None)]


def test_a_forked_child_starts_with_an_empty_outbox_and_a_thread_of_its_own() -> None:
    process = SPAWN.Process(target=_fork_with_events_held)
    process.start()
    process.join(TIMEOUT * 2)
    assert process.exitcode == 0


def test_discard_gives_up_what_is_held_and_ends_the_replay_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    immortus.configure(store=store, progress_interval=0)
    store.down = True
    for step in range(3):
        progress = Progress(current=step, total=3)
        outbox.record(store, Event(kind=EventKind.PROGRESS, job_id="gone", progress=progress))
    box = outbox.outbox_for(store)
    assert box.buffered == 3
    dropped_before = outbox.stats().dropped

    assert outbox.discard() == 3

    assert (box.buffered, outbox.stats().dropped - dropped_before) == (0, 3)
    assert "discarded 3 tracking events held for the store" in caplog.text
    assert wait_until(
        lambda: not any(t.name.startswith("immortus-outbox") for t in threading.enumerate()),
        timeout=10,
    ), "the replay thread did not end"
    assert outbox.stats().buffered == 0
    store.down = False
    outbox.record(store, Event(kind=EventKind.STARTED, job_id="after"))
    assert store.get("after") is not None  # written at once: no outage left behind
    assert "is back: wrote" not in caplog.text
