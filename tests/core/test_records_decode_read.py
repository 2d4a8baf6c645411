"""Decoding a row of READ_COLUMNS values in order: the stores' status reads, without a mapping."""

from __future__ import annotations

import time
from typing import Any

import pytest

from immortus import JobStatus, Progress, State
from immortus.exceptions import CorruptRecord
from immortus.status import JobError
from immortus.stores import records


def _row(job_id: str = "read-1", **changes: Any) -> dict[str, Any]:
    status = JobStatus(
        job_id=job_id,
        job_class="jobs.a",
        state=State.FAILED,
        progress=Progress(current=3, total=10, message="row 3"),
        error=JobError(type="ValueError", message="bad", traceback="Traceback ..."),
        attempts=2,
        meta={"owner": "ada"},
        enqueued_at=None,
        group_id="batch-7",
    )
    row = records.encode(status, created=time.time(), expires=None)
    row.update(changes)
    return row


def _values(row: dict[str, Any]) -> list[Any]:
    """The row as a store's read hands it back: READ_COLUMNS values, in order."""
    return [row.get(name) for name in records.READ_COLUMNS]


def _text(row: dict[str, Any]) -> dict[str, Any]:
    """The row as Redis hands it back: text, absent fields missing."""
    return {name: str(value) for name, value in row.items() if value is not None}


@pytest.mark.parametrize("shape", [dict, _text])
def test_values_in_order_decode_like_the_row_by_name(shape: Any) -> None:
    now = time.time()
    for row in (_row(), _row("read-2", state="started", error_type=None), _row(meta=None)):
        shaped = shape(row)
        by_name = records.decode(shaped, now=now)
        assert records.decode_read(_values(shaped), now) is by_name  # one cache for both


def test_a_started_record_whose_lease_ran_out_reads_lost() -> None:
    now = time.time()
    values = _values(_row(state="started", error_type=None, alive_until=now - 1))
    seen = records.decode_read(values, now)
    assert seen.state is State.LOST
    assert seen.error is not None
    assert seen.error.type == records.LOST_ERROR_TYPE
    assert records.decode_read(values, now - 2).state is State.STARTED  # before it ran out


@pytest.mark.parametrize(
    "changes",
    [
        {"job_id": None},
        {"state": "exploded"},
        {"state": None},
        {"attempts": "many"},
        {"meta": "[1, 2]"},
        {"meta": ["not", "text"]},
        {"enqueued_at": "yesterday"},
        {"progress_current": "half"},
        {"state": "started", "error_type": None, "alive_until": "soon"},
    ],
)
def test_a_corrupt_row_is_refused_every_time(changes: dict[str, Any]) -> None:
    values = _values({**_row("corrupt"), **changes})
    for _ in range(2):  # a failure is not cached as an answer
        with pytest.raises(CorruptRecord):
            records.decode_read(values, time.time())


def test_a_short_row_is_a_corrupt_record() -> None:
    with pytest.raises(CorruptRecord):
        records.decode_read(_values(_row())[:5], time.time())
