from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest

import immortus
from immortus import JobStatus, Progress, State, TrackingStrategy, lifecycle
from immortus.exceptions import InvalidStrategy, StrategyError
from immortus.strategy import as_strategy


# The Ruby gem immortus's custom strategy, translated line by line: a plain class,
# completed() mandatory, meta() optional, callbacks taking only job_id. It must work unchanged.
class MyCustomTrackingStrategy:
    def __init__(self) -> None:
        self.finished: set[str] = set()
        self.calls: list[tuple[str, str]] = []

    def job_enqueued(self, job_id):  # type: ignore[no-untyped-def]
        self.calls.append(("job_enqueued", job_id))

    def job_started(self, job_id):  # type: ignore[no-untyped-def]
        self.calls.append(("job_started", job_id))

    def job_finished(self, job_id):  # type: ignore[no-untyped-def]
        self.calls.append(("job_finished", job_id))
        self.finished.add(job_id)

    def completed(self, job_id):  # type: ignore[no-untyped-def]
        return job_id in self.finished

    def meta(self, job_id):  # type: ignore[no-untyped-def]
        return {"reported_by": "my custom strategy"}


def test_the_seed_custom_strategy_works_unchanged() -> None:
    seed = MyCustomTrackingStrategy()
    immortus.register_strategy("my_custom_tracking_strategy", seed)

    @immortus.track(name="newsletters.send", strategy="my_custom_tracking_strategy")
    def send_newsletter() -> None:
        pass

    job_class = "newsletters.send"
    assert immortus.status("n-1", job_class).completed is False
    lifecycle.job_enqueued("n-1", job_class)
    with immortus.running("n-1", job_class):
        send_newsletter()
    body = immortus.status("n-1", job_class).to_dict()
    assert body["completed"] is True
    assert body["status"] == "finished"
    assert body["reported_by"] == "my custom strategy"
    assert body["job_id"] == "n-1"
    assert seed.calls == [("job_enqueued", "n-1"), ("job_started", "n-1"), ("job_finished", "n-1")]


def test_hooks_the_seed_did_not_know_are_simply_skipped() -> None:
    seed = MyCustomTrackingStrategy()
    immortus.configure(strategy=seed)
    with pytest.raises(RuntimeError), immortus.running("x-1", None):
        raise RuntimeError("boom")  # job_failed is not defined: nothing to call, nothing raised
    assert seed.calls == [("job_started", "x-1")]


class OnlyStatus(TrackingStrategy):
    def status(self, job_id: str) -> JobStatus:
        return JobStatus(job_id=job_id, state=State.RETRYING)


class OnlyCompleted(TrackingStrategy):
    certain = False

    def completed(self, job_id: str) -> bool:
        return job_id == "done"


class Neither(TrackingStrategy):
    pass


def test_status_and_completed_derive_from_each_other() -> None:
    assert OnlyStatus().completed("j") is False
    assert OnlyCompleted().status("done").state is State.FINISHED
    assert OnlyCompleted().status("other").state is State.STARTED
    assert OnlyCompleted().status("done").certain is False


def test_overriding_neither_is_refused_at_registration_and_at_first_use() -> None:
    with pytest.raises(InvalidStrategy, match="defines neither status"):
        immortus.register_strategy("neither", Neither)
    with pytest.raises(InvalidStrategy, match="defines neither status"):
        Neither().status("j")
    with pytest.raises(InvalidStrategy, match="defines neither status"):
        Neither().completed("j")
    with pytest.raises(InvalidStrategy, match="neither status"):
        as_strategy(object())


def test_a_class_needing_arguments_is_refused_clearly() -> None:
    class NeedsStore(OnlyStatus):
        def __init__(self, store: object) -> None:
            self.store = store

    with pytest.raises(InvalidStrategy, match="register an instance instead"):
        as_strategy(NeedsStore)


def test_duck_typed_status_must_return_a_job_status() -> None:
    class Liar:
        def status(self, job_id: str) -> str:
            return "finished"

    immortus.configure(strategy=Liar())
    with pytest.raises(InvalidStrategy, match="not a JobStatus"):
        immortus.status("j")


def test_meta_must_be_a_mapping() -> None:
    class BadMeta:
        def completed(self, job_id: str) -> bool:
            return True

        def meta(self, job_id: str) -> list[str]:
            return ["nope"]

    immortus.configure(strategy=BadMeta())
    with pytest.raises(InvalidStrategy, match="not a mapping"):
        immortus.status("j")


def test_a_strategy_that_raises_becomes_strategy_error_with_the_cause() -> None:
    class Broken(TrackingStrategy):
        def status(self, job_id: str) -> JobStatus:
            raise KeyError("internal detail")

    immortus.configure(strategy=Broken())
    with pytest.raises(StrategyError, match="Broken failed on job 'j'") as caught:
        immortus.status("j")
    assert isinstance(caught.value.__cause__, KeyError)


class Recorder(TrackingStrategy):
    """Records what each callback receives."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def completed(self, job_id: str) -> bool:
        return False

    def job_started(self, job_id: str, **details: Any) -> None:
        self.calls.append(("job_started", (job_id,), details))

    def job_failed(self, job_id, error=None):  # type: ignore[no-untyped-def]
        self.calls.append(("job_failed", (job_id, error), {}))

    def job_progress(self, job_id: str, progress: Progress, *, attempt: int | None = None) -> None:
        self.calls.append(("job_progress", (job_id, progress), {"attempt": attempt}))

    def meta(self, job_id: str) -> Mapping[str, Any]:
        return {}


def test_callbacks_receive_only_what_they_declare() -> None:
    recorder = Recorder()
    immortus.configure(strategy=recorder, progress_interval=0)

    def job() -> None:
        immortus.progress(1, 2)
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"), immortus.running("j", "a.b", attempt=2):
        job()
    names = [call[0] for call in recorder.calls]
    assert names == ["job_started", "job_progress", "job_failed"]
    started_details = recorder.calls[0][2]
    assert started_details["job_class"] == "a.b"
    assert started_details["attempt"] == 2
    assert "at" in started_details
    assert recorder.calls[1][2] == {"attempt": 2}
    failed_error = recorder.calls[2][1][1]
    assert (failed_error.type, failed_error.message) == ("ValueError", "bad")


def test_a_failing_callback_is_logged_and_never_reaches_the_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Exploding(TrackingStrategy):
        def completed(self, job_id: str) -> bool:
            return False

        def job_started(self, job_id: str) -> None:
            raise ConnectionError("store down")

        def job_finished(self, job_id: str) -> None:
            raise RuntimeError("also down")

    immortus.configure(strategy=Exploding())
    ran = []
    with caplog.at_level(logging.ERROR, logger="immortus"), immortus.running("j"):
        ran.append(True)
    assert ran == [True]
    messages = [record.getMessage() for record in caplog.records]
    assert any("Exploding.job_started('j') failed" in message for message in messages)
    assert any("Exploding.job_finished('j') failed" in message for message in messages)
    assert all(record.exc_info for record in caplog.records)


def test_job_lost_marks_a_running_job_lost_and_a_redelivery_starts_it_again() -> None:
    immortus.configure(store="memory://")
    lifecycle.job_started("lost-1", "jobs.lost", attempt=1)
    assert lifecycle.job_lost("lost-1", RuntimeError("worker killed"), "jobs.lost", attempt=1)
    lost = immortus.status("lost-1")
    assert (lost.state, lost.completed, lost.success) == (State.LOST, True, False)
    assert lost.error is not None
    assert (lost.error.type, lost.error.message) == ("RuntimeError", "worker killed")

    lifecycle.job_started("lost-1", "jobs.lost", attempt=2)
    again = immortus.status("lost-1")
    assert (again.state, again.attempts, again.error) == (State.STARTED, 2, None)


def test_job_lost_never_overrides_an_ending() -> None:
    immortus.configure(store="memory://")
    lifecycle.job_started("lost-2")
    lifecycle.job_finished("lost-2")
    lifecycle.job_lost("lost-2", RuntimeError("late news of a dead worker"))
    assert immortus.status("lost-2").state is State.FINISHED
