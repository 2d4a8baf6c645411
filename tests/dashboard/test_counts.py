"""The overview reads the counters of a store that keeps them: exact at any size, no scan."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from immortus.status import State
from immortus.stores.base import Store
from immortus.stores.memory import MemoryStore
from immortus.stores.sqlite import SQLiteStore
from immortus.transitions import Event, EventKind
from immortus.web.dashboard.counts import (
    SCAN_LIMIT,
    CountingStore,
    read_counts,
    scan_tally,
    summarize,
)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "c.db")
    yield made
    made.close()


def test_every_store_immortus_ships_keeps_counters(store: Store) -> None:
    assert isinstance(store, CountingStore)
    assert store.supports_counts


def test_counts_past_the_scan_limit_are_exact(store: Store) -> None:
    now = datetime.now(UTC)
    total = SCAN_LIMIT + 200
    for number in range(total):
        kind = EventKind.FINISHED if number % 4 == 0 else EventKind.ENQUEUED
        store.record(Event(kind=kind, job_id=f"j{number}", job_class="mail.send", at=now))
    counts = read_counts(store, now=now + timedelta(seconds=1))
    assert not counts.approximate
    assert counts.counted == total
    assert counts.by_state == {State.FINISHED: total // 4, State.CREATED: total - total // 4}
    assert sum(bucket.finished for bucket in counts.buckets) == total // 4
    scanned = summarize(scan_tally(store, since=now - timedelta(hours=1)), now=now)
    assert scanned.approximate  # what the overview showed before the counters


def test_counters_agree_with_a_full_scan(store: Store) -> None:
    now = datetime.now(UTC)
    for number in range(30):
        job_id = f"j{number}"
        store.record(Event(kind=EventKind.STARTED, job_id=job_id, job_class="c", at=now))
        if number % 3:
            ending = EventKind.FINISHED if number % 2 else EventKind.CANCELLED
            store.record(Event(kind=ending, job_id=job_id, at=now + timedelta(seconds=number)))
    later = now + timedelta(minutes=1)
    counted = read_counts(store, now=later)
    scanned = summarize(scan_tally(store, since=later - timedelta(hours=1)), now=later)
    assert counted.by_state == scanned.by_state
    assert counted.by_class == scanned.by_class
    assert counted.buckets == scanned.buckets
    assert counted.durations == scanned.durations
    assert counted.duration_sum == pytest.approx(scanned.duration_sum)
