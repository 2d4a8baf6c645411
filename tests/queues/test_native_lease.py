"""A running job whose worker's heartbeat lease is live is answered without asking the queue.

The store (in memory, and SQLite, whose reads decode rows) and a queue whose own state is a
dict; the queue counts its reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import immortus
from immortus import JobError, JobStatus, State, lifecycle
from immortus.queues.native import vouched
from immortus.stores.base import Store
from immortus.stores.memory import MemoryStore
from immortus.stores.records import LOST_ERROR_TYPE
from immortus.stores.sqlite import SQLiteStore
from immortus.transitions import utcnow
from tests.queues.test_native import LATER, DictQueue, native
from tests.support import pristine_immortus

BOOM = JobError(type="ValueError", message="boom")


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with pristine_immortus():
        chosen: Store = (
            MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "jobs.db")
        )
        immortus.configure(store=chosen)
        yield chosen


def start(job_id: str, lease: timedelta | None) -> None:
    """Record the job enqueued and started, with a lease ``lease`` from now (or none)."""
    lifecycle.job_enqueued(job_id, "reports.build")
    alive_until = None if lease is None else utcnow() + lease
    lifecycle.job_started(job_id, "reports.build", alive_until=alive_until)


def test_a_live_lease_is_answered_without_asking_the_queue(store: Store) -> None:
    start("j", timedelta(minutes=1))
    queue = DictQueue()
    queue.kept["j"] = native("j", State.FAILED, error=BOOM)  # not yet seen: the worker runs
    answer = queue.status("j")
    assert answer.state is State.STARTED
    assert queue.status_many(["j", "other"])["j"].state is State.STARTED
    assert queue.reads == [["other"]]  # the backend was never asked about "j"
    assert vouched(answer, utcnow())
    assert "alive_until" not in answer.to_dict()


def test_a_lapsed_lease_asks_the_queue_whose_ending_wins(store: Store) -> None:
    start("j", timedelta(seconds=-1))  # its worker stopped beating a second ago
    queue = DictQueue()
    queue.kept["j"] = native("j", State.FAILED, error=BOOM, finished_at=LATER)
    answer = queue.status("j")
    assert (answer.state, answer.error, answer.finished_at) == (State.FAILED, BOOM, LATER)
    assert answer.job_class == "reports.build"  # the record's details stay
    assert queue.reads == [["j"]]


def test_a_lapsed_lease_stays_lost_while_the_queue_has_no_ending(store: Store) -> None:
    start("running", timedelta(seconds=-1))
    start("crashed", timedelta(seconds=-1))
    queue = DictQueue()
    queue.kept["running"] = native("running", State.STARTED)
    queue.kept["crashed"] = native("crashed", State.LOST, error=BOOM)
    answers = queue.status_many(["running", "crashed"])
    for answer in answers.values():
        assert answer.state is State.LOST
        assert answer.error is not None
        assert answer.error.type == LOST_ERROR_TYPE  # the store's presumption, unchanged


def test_a_record_without_a_lease_asks_the_queue(store: Store) -> None:
    start("j", None)  # no heartbeat watches it
    queue = DictQueue()
    queue.kept["j"] = native("j", State.FAILED, error=BOOM)
    assert queue.status("j").state is State.FAILED
    assert queue.reads == [["j"]]


def test_an_unchanged_leased_record_reads_as_the_same_status(store: Store) -> None:
    start("j", timedelta(minutes=1))
    first, second = store.get("j"), store.get("j")
    assert first is not None
    assert first.alive_until is not None
    if isinstance(store, SQLiteStore):  # decoded rows: the web layer keeps one encoded answer
        assert first is second


def test_the_lease_is_neither_on_the_wire_nor_in_equality() -> None:
    plain = JobStatus(job_id="j", state=State.STARTED)
    leased = JobStatus(job_id="j", state=State.STARTED, alive_until=LATER)
    assert leased == plain
    assert leased.to_dict() == plain.to_dict()
    assert "alive_until" not in repr(leased)
