"""The transition rules on their own; every store also runs them (tests/stores/contract.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from immortus.exceptions import InvalidInput, InvalidJobId
from immortus.status import JobError, JobStatus, Progress, State
from immortus.transitions import Event, EventKind, apply

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_event_validation() -> None:
    with pytest.raises(InvalidJobId):
        Event(kind=EventKind.STARTED, job_id="")
    with pytest.raises(InvalidInput, match="timezone-aware"):
        Event(kind=EventKind.STARTED, job_id="j", at=datetime(2026, 1, 1))
    with pytest.raises(InvalidInput, match="attempt"):
        Event(kind=EventKind.STARTED, job_id="j", attempt=0)
    with pytest.raises(InvalidInput, match="needs a Progress"):
        Event(kind=EventKind.PROGRESS, job_id="j")
    with pytest.raises(InvalidInput, match="mapping"):
        Event(kind=EventKind.META, job_id="j")
    with pytest.raises(InvalidInput, match="JSON"):
        Event(kind=EventKind.META, job_id="j", meta={"x": {1, 2}})


def test_progress_moves_a_waiting_job_to_started() -> None:
    status = apply(None, Event(kind=EventKind.ENQUEUED, job_id="j", at=T0))
    status = apply(status, Event(kind=EventKind.PROGRESS, job_id="j", progress=Progress(current=1)))
    assert status is not None
    assert (status.state, status.attempts) == (State.STARTED, 1)


def test_progress_after_lost_is_the_same_attempt_still_running() -> None:
    status = apply(None, Event(kind=EventKind.STARTED, job_id="j", at=T0))
    status = apply(
        status,
        Event(
            kind=EventKind.LOST,
            job_id="j",
            at=T0,
            error=JobError(type="WorkerLost", message="quiet"),
        ),
    )
    status = apply(status, Event(kind=EventKind.PROGRESS, job_id="j", progress=Progress(current=2)))
    assert status is not None
    assert (status.state, status.attempts, status.error) == (State.STARTED, 1, None)


def test_explicit_attempt_numbers_are_kept() -> None:
    status = apply(None, Event(kind=EventKind.STARTED, job_id="j", attempt=3))
    assert status is not None
    assert status.attempts == 3
    assert apply(status, Event(kind=EventKind.STARTED, job_id="j", attempt=3)) is None
    again = apply(status, Event(kind=EventKind.STARTED, job_id="j", attempt=4))
    assert again is not None
    assert again.attempts == 4


KINDS = [kind for kind in EventKind if kind is not EventKind.META]
events = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.integers(min_value=0, max_value=60),
        st.one_of(st.none(), st.integers(min_value=1, max_value=4)),
    ),
    max_size=25,
)


def _event(kind: EventKind, seconds: int, attempt: int | None) -> Event:
    return Event(
        kind=kind,
        job_id="j",
        at=T0 + timedelta(seconds=seconds),
        attempt=attempt,
        progress=Progress(current=seconds) if kind is EventKind.PROGRESS else None,
    )


@given(events)
def test_rules_hold_for_any_order_of_events(
    sequence: list[tuple[EventKind, int, int | None]],
) -> None:
    status: JobStatus | None = None
    ended: State | None = None
    for kind, seconds, attempt in sequence:
        before = status
        after = apply(status, _event(kind, seconds, attempt))
        if after is None:
            continue
        status = after
        if before is not None:
            # attempts never go down, and a terminal state other than lost is never left
            assert after.attempts >= before.attempts
            if before.state.completed and before.state is not State.LOST:
                assert after.state is before.state
        if ended is None and after.state in (State.FINISHED, State.FAILED, State.CANCELLED):
            ended = after.state
        if ended is not None:
            assert after.state is ended
        assert after.updated_at is not None
        assert before is None or before.updated_at is None or after.updated_at >= before.updated_at
        if after.state is State.FINISHED:
            assert after.error is None
        if after.completed:
            assert after.finished_at is not None
        elif after.state is not State.UNKNOWN:
            assert after.finished_at is None


@given(events)
def test_replaying_the_same_sequence_twice_changes_nothing_more(
    sequence: list[tuple[EventKind, int, int | None]],
) -> None:
    once: JobStatus | None = None
    for item in sequence:
        once = apply(once, _event(*item)) or once
    ended = once is not None and once.completed and once.state is not State.LOST
    twice = once
    for item in sequence:
        twice = apply(twice, _event(*item)) or twice
    if ended:
        assert twice is not None
        assert once is not None
        assert twice.state is once.state
