"""Decoding a stored row is cached by its values: the same record is the same status object."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from immortus import JobStatus, Progress, State
from immortus.exceptions import CorruptRecord
from immortus.status import MAX_HISTORY, HistoryEntry, HistoryEvent, JobError
from immortus.stores import history as stored_history
from immortus.stores import records


def _row(job_id: str = "job-1", **changes: Any) -> dict[str, Any]:
    status = JobStatus(
        job_id=job_id,
        job_class="jobs.a",
        state=State.STARTED,
        progress=Progress(current=3, total=10, message="row 3"),
        attempts=1,
        meta={"owner": "ada"},
    )
    row = records.encode(status, created=time.time(), expires=None)
    row.update(changes)
    return row


def test_an_unchanged_row_decodes_to_the_same_object() -> None:
    first = records.decode(_row())
    again = records.decode(dict(_row()))  # a fresh row with the same values, as a read gives
    assert again is first
    assert first.progress == Progress(current=3, total=10, message="row 3")
    assert first.meta == {"owner": "ada"}


def test_a_changed_field_decodes_anew() -> None:
    before = records.decode(_row())
    for changes in (
        {"progress_current": 4.0},
        {"state": "finished", "finished_at": time.time()},
        {"meta": '{"owner":"grace"}'},
        {"updated_at": 1_800_000_000.5},
        {"error_type": "ValueError", "error_message": "bad row"},
    ):
        after = records.decode(_row(**changes))
        assert after is not before
        assert after != before


def test_store_private_fields_do_not_split_the_cache() -> None:
    first = records.decode(_row(created=1.0, expires=None))
    assert records.decode(_row(created=2.0, expires=5e9)) is first


def test_text_rows_decode_like_typed_rows() -> None:
    typed = _row(enqueued_at=1_800_000_000.25, attempts=2)
    text = {name: str(value) for name, value in typed.items() if value is not None}
    assert records.decode(text) == records.decode(typed)  # Redis hands back strings


def test_the_cache_is_bounded() -> None:
    for number in range(records.DECODED_KEPT + 50):
        assert records.decode(_row(f"job-{number}")).job_id == f"job-{number}"
    info = records._decode_fields.cache_info()
    assert info.maxsize == records.DECODED_KEPT
    assert info.currsize <= records.DECODED_KEPT


@pytest.mark.parametrize(
    "changes",
    [{"job_id": None}, {"state": "exploded"}, {"attempts": "many"}, {"meta": "[1, 2]"}],
)
def test_a_corrupt_row_is_refused_every_time(changes: dict[str, Any]) -> None:
    row = _row(**changes)
    if row["job_id"] is None:
        del row["job_id"]
    for _ in range(2):  # a failure is not cached as an answer
        with pytest.raises(CorruptRecord):
            records.decode(row)


def test_an_unhashable_value_is_a_corrupt_record() -> None:
    with pytest.raises(CorruptRecord):
        records.decode(_row(meta=["not", "text"]))


# -- the history column ---------------------------------------------------------------------


def _entry(seconds: float, message: str = "x") -> HistoryEntry:
    return HistoryEntry(
        at=datetime.fromtimestamp(seconds, UTC),
        event=HistoryEvent.RETRYING,
        attempt=1,
        error=JobError(type="ValueError", message=message),
        retry_at=datetime.fromtimestamp(seconds + 0.5, UTC),
    )


@pytest.mark.parametrize(
    "message", ['quote " and \\ backslash', "new\nline, comma", "ünïcødé ✓ \x00", "[1,2]"]
)
def test_any_error_message_round_trips_through_the_history_text(message: str) -> None:
    entry = _entry(1_700_000_000.25, message)
    text = stored_history.history_after(None, (entry,))
    assert text is not None
    assert "\n" not in text  # one line per entry
    assert stored_history.read_history(text) == (entry,)


def test_the_history_text_keeps_time_order_and_its_bound() -> None:
    text = stored_history.history_after(None, (_entry(10),))
    text = stored_history.history_after(text, (_entry(5), _entry(20)))  # one late, one in order
    assert [entry.at.timestamp() for entry in stored_history.read_history(text)] == [5, 10, 20]
    for second in range(100, 100 + MAX_HISTORY):
        text = stored_history.history_after(text, (_entry(second),))
    kept = stored_history.read_history(text)
    assert len(kept) == MAX_HISTORY
    assert kept[0].at.timestamp() == 100
    assert stored_history.history_after(text, ()) is text  # nothing to add: nothing rewritten


@pytest.mark.parametrize("text", ["not json", "[1,2", '{"a": 1}', "[1]"])
def test_a_corrupt_history_is_refused(text: str) -> None:
    with pytest.raises(CorruptRecord):
        stored_history.read_history(text)
