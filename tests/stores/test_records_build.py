"""Building a status anew from a row of READ_COLUMNS: what a read of a record not kept costs."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from immortus import Progress, State
from immortus.stores import records
from tests.core.test_records_decode_read import _row as stored_row
from tests.core.test_records_decode_read import _values as read_values


def _values(job_id: str = "build-1", **changes: Any) -> list[Any]:
    """A failed record with progress, error, meta and times, as a store's status read gives it."""
    times = {"enqueued_at": 1_800_000_000.25, "started_at": 1_800_000_001.5}
    return read_values(stored_row(job_id, **{**times, **changes}))


def test_a_built_status_is_the_decoded_one_but_a_new_object() -> None:
    values = _values()
    kept = records.decode_read(values, time.time())
    built = records.build_read(values)
    assert built == kept
    assert built is not kept  # nothing kept is reused: the cost of a record read the first time
    assert records.build_read(values) is not built
    assert built.enqueued_at == datetime.fromtimestamp(1_800_000_000.25, UTC)
    assert built.progress == Progress(current=3, total=10, message="row 3")


@pytest.mark.parametrize("shape", [float, int, str], ids=["float", "int", "text"])
def test_times_decode_alike_whatever_number_type_the_driver_hands_back(shape: Any) -> None:
    values = _values(enqueued_at=shape(1_800_000_000), updated_at=shape(1_800_000_002))
    built = records.build_read(values)
    assert built.enqueued_at == datetime.fromtimestamp(1_800_000_000, UTC)
    assert built.updated_at == datetime.fromtimestamp(1_800_000_002, UTC)
    assert built.updated_at is not None
    assert built.updated_at.tzinfo is UTC


def test_a_started_record_carries_its_lease_as_stored() -> None:
    lease = time.time() - 60  # ran out: a read would say lost; the build says what is stored
    values = _values(state="started", finished_at=None, error_type=None, alive_until=lease)
    built = records.build_read(values)
    assert built.state is State.STARTED
    assert built.alive_until == datetime.fromtimestamp(lease, UTC)
    assert records.decode_read(values, time.time()).state is State.LOST


@pytest.mark.parametrize(
    "changes",
    [{"job_id": None}, {"state": "exploded"}, {"started_at": "noon"}, {"meta": "[1, 2]"}],
)
def test_a_corrupt_row_raises(changes: dict[str, Any]) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        records.build_read(_values(**changes))
