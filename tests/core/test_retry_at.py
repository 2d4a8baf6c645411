"""``retry_at``: when a retrying job's next attempt is due, from the queue hook to the body."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

import immortus
from immortus import lifecycle
from immortus.exceptions import InvalidInput
from immortus.jobs import start_attempt
from immortus.queues.native import merge
from immortus.status import BODY_KEYS, JobStatus, State
from immortus.stores import spool
from immortus.stores.memory import MemoryStore
from immortus.transitions import Event, EventKind, apply

DUE = datetime(2030, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)


def test_a_retrying_attempt_reports_when_the_next_one_runs(memory_store: MemoryStore) -> None:
    run = start_attempt("r1", attempt=1)
    run.fail(TimeoutError("slow"), final_attempt=False, retry_at=DUE)
    status = immortus.status("r1")
    assert status.state is State.RETRYING
    assert status.retry_at == DUE
    assert status.to_dict()["retry_at"] == "2030-01-02T03:04:05.678Z"


def test_lifecycle_job_retrying_carries_retry_at(memory_store: MemoryStore) -> None:
    lifecycle.job_started("r2", attempt=1)
    assert lifecycle.job_retrying("r2", ValueError("x"), None, attempt=1, retry_at=DUE)
    assert immortus.status("r2").retry_at == DUE


def test_the_next_attempt_clears_retry_at(memory_store: MemoryStore) -> None:
    lifecycle.job_retrying("r3", ValueError("x"), attempt=1, retry_at=DUE)
    lifecycle.job_started("r3", attempt=2)
    status = immortus.status("r3")
    assert status.state is State.STARTED
    assert status.retry_at is None
    assert status.to_dict()["retry_at"] is None


def test_an_ending_clears_retry_at() -> None:
    retrying = apply(None, Event(kind=EventKind.RETRYING, job_id="r4", attempt=1, retry_at=DUE))
    assert retrying is not None
    assert retrying.retry_at == DUE
    cancelled = apply(retrying, Event(kind=EventKind.CANCELLED, job_id="r4"))
    assert cancelled is not None
    assert cancelled.retry_at is None


@pytest.mark.parametrize("moment", [datetime(2030, 1, 1), "2030-01-01T00:00:00Z", 1.5])
def test_a_naive_or_non_datetime_retry_at_is_refused_before_anything_is_reported(
    memory_store: MemoryStore, moment: object
) -> None:
    with pytest.raises(InvalidInput, match="retry_at"):
        lifecycle.job_retrying("r5", None, retry_at=moment)  # type: ignore[arg-type]
    run = start_attempt("r6")
    with pytest.raises(InvalidInput, match="retry_at"):
        run.fail(ValueError("x"), final_attempt=False, retry_at=moment)  # type: ignore[arg-type]
    run.fail(ValueError("x"), final_attempt=False, retry_at=DUE + timedelta(seconds=1))
    assert immortus.status("r5").state is State.UNKNOWN
    assert immortus.status("r6").retry_at == DUE + timedelta(seconds=1)


def test_every_body_has_retry_at_so_its_shape_is_stable() -> None:
    assert "retry_at" in BODY_KEYS
    for status in (JobStatus.unknown("u"), JobStatus(job_id="s", state=State.STARTED)):
        body = status.to_dict()
        assert tuple(body) == BODY_KEYS
        assert body["retry_at"] is None


def test_a_native_strategy_takes_the_later_retry_time_of_a_retrying_job() -> None:
    recorded = JobStatus(job_id="n", state=State.RETRYING, attempts=1, retry_at=DUE)
    later = DUE + timedelta(minutes=5)
    queue_later = JobStatus(job_id="n", state=State.RETRYING, attempts=2, retry_at=later)
    queue_earlier = JobStatus(job_id="n", state=State.RETRYING, retry_at=DUE - timedelta(1))
    queue_unaware = JobStatus(job_id="n", state=State.RETRYING)
    assert merge(recorded, queue_later, "n").retry_at == later
    assert merge(recorded, queue_earlier, "n").retry_at == DUE
    assert merge(recorded, queue_unaware, "n").retry_at == DUE
    unrecorded = dataclasses.replace(recorded, retry_at=None)
    assert merge(unrecorded, queue_earlier, "n").retry_at == DUE - timedelta(1)
    started = JobStatus(job_id="n", state=State.STARTED, attempts=2)
    assert merge(started, queue_later, "n").retry_at is None  # the record knows a newer attempt
    assert merge(None, queue_later, "n").retry_at == later


def test_retry_at_survives_the_spool_of_events_held_through_an_outage() -> None:
    held = Event(kind=EventKind.RETRYING, job_id="s", attempt=1, retry_at=DUE)
    written = json.loads(json.dumps(spool.encode_event(held)))
    assert spool.decode_event(written) == held
    del written["retry_at"]  # a file spooled by an older immortus
    assert spool.decode_event(written).retry_at is None
