"""The dashboard's counters, kept by every store with ``supports_counts``: mixed into its tests.

The counters follow every write (events, reaping, a heartbeat's revival, pruning), never
double count under concurrent writers, and always equal a full recount of the records.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from immortus.status import JobError, Progress, State
from immortus.stores.base import Store
from immortus.stores.counting import Tally
from immortus.transitions import EventKind
from tests.stores.contract import OpenStore, event, lease

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def tally(store: Store) -> Tally:
    assert store.supports_counts, f"{type(store).__name__} keeps no counters"
    return store.tally(since=EPOCH)


def jobs(store: Store) -> dict[tuple[str | None, State], int]:
    return {key: n for key, n in tally(store).jobs.items() if n}


def ended(store: Store) -> Counter[State]:
    total: Counter[State] = Counter()
    for states in tally(store).ended.values():
        total.update(states)
    return total


def recount(store: Store) -> dict[tuple[str | None, State], int]:
    """Count every record by reading the whole listing."""
    counted: Counter[tuple[str | None, State]] = Counter()
    cursor: str | None = None
    while True:
        page = store.list_jobs(limit=1000, cursor=cursor)
        counted.update((status.job_class, status.state) for status in page.jobs)
        if page.next_cursor is None:
            return dict(counted)
        cursor = page.next_cursor


def now(seconds: float = 0) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


class CountsContract:
    """Behaviour of the counters, for stores with ``supports_counts``."""

    def test_counts_follow_a_job_through_a_retry_to_its_end(self, store: Store) -> None:
        steps: list[tuple[EventKind, dict[str, Any], State]] = [
            (EventKind.ENQUEUED, {}, State.CREATED),
            (EventKind.STARTED, {"attempt": 1}, State.STARTED),
            (EventKind.RETRYING, {"attempt": 1}, State.RETRYING),
            (EventKind.STARTED, {"attempt": 2}, State.STARTED),
        ]
        base = now(-10)
        for offset, (kind, fields, state) in enumerate(steps):
            at = base + timedelta(seconds=offset)
            store.record(event(kind, "a", job_class="mail.send", at=at, **fields))
            assert jobs(store) == {("mail.send", state): 1}
        assert not ended(store)
        store.record(event(EventKind.FINISHED, "a", at=base + timedelta(seconds=5)))
        assert jobs(store) == {("mail.send", State.FINISHED): 1}
        assert ended(store) == {State.FINISHED: 1}
        counted = tally(store)
        assert counted.durations[3] == sum(counted.durations) == 1  # the 2 s of attempt 2
        assert counted.duration_sum == pytest.approx(2.0)
        store.record(
            event(EventKind.FAILED, "a", at=base + timedelta(seconds=6))
        )  # ignored: the job has ended
        assert jobs(store) == {("mail.send", State.FINISHED): 1}
        assert ended(store) == {State.FINISHED: 1}

    def test_a_job_without_a_class_is_counted_under_none_then_its_class(self, store: Store) -> None:
        store.record(event(EventKind.STARTED, "a", at=now()))
        assert jobs(store) == {(None, State.STARTED): 1}
        store.record(event(EventKind.PROGRESS, "a", job_class="x", at=now(), **_progress()))
        assert jobs(store) == {("x", State.STARTED): 1}

    def test_a_job_lost_by_its_lease_is_counted_lost_when_reaped_and_back_when_revived(
        self, store: Store
    ) -> None:
        assert store.supports_heartbeat
        store.record(event(EventKind.STARTED, "a", at=now(-60), alive_until=lease(-1)))
        assert jobs(store) == {(None, State.STARTED): 1}  # as stored, until reaped
        assert store.reap_lost() == 1
        assert jobs(store) == {(None, State.LOST): 1}
        assert ended(store) == {State.LOST: 1}
        assert store.beat(["a"], lease(60)) == 1
        assert jobs(store) == {(None, State.STARTED): 1}
        store.record(event(EventKind.FINISHED, "a", at=now()))
        assert jobs(store) == {(None, State.FINISHED): 1}
        assert ended(store) == {State.LOST: 1, State.FINISHED: 1}

    def test_cancelled_and_failed_jobs_are_counted_by_their_ending(self, store: Store) -> None:
        store.record(event(EventKind.ENQUEUED, "a", job_class="c", at=now()))
        store.record(event(EventKind.CANCELLED, "a", at=now()))
        store.record(event(EventKind.STARTED, "b", job_class="c", at=now()))
        error = JobError(type="ValueError", message="no")
        store.record(event(EventKind.FAILED, "b", at=now(), error=error))
        assert jobs(store) == {("c", State.CANCELLED): 1, ("c", State.FAILED): 1}
        assert ended(store) == {State.CANCELLED: 1, State.FAILED: 1}
        assert sum(tally(store).durations) == 1  # the cancelled job never ran

    def test_pruned_records_leave_the_counts(self, open_store: OpenStore) -> None:
        store = open_store(ttl=60)
        try:
            for job_id in ("a", "b", "c"):
                store.record(event(EventKind.ENQUEUED, job_id, job_class="c", at=now()))
            store.record(event(EventKind.FINISHED, "c", at=now()))
            assert store.prune(now=now(3600)) == 3
            assert jobs(store) == {}
            assert ended(store) == {State.FINISHED: 1}  # endings stay within their window
        finally:
            store.close()

    def test_a_new_record_over_an_expired_one_is_counted_once(self, open_store: OpenStore) -> None:
        store = open_store(ttl=0.05)
        try:
            store.record(event(EventKind.ENQUEUED, "a", at=now()))
            time.sleep(0.2)  # the record expires, unpruned
            store.record(event(EventKind.STARTED, "a", at=now()))
            assert jobs(store) == {(None, State.STARTED): 1}
        finally:
            store.close()

    def test_concurrent_writers_never_double_count(self, open_store: OpenStore) -> None:
        stores = [open_store() for _ in range(4)]
        kinds = (EventKind.ENQUEUED, EventKind.STARTED, EventKind.FINISHED)

        def write(store: Store) -> None:
            for number in range(40):
                for kind in kinds:
                    store.record(event(kind, f"job-{number}", job_class="c", at=now()))

        threads = [threading.Thread(target=write, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        try:
            assert jobs(stores[0]) == {("c", State.FINISHED): 40}
            assert ended(stores[0]) == {State.FINISHED: 40}
            assert sum(tally(stores[0]).durations) == 40
        finally:
            for store in stores:
                store.close()

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["a", "b", "c"]),
                st.sampled_from([None, "x", "y"]),
                st.sampled_from(list(EventKind)),
                st.one_of(st.none(), st.integers(1, 3)),
            ),
            max_size=25,
        )
    )
    def test_counts_equal_a_full_recount_after_any_events(
        self, store: Store, events: list[tuple[str, str | None, EventKind, int | None]]
    ) -> None:
        for job_id, job_class, kind, attempt in events:
            fields: dict[str, Any] = {"job_class": job_class, "attempt": attempt, "at": now()}
            if kind is EventKind.PROGRESS:
                fields.update(_progress())
            if kind is EventKind.META:
                fields["meta"] = {"k": attempt}
            store.record(event(kind, job_id, **fields))
        store.reap_lost()
        assert jobs(store) == recount(store)


def _progress() -> dict[str, Any]:
    return {"progress": Progress(current=1, total=2)}
