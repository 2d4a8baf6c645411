from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from immortus import JobError, JobStatus, Progress, State
from immortus.exceptions import InvalidProgress, InvalidState
from immortus.status import BODY_KEYS, RESERVED_KEYS, isoformat


def test_state_values_are_exactly_the_wire_format() -> None:
    assert [state.value for state in State] == [
        "created", "started", "retrying", "finished", "failed", "cancelled", "lost", "unknown",
    ]  # fmt: skip
    assert isinstance(State.STARTED, str)
    assert str.__eq__(State.STARTED, "started")


@pytest.mark.parametrize(
    ("state", "completed", "success"),
    [
        (State.CREATED, False, None),
        (State.STARTED, False, None),
        (State.RETRYING, False, None),
        (State.FINISHED, True, True),
        (State.FAILED, True, False),
        (State.CANCELLED, True, False),
        (State.LOST, True, False),
        (State.UNKNOWN, False, None),
    ],
)
def test_completed_and_success_follow_the_design_table(
    state: State, completed: bool, success: bool | None
) -> None:
    assert state.completed is completed
    assert state.success is success
    status = JobStatus(job_id="j", state=state)
    assert (status.completed, status.success) == (completed, success)


def test_parse_accepts_values_and_refuses_others_with_the_list() -> None:
    assert State.parse("lost") is State.LOST
    assert State.parse(State.FAILED) is State.FAILED
    with pytest.raises(InvalidState, match="expected one of: created, started"):
        State.parse("running")
    with pytest.raises(InvalidState):
        State.parse("STARTED")


def test_progress_percent() -> None:
    assert Progress(current=37, total=100).percent == 37.0
    assert Progress(current=1, total=3).percent == 33.33
    assert Progress(current=0, total=0).percent == 100.0
    assert Progress(current=5).percent is None


@pytest.mark.parametrize(
    ("current", "total", "match"),
    [
        (-1, 10, "must not be negative"),
        (1, -10, "must not be negative"),
        (math.nan, 10, "finite"),
        (1, math.inf, "finite"),
        (True, 10, "must be a number"),
        ("3", 10, "must be a number"),
        (11, 10, "exceeds total"),
    ],
)
def test_progress_refuses_bad_numbers(current: object, total: object, match: str) -> None:
    with pytest.raises(InvalidProgress, match=match):
        Progress(current=current, total=total)  # type: ignore[arg-type]


def test_progress_overshoot_only_when_asked() -> None:
    progress = Progress(current=120, total=100, allow_overshoot=True)
    assert progress.percent == 120.0


def test_progress_message_limits() -> None:
    assert Progress(current=1, message="x" * 1000).message == "x" * 1000
    with pytest.raises(InvalidProgress, match="limit is 1000"):
        Progress(current=1, message="x" * 1001)
    with pytest.raises(InvalidProgress, match="must be a string"):
        Progress(current=1, message=b"bytes")  # type: ignore[arg-type]


def test_progress_wire_form() -> None:
    assert Progress(current=37, total=100, message="row 37").to_dict() == {
        "current": 37,
        "total": 100,
        "percent": 37.0,
        "message": "row 37",
    }


class ImportFailed(Exception):
    pass


def test_job_error_from_exception_names_the_type_and_keeps_the_traceback_private() -> None:
    try:
        raise ImportFailed("row 7 is malformed")
    except ImportFailed as exc:
        error = JobError.from_exception(exc)
    assert error.type == "tests.core.test_status.ImportFailed"
    assert error.message == "row 7 is malformed"
    assert error.traceback is not None
    assert "raise ImportFailed" in error.traceback
    assert error.to_dict() == {"type": error.type, "message": "row 7 is malformed"}
    assert "traceback" not in repr(error)


def test_job_error_from_builtin_and_huge_messages() -> None:
    error = JobError.from_exception(ValueError("x" * 10_000))
    assert error.type == "ValueError"
    assert len(error.message) == 2000
    assert error.message.endswith("…")


def test_isoformat_is_utc_with_milliseconds_and_z() -> None:
    moment = datetime(2026, 11, 28, 13, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert isoformat(moment) == "2026-11-28T12:00:00.123Z"
    assert isoformat(None) is None


def test_to_dict_is_the_design_body_and_reserved_keys_win_over_meta() -> None:
    started = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    status = JobStatus(
        job_id="7f0c",
        job_class="reports.build",
        state=State.STARTED,
        progress=Progress(current=37, total=100, message="row 37"),
        attempts=1,
        enqueued_at=started,
        started_at=started,
        meta={"status": "forged", "job_id": "other", "rows": 100},
    )
    body = status.to_dict()
    assert body == {
        "job_id": "7f0c",
        "job_class": "reports.build",
        "status": "started",
        "completed": False,
        "success": None,
        "progress": {"current": 37, "total": 100, "percent": 37.0, "message": "row 37"},
        "error": None,
        "attempts": 1,
        "enqueued_at": "2026-11-28T12:00:00.000Z",
        "started_at": "2026-11-28T12:00:00.000Z",
        "finished_at": None,
        "certain": True,
        "retry_at": None,
        "rows": 100,
    }
    assert set(body) == {*BODY_KEYS, "rows"}
    assert set(status.to_dict(history=True)) >= RESERVED_KEYS  # history: on request only


def test_unknown_status() -> None:
    status = JobStatus.unknown("nope", "a.b")
    assert status.to_dict()["status"] == "unknown"
    assert (status.completed, status.success, status.job_class) == (False, None, "a.b")


def test_an_exception_whose_message_cannot_be_read_is_still_captured() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    error = JobError.from_exception(Unprintable())
    assert error.type.endswith("Unprintable")
    assert error.message == "<Unprintable: its message could not be read>"
    assert error.traceback is not None


def test_an_inferred_finish_claims_no_success() -> None:
    inferred = JobStatus(job_id="j", state=State.FINISHED, certain=False)
    assert (inferred.completed, inferred.success) == (True, None)
    assert inferred.to_dict()["success"] is None
    recorded = JobStatus(job_id="j", state=State.FINISHED)
    assert (recorded.success, recorded.to_dict()["success"]) == (True, True)
    failed = JobStatus(job_id="j", state=State.FAILED, certain=False)
    assert failed.success is False
