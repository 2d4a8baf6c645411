"""The merge of the store's record with a queue's own state (pure logic, no queue needed)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

import immortus
from immortus import JobError, JobStatus, Progress, State, lifecycle
from immortus.exceptions import StoreUnavailable
from immortus.queues.native import QueueStrategy, merge
from immortus.stores.memory import MemoryStore
from tests.support import pristine_immortus

LATER = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class DictQueue(QueueStrategy):
    """A queue whose own state is a dict: what a test writes is what the queue 'keeps'."""

    def __init__(self, store: MemoryStore | None = None) -> None:
        super().__init__(store)
        self.kept: dict[str, JobStatus] = {}
        self.reads: list[list[str]] = []

    def native_status(self, job_id: str) -> JobStatus | None:
        self.reads.append([job_id])
        return self.kept.get(job_id)

    def native_status_many(self, job_ids: list[str]) -> dict[str, JobStatus]:  # type: ignore[override]
        self.reads.append(list(job_ids))
        return {job_id: self.kept[job_id] for job_id in job_ids if job_id in self.kept}


class DownStore(MemoryStore):
    def get_many(self, job_ids: object) -> dict[str, JobStatus]:
        raise StoreUnavailable("down")


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    with pristine_immortus():
        immortus.configure(store=MemoryStore())
        yield


def native(job_id: str, state: State, **fields: object) -> JobStatus:
    return JobStatus(job_id=job_id, state=state, **fields)  # type: ignore[arg-type]


def test_neither_knows_the_job() -> None:
    assert merge(None, None, "j").state is State.UNKNOWN
    assert DictQueue().status("j").state is State.UNKNOWN


def test_only_the_queue_knows_it() -> None:
    queue = DictQueue()
    queue.kept["j"] = native("j", State.FINISHED, certain=False)
    answer = queue.status("j")
    assert (answer.state, answer.certain) == (State.FINISHED, False)


def test_the_store_record_wins_while_the_queue_has_not_ended() -> None:
    queue = DictQueue()
    lifecycle.job_started("j", "reports.build")
    queue.kept["j"] = native("j", State.CREATED)
    assert queue.status("j").state is State.STARTED


def test_the_queues_ending_completes_a_record_the_worker_could_not_finish() -> None:
    queue = DictQueue()
    lifecycle.job_enqueued("j", "reports.build")
    lifecycle.job_started("j", "reports.build")
    error = JobError(type="ValueError", message="boom")
    queue.kept["j"] = native("j", State.FAILED, error=error, finished_at=LATER, attempts=2)
    answer = queue.status("j")
    assert (answer.state, answer.error, answer.finished_at) == (State.FAILED, error, LATER)
    assert answer.attempts == 2
    assert answer.job_class == "reports.build"  # the record's details stay


def test_an_ended_record_is_never_overwritten() -> None:
    queue = DictQueue()
    lifecycle.job_cancelled("j")
    queue.kept["j"] = native("j", State.FINISHED)
    assert queue.status("j").state is State.CANCELLED


def test_a_store_that_is_down_falls_back_to_the_queue() -> None:
    queue = DictQueue(DownStore())
    queue.kept["j"] = native("j", State.STARTED)
    assert queue.status("j").state is State.STARTED
    with pytest.raises(StoreUnavailable):
        queue.status("nobody")
    assert queue.status_many(["j"])["j"].state is State.STARTED
    with pytest.raises(StoreUnavailable):
        queue.status_many(["j", "nobody"])


def test_many_jobs_cost_one_read_of_each_side() -> None:
    queue = DictQueue()
    lifecycle.job_started("a")
    queue.kept["b"] = native("b", State.FINISHED)
    answers = queue.status_many(["a", "b", "c", "a"])
    assert {k: v.state for k, v in answers.items()} == {
        "a": State.STARTED,
        "b": State.FINISHED,
        "c": State.UNKNOWN,
    }
    assert queue.reads == [["a", "b", "c", "a"]]


def test_with_store_tracking_off_only_the_queue_answers() -> None:
    immortus.configure(store=None)
    queue = DictQueue()
    queue.kept["j"] = native("j", State.RETRYING)
    assert queue.status("j").state is State.RETRYING


def test_it_never_answers_on_the_event_loop() -> None:
    with pytest.raises(BlockingIOError):
        DictQueue().status_nowait("j")


class DownQueue(DictQueue):
    def native_status_many(self, job_ids: list[str]) -> dict[str, JobStatus]:  # type: ignore[override]
        raise StoreUnavailable("the queue's backend is down")


def test_a_queue_backend_that_is_down_falls_back_to_the_store() -> None:
    queue = DownQueue()
    lifecycle.job_started("j")
    assert queue.status("j").state is State.STARTED
    with pytest.raises(StoreUnavailable):
        queue.status("nobody")


def test_times_the_store_lacks_come_from_the_queue() -> None:
    queue = DictQueue()
    lifecycle.job_started("j")  # a worker's hooks saw it; the enqueue was before install
    queue.kept["j"] = native("j", State.STARTED, enqueued_at=LATER)
    answer = queue.status("j")
    assert answer.enqueued_at == LATER
    assert answer.started_at is not None
    assert answer.started_at != LATER


def test_with_store_tracking_off_the_callbacks_write_nothing() -> None:
    immortus.configure(store=None)
    queue = DictQueue()
    queue.job_started("j", job_class="reports.build")  # no ConfigurationError: nothing to write
    assert queue.status("j").state is State.UNKNOWN


def test_a_settled_record_is_answered_without_asking_the_queue() -> None:
    queue = DictQueue()
    lifecycle.job_enqueued("done", "reports.build")
    lifecycle.job_started("done", "reports.build")
    lifecycle.job_finished("done", "reports.build")
    lifecycle.job_cancelled("never-started")  # ended, but no started_at: the queue may have it
    lifecycle.job_started("running")
    queue.kept["done"] = native("done", State.FAILED)
    answers = queue.status_many(["done", "never-started", "running"])
    assert answers["done"].state is State.FINISHED
    assert queue.reads == [["never-started", "running"]]
    assert queue.status("done").state is State.FINISHED
    assert queue.reads == [["never-started", "running"]]  # nothing more was read


class EndsBetweenReads(DictQueue):
    """A queue whose job ends after the store was read and before the queue is.

    The worker writes its last progress and its ending in between: what the two reads of a
    real queue's strategy race against.
    """

    def native_status_many(self, job_ids: list[str]) -> dict[str, JobStatus]:  # type: ignore[override]
        if "j" not in self.kept:
            lifecycle.job_progress("j", Progress(current=4, total=4), "reports.build")
            lifecycle.job_finished("j", "reports.build")
            self.kept["j"] = native("j", State.FINISHED, finished_at=LATER)
        return super().native_status_many(job_ids)


def test_a_job_that_ends_between_the_reads_is_answered_with_its_final_record() -> None:
    queue = EndsBetweenReads()
    lifecycle.job_started("j", "reports.build")
    lifecycle.job_progress("j", Progress(current=1, total=4), "reports.build")
    answer = queue.status("j")
    assert answer.state is State.FINISHED
    assert answer.progress is not None
    assert answer.progress.percent == 100.0  # not the 25 % read before the job ended
    assert answer.finished_at is not None
    assert answer.finished_at != LATER  # the worker's own ending, from the store
    assert queue.status_many(["j"])["j"] == answer  # settled now: the same final record
