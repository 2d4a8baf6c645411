"""``immortus.cancel``: one call for every queue, cooperative for the jobs immortus runs."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

import immortus
from immortus import (
    CancelOutcome,
    JobCancelled,
    State,
    cancel_requests,
    cancelling,
    lifecycle,
    runtime,
)
from immortus.exceptions import (
    ConfigurationError,
    InvalidJobId,
    NotCancellable,
    StoreUnavailable,
    StrategyError,
    UntrackedJobClass,
)
from immortus.registry import lookup
from immortus.status import JobStatus
from immortus.store_strategy import StoreStrategy
from immortus.stores.memory import MemoryStore

#: Generous bound while waiting for a thread to reach a point; never a timing assertion.
WAIT = 10.0


@pytest.fixture(autouse=True)
def no_cancellers_or_requests() -> Iterator[None]:
    """Each test starts without test cancellers or requests, and leaves none behind."""
    cancellers = runtime.part(cancelling.Cancellers).by_queue
    kept = dict(cancellers)
    yield
    cancellers.clear()
    cancellers.update(kept)
    runtime.part(cancel_requests.Requests).reset()


class QueueKept(StoreStrategy):
    """A queue's strategy that reads the store but cannot cancel: its queue's canceller does."""

    supports_cancel: ClassVar[bool] = False


class ReadsRails(StoreStrategy):
    """A strategy that only reads another system's records, and says why it cannot cancel."""

    supports_cancel: ClassVar[bool] = False
    cancel_unsupported: ClassVar[str | None] = (
        "Delayed::Job jobs are read from the Rails database and cannot be cancelled from Python"
    )


def declare_queue(queue: str, strategy: type[StoreStrategy] = QueueKept) -> str:
    """Declare a job class of ``queue``, whose strategy is ``strategy``; return the class."""
    immortus.register_strategy(queue, strategy)
    job_class = f"jobs.{queue}_job"
    immortus.declare(job_class, queue=queue)
    return job_class


# -- outcomes -------------------------------------------------------------------------------


def test_an_unknown_job_is_left_alone(memory_store: MemoryStore) -> None:
    calls: list[str] = []
    immortus.register_canceller("testq", lambda job_id, job_class: calls.append(job_id))
    job_class = declare_queue("testq")

    answer = immortus.cancel("nobody", job_class)

    assert answer.outcome is CancelOutcome.UNKNOWN
    assert answer.status.state is State.UNKNOWN
    assert calls == []
    assert not cancel_requests.is_requested("nobody")


@pytest.mark.parametrize(
    ("end", "outcome"),
    [
        (lifecycle.job_finished, CancelOutcome.ALREADY_COMPLETED),
        (lifecycle.job_failed, CancelOutcome.ALREADY_COMPLETED),
        (lifecycle.job_cancelled, CancelOutcome.CANCELLED),
    ],
)
def test_a_job_that_has_ended_keeps_its_ending_and_nothing_is_asked(
    memory_store: MemoryStore, end: object, outcome: CancelOutcome
) -> None:
    calls: list[str] = []
    immortus.register_canceller("testq", lambda job_id, job_class: calls.append(job_id))
    job_class = declare_queue("testq")
    lifecycle.job_started("j1", job_class)
    assert callable(end)
    end("j1", job_class=job_class)
    ended = immortus.status("j1", job_class)

    answer = immortus.cancel("j1", job_class)

    assert answer.outcome is outcome
    assert answer.status == ended
    assert calls == []


def test_a_queue_canceller_that_stops_the_job_at_once_gives_cancelled(
    memory_store: MemoryStore,
) -> None:
    calls: list[tuple[str, str]] = []

    def revoke(job_id: str, job_class: str) -> None:
        calls.append((job_id, job_class))
        lifecycle.job_cancelled(job_id, job_class)  # a queue dropping a job that never started

    immortus.register_canceller("testq", revoke)
    job_class = declare_queue("testq")
    lifecycle.job_enqueued("j1", job_class)

    answer = immortus.cancel("j1", job_class)

    assert answer.outcome is CancelOutcome.CANCELLED
    assert answer.status.state is State.CANCELLED
    assert answer.status.job_class == job_class
    assert calls == [("j1", job_class)]


def test_a_job_still_running_after_the_cancellers_is_cancelling(memory_store: MemoryStore) -> None:
    immortus.register_canceller("testq", lambda job_id, job_class: None)
    job_class = declare_queue("testq")
    lifecycle.job_started("j1", job_class)

    answer = immortus.cancel("j1", job_class)

    assert answer.outcome is CancelOutcome.CANCELLING
    assert answer.status.state is State.STARTED


def test_a_job_its_canceller_deletes_is_cancelling_with_what_was_known(
    memory_store: MemoryStore,
) -> None:
    deleted: set[str] = set()

    class Deleting(QueueKept):
        def status(self, job_id: str) -> JobStatus:
            return JobStatus.unknown(job_id) if job_id in deleted else super().status(job_id)

    immortus.register_canceller("delq", lambda job_id, job_class: deleted.add(job_id))
    job_class = declare_queue("delq", Deleting)
    lifecycle.job_started("j1", job_class)

    answer = immortus.cancel("j1", job_class)

    assert answer.outcome is CancelOutcome.CANCELLING
    assert answer.status.state is State.STARTED
    assert immortus.status("j1", job_class).state is State.UNKNOWN


def test_the_strategy_is_asked_first_then_the_queue(memory_store: MemoryStore) -> None:
    order: list[str] = []

    class Recording(StoreStrategy):
        def cancel(self, job_id: str) -> None:
            order.append("strategy")
            super().cancel(job_id)

    immortus.register_canceller("bothq", lambda job_id, job_class: order.append("queue"))
    job_class = declare_queue("bothq", Recording)
    lifecycle.job_started("j1", job_class)

    assert immortus.cancel("j1", job_class).outcome is CancelOutcome.CANCELLING
    assert order == ["strategy", "queue"]
    assert cancel_requests.is_requested("j1")


def test_cancel_does_not_need_the_web_opt_in_and_the_opt_in_is_recorded() -> None:
    @immortus.track(name="jobs.open", cancellable=True)
    def opened() -> None: ...

    declared = immortus.declare("jobs.closed")  # a job immortus runs: cooperative cancel
    opted = lookup("jobs.open")
    assert opted is not None
    assert opted.cancellable
    assert not declared.cancellable
    assert immortus.declare("jobs.rails", queue="delayed_job", cancellable=True).cancellable

    immortus.configure(store="memory://")
    lifecycle.job_started("j1", "jobs.closed")
    # immortus.cancel is the app's own code: the per-class opt-in only gates the web route.
    assert immortus.cancel("j1", "jobs.closed").outcome is CancelOutcome.CANCELLING


def test_the_opt_in_is_part_of_the_declaration() -> None:
    immortus.declare("jobs.flip", queue="huey")
    with pytest.raises(ConfigurationError, match="already tracked"):
        immortus.declare("jobs.flip", queue="huey", cancellable=True)
    with pytest.raises(ConfigurationError, match="cancellable must be True or False"):
        immortus.declare("jobs.odd", cancellable="yes")  # type: ignore[arg-type]


# -- who cannot cancel ---------------------------------------------------------------------


class Untouchable(StoreStrategy):
    """Fails the test if it is read: NotCancellable must come before any I/O."""

    supports_cancel: ClassVar[bool] = False

    def status(self, job_id: str) -> JobStatus:
        raise AssertionError("read before the capability check")


def test_nothing_to_cancel_with_is_refused_before_any_read_naming_class_and_why() -> None:
    immortus.configure(store="memory://")
    job_class = declare_queue("noq", Untouchable)

    with pytest.raises(NotCancellable) as refused:
        immortus.cancel("j1", job_class)

    message = str(refused.value)
    assert repr(job_class) in message
    assert "tracking strategy Untouchable cannot cancel jobs" in message
    assert "no canceller is registered for their queue 'noq'" in message
    assert isinstance(refused.value, NotImplementedError)


def test_a_strategy_may_say_why_its_jobs_cannot_be_cancelled() -> None:
    immortus.configure(store="memory://")
    job_class = declare_queue("railsq", ReadsRails)

    with pytest.raises(NotCancellable, match="read from the Rails database") as refused:
        immortus.cancel("j1", job_class)
    assert repr(job_class) in str(refused.value)


@pytest.mark.parametrize(
    ("queue", "setting", "url"),
    [
        ("delayed_job", "IMMORTUS_DELAYED_JOB_URL", "postgresql://nobody@127.0.0.1:9/none"),
        ("sidekiq", "IMMORTUS_SIDEKIQ_URL", "redis://127.0.0.1:9/0"),
    ],
)
def test_the_rails_readers_cannot_cancel_and_say_so_without_reaching_rails(
    monkeypatch: pytest.MonkeyPatch, queue: str, setting: str, url: str
) -> None:
    monkeypatch.setenv(setting, url)  # nothing listens there: any read would fail otherwise
    immortus.configure(store="memory://")
    immortus.declare("ReportJob", queue=queue)

    with pytest.raises(NotCancellable) as refused:
        immortus.cancel("42", "ReportJob")

    assert "jobs of class 'ReportJob' cannot be cancelled" in str(refused.value)
    assert f"no canceller is registered for their queue {queue!r}" in str(refused.value)


def test_a_job_of_no_class_under_a_strategy_that_cannot_cancel_asks_for_its_class() -> None:
    immortus.configure(store="memory://", strategy=Untouchable)

    with pytest.raises(NotCancellable, match=r"without its job class.*give its job class"):
        immortus.cancel("j1")


def test_cancel_resolves_and_checks_exactly_as_status_does() -> None:
    immortus.configure(store="memory://")
    with pytest.raises(InvalidJobId):
        immortus.cancel("")
    with pytest.raises(UntrackedJobClass):
        immortus.cancel("j1", "NobodyTracksThis")


# -- failing cancellers --------------------------------------------------------------------


def test_a_failing_canceller_is_a_strategy_error_without_its_text(
    memory_store: MemoryStore,
) -> None:
    def broken(job_id: str, job_class: str) -> None:
        raise RuntimeError("password=hunter2")

    immortus.register_canceller("testq", broken)
    job_class = declare_queue("testq")
    lifecycle.job_started("j1", job_class)

    with pytest.raises(StrategyError) as failed:
        immortus.cancel("j1", job_class)

    assert (
        str(failed.value)
        == "the canceller of queue 'testq' failed to cancel job 'j1': RuntimeError"
    )
    assert isinstance(failed.value.__cause__, RuntimeError)


@pytest.mark.parametrize(
    "error", [StoreUnavailable("broker down"), NotCancellable("the job runs in a hard loop")]
)
def test_a_cancellers_own_errors_reach_the_caller_as_they_are(
    memory_store: MemoryStore, error: Exception
) -> None:
    def refuse(job_id: str, job_class: str) -> None:
        raise error

    immortus.register_canceller("testq", refuse)
    job_class = declare_queue("testq")
    lifecycle.job_started("j1", job_class)

    with pytest.raises(type(error)) as raised:
        immortus.cancel("j1", job_class)
    assert raised.value is error


def test_register_canceller_refuses_what_cannot_work() -> None:
    with pytest.raises(ConfigurationError, match="queue name"):
        immortus.register_canceller("", lambda job_id, job_class: None)
    with pytest.raises(ConfigurationError, match="not callable"):
        immortus.register_canceller("testq", "revoke")  # type: ignore[arg-type]


# -- a race with the job finishing ends in one terminal state -------------------------------


def test_a_job_finishing_between_the_read_and_the_cancel_stays_finished(
    memory_store: MemoryStore,
) -> None:
    def too_late(job_id: str, job_class: str) -> None:
        lifecycle.job_finished(job_id, job_class)  # the worker wins the race...
        lifecycle.job_cancelled(job_id, job_class)  # ...and the queue's revoke lands after it

    immortus.register_canceller("testq", too_late)
    job_class = declare_queue("testq")
    lifecycle.job_started("j1", job_class)

    answer = immortus.cancel("j1", job_class)

    assert answer.outcome is CancelOutcome.ALREADY_COMPLETED
    assert answer.status.state is State.FINISHED
    assert immortus.status("j1", job_class).state is State.FINISHED


def test_a_job_finishing_after_its_cancellation_stays_cancelled(memory_store: MemoryStore) -> None:
    immortus.register_canceller("testq", lifecycle.job_cancelled)
    job_class = declare_queue("testq")
    lifecycle.job_started("j1", job_class)

    assert immortus.cancel("j1", job_class).outcome is CancelOutcome.CANCELLED
    lifecycle.job_finished("j1", job_class)  # the worker's late news

    assert immortus.status("j1", job_class).state is State.CANCELLED
    assert immortus.cancel("j1", job_class).outcome is CancelOutcome.CANCELLED


# -- cooperative cancel of a job immortus runs --------------------------------------------


def test_a_running_job_stops_at_its_next_progress_and_reads_cancelled(
    memory_store: MemoryStore,
) -> None:
    started, cancelled_asked = threading.Event(), threading.Event()
    seen: list[BaseException] = []
    body_went_on: list[bool] = []

    def work() -> None:
        try:
            with immortus.running("j1"):
                immortus.progress(1, 10)
                started.set()
                assert cancelled_asked.wait(WAIT)
                try:
                    immortus.progress(2, 10)
                except Exception:  # noqa: BLE001 - a job that swallows errors cannot swallow this
                    body_went_on.append(True)
        except BaseException as exc:  # noqa: BLE001 - the test looks at what escaped
            seen.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    assert started.wait(WAIT)

    answer = immortus.cancel("j1")
    assert answer.outcome is CancelOutcome.CANCELLING
    assert answer.status.state is State.STARTED
    cancelled_asked.set()
    worker.join(WAIT)

    assert not worker.is_alive()
    assert body_went_on == []
    [escaped] = seen
    assert isinstance(escaped, JobCancelled)
    assert escaped.job_id == "j1"
    final = immortus.status("j1")
    assert final.state is State.CANCELLED
    assert final.progress is not None
    assert final.progress.current == 1  # the refused report was not recorded
    assert immortus.cancel("j1").outcome is CancelOutcome.CANCELLED
    assert not cancel_requests.is_requested("j1")  # forgotten once the job ended


def test_a_job_that_checks_between_steps_sees_the_request(memory_store: MemoryStore) -> None:
    lifecycle.job_enqueued("j1")
    seen: list[bool] = []
    with immortus.running("j1") as job:
        seen.append(immortus.cancel_requested())
        assert immortus.cancel("j1").outcome is CancelOutcome.CANCELLING
        seen.extend([immortus.cancel_requested(), job.cancel_requested])
    assert seen == [False, True, True]


def test_a_job_cancelled_while_it_waited_never_runs(memory_store: MemoryStore) -> None:
    lifecycle.job_enqueued("j1")
    assert immortus.cancel("j1").outcome is CancelOutcome.CANCELLING
    ran: list[bool] = []

    with pytest.raises(JobCancelled), immortus.running("j1"):
        ran.append(True)

    assert ran == []
    assert immortus.status("j1").state is State.CANCELLED


def test_cancel_requested_outside_a_job_is_false_and_says_why_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="immortus"):
        assert not immortus.cancel_requested()
        assert not immortus.cancel_requested()
    [warning] = [record.getMessage() for record in caplog.records]
    assert "immortus.cancel_requested() was called outside a tracked job" in warning


class CarryingStore(MemoryStore):
    """A store that carries cancel requests to other processes, as a shared store would."""

    def __init__(self) -> None:
        super().__init__()
        self.requested: set[str] = set()
        self.asked: list[str] = []

    def request_cancel(self, job_id: str) -> bool:
        self.requested.add(job_id)
        return True

    def cancel_requested(self, job_id: str) -> bool:
        self.asked.append(job_id)
        return job_id in self.requested


def test_a_store_that_carries_requests_is_given_them() -> None:
    store = CarryingStore()
    assert isinstance(store, cancel_requests.CancelRequestStore)
    assert isinstance(MemoryStore(), cancel_requests.CancelRequestStore)  # every store does
    immortus.configure(store=store)
    lifecycle.job_started("j1")

    assert immortus.cancel("j1").outcome is CancelOutcome.CANCELLING
    assert store.requested == {"j1"}


def test_a_running_job_sees_a_request_made_in_another_process_through_its_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cancel_requests, "POLL_INTERVAL", 1e9)  # one question per job, here
    store = CarryingStore()
    immortus.configure(store=store, progress_interval=0)

    def work() -> None:
        with immortus.running("j1") as job:
            assert store.asked == ["j1"]  # asked once on entry: not requested
            immortus.progress(1, 10)
            assert store.asked == ["j1"]  # not again within the poll interval
            store.request_cancel("j1")  # what another process's immortus.cancel("j1") writes
            job._cancel_polled = float("-inf")  # the interval has passed
            immortus.progress(2, 10)

    with pytest.raises(JobCancelled):
        work()

    assert store.asked == ["j1", "j1"]
    assert immortus.status("j1").state is State.CANCELLED


def test_a_store_that_cannot_answer_lets_the_job_run_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Unreachable(CarryingStore):
        def cancel_requested(self, job_id: str) -> bool:
            raise StoreUnavailable("the store is away")

    immortus.configure(store=Unreachable(), progress_interval=0)
    with caplog.at_level(logging.DEBUG, logger="immortus"), immortus.running("j1") as job:
        assert not job.cancel_requested
    assert immortus.status("j1").state is State.FINISHED
    assert any(
        "cannot ask whether job 'j1' was cancelled" in r.getMessage() for r in caplog.records
    )


def test_a_process_remembers_a_bounded_number_of_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cancel_requests, "MAX_KEPT", 2)
    for job_id in ("a", "b", "c"):
        cancel_requests.request(job_id)
    assert [cancel_requests.is_requested(job_id) for job_id in "abc"] == [False, True, True]


# -- async twin ----------------------------------------------------------------------------


def test_acancel_answers_as_cancel(memory_store: MemoryStore) -> None:
    lifecycle.job_started("j1")
    lifecycle.job_finished("j2")

    async def both() -> tuple[immortus.Cancellation, ...]:
        return await asyncio.gather(
            immortus.acancel("j1"), immortus.acancel("j2"), immortus.acancel("nobody")
        )

    running, done, unknown = asyncio.run(both())
    assert running.outcome is CancelOutcome.CANCELLING
    assert done.outcome is CancelOutcome.ALREADY_COMPLETED
    assert unknown.outcome is CancelOutcome.UNKNOWN
