"""A job's history through the Python API: only on request, never in a body by default."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

import immortus
from immortus import lifecycle
from immortus.status import HistoryEntry, HistoryEvent, JobError, JobStatus, State
from immortus.stores.memory import MemoryStore

DUE = datetime(2030, 1, 1, tzinfo=UTC)


def _a_retried_job() -> None:
    lifecycle.job_enqueued("h1", "reports.build")
    lifecycle.job_started("h1", "reports.build", attempt=1)
    lifecycle.job_retrying("h1", TimeoutError("slow"), "reports.build", attempt=1, retry_at=DUE)
    lifecycle.job_started("h1", "reports.build", attempt=2)
    lifecycle.job_failed("h1", ValueError("bad row"), "reports.build", attempt=2)


def test_a_retried_jobs_first_attempt_is_kept_in_its_history(memory_store: MemoryStore) -> None:
    _a_retried_job()
    status = immortus.status("h1", history=True)
    assert status.state is State.FAILED
    assert [(entry.event, entry.attempt) for entry in status.history] == [
        (HistoryEvent.ENQUEUED, 0),
        (HistoryEvent.STARTED, 1),
        (HistoryEvent.RETRYING, 1),
        (HistoryEvent.STARTED, 2),
        (HistoryEvent.FAILED, 2),
    ]
    first_error = status.history[2].error
    assert first_error == JobError(type="TimeoutError", message="slow")
    assert status.history[2].retry_at == DUE
    body = status.to_dict(history=True)
    assert list(body)[-1] == "history"
    assert body["history"][2] == {
        "at": body["history"][2]["at"],
        "event": "retrying",
        "attempt": 1,
        "error": {"type": "TimeoutError", "message": "slow"},
        "retry_at": "2030-01-01T00:00:00.000Z",
    }


def test_without_the_option_there_is_no_history_and_no_key(memory_store: MemoryStore) -> None:
    _a_retried_job()
    status = immortus.status("h1")
    assert status.history == ()
    assert "history" not in status.to_dict()
    assert "history" in immortus.status("h1", history=True).to_dict(history=True)


def test_the_async_twin_gives_the_same_history(memory_store: MemoryStore) -> None:
    _a_retried_job()
    answer = asyncio.run(immortus.astatus("h1", history=True))
    assert answer.history == immortus.status("h1", history=True).history
    assert asyncio.run(immortus.astatus("h1")).history == ()


def test_an_unknown_job_has_an_empty_history(memory_store: MemoryStore) -> None:
    status = immortus.status("nobody", history=True)
    assert status.state is State.UNKNOWN
    assert status.to_dict(history=True)["history"] == []


def test_meta_cannot_take_the_history_key() -> None:
    entry = HistoryEntry(at=DUE, event=HistoryEvent.CANCEL_REQUESTED, attempt=1)
    status = JobStatus(
        job_id="m", state=State.STARTED, meta={"history": "forged"}, history=(entry,)
    )
    assert "history" not in status.to_dict()
    assert status.to_dict(history=True)["history"] == [entry.to_dict()]


class NoStore:
    """A strategy of the user's that keeps no store: it has no history to give."""

    def status(self, job_id: str) -> JobStatus:
        return JobStatus(job_id=job_id, state=State.STARTED)


def test_a_strategy_without_a_store_gives_an_empty_history() -> None:
    immortus.configure(strategy=NoStore())
    assert immortus.status("s", history=True).history == ()


@pytest.mark.parametrize("history", [False, True])
def test_a_status_read_costs_no_history_read_unless_asked(
    memory_store: MemoryStore, monkeypatch: pytest.MonkeyPatch, history: bool
) -> None:
    _a_retried_job()
    reads: list[str] = []
    original = MemoryStore.history

    def counted(store: MemoryStore, job_id: str) -> tuple[HistoryEntry, ...]:
        reads.append(job_id)
        return original(store, job_id)

    monkeypatch.setattr(MemoryStore, "history", counted)
    immortus.status("h1", history=history)
    assert reads == (["h1"] if history else [])
