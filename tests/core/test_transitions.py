"""The transition rules on their own; every store also runs them (tests/stores/contract.py)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from immortus.exceptions import InvalidInput, InvalidJobId
from immortus.status import JobError, JobStatus, Progress, State
from immortus.stores.records import decode, encode
from immortus.transitions import MAX_MERGED_META_BYTES, Event, EventKind, apply, merged_meta_size

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


# -- the merged meta's bound ------------------------------------------------------------------

#: JSON values a meta key may hold, small and large (strings up to a third of the bound).
meta_values = st.one_of(
    st.integers(),
    st.booleans(),
    st.none(),
    st.text(max_size=20),
    st.integers(min_value=0, max_value=MAX_MERGED_META_BYTES // 3).map(lambda size: "x" * size),
)
meta_updates = st.dictionaries(st.text(min_size=1, max_size=8), meta_values, max_size=4)


@settings(max_examples=200, deadline=None)
@given(st.lists(meta_updates, max_size=30))
def test_any_sequence_of_meta_events_stays_within_the_bound(
    updates: list[dict[str, object]],
) -> None:
    status: JobStatus | None = None
    for update in updates:
        before = status
        status = apply(status, Event(kind=EventKind.META, job_id="j", meta=update)) or status
        assert status is not None
        encoded = json.dumps(dict(status.meta), separators=(",", ":"))
        assert len(encoded.encode()) <= MAX_MERGED_META_BYTES
        assert merged_meta_size(status.meta) == len(encoded)
        merged = {**(before.meta if before else {}), **update}
        if merged_meta_size(merged) <= MAX_MERGED_META_BYTES:
            assert dict(status.meta) == merged  # within the bound, nothing is refused
        else:  # refused whole: the record is as it was
            assert dict(status.meta) == dict(before.meta if before else {})
        row = encode(status, created=0.0, expires=None)
        assert decode(row).meta == status.meta


def test_meta_past_the_bound_is_refused_whole_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    big = "x" * (MAX_MERGED_META_BYTES // 2)
    status = apply(None, Event(kind=EventKind.META, job_id="bound", meta={"a": big}))
    assert status is not None
    with caplog.at_level(logging.WARNING, logger="immortus"):
        for key in ("b", "c"):  # either would take the merged meta over the bound
            assert (
                apply(status, Event(kind=EventKind.META, job_id="bound", meta={key: big})) is None
            )
    assert [record.getMessage().count("'bound'") for record in caplog.records] == [1]
    assert "over the limit" in caplog.records[0].getMessage()
    # a key that replaces a large one with a small one still goes in
    smaller = apply(status, Event(kind=EventKind.META, job_id="bound", meta={"a": 1, "b": 2}))
    assert smaller is not None
    assert dict(smaller.meta) == {"a": 1, "b": 2}
    # progress and endings are never held back by meta
    running = apply(status, Event(kind=EventKind.STARTED, job_id="bound"))
    assert running is not None
    assert running.state is State.STARTED
