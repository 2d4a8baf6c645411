"""The write path the tracking-overhead benchmark measures, its floor, profile and report.

A new job's ``created`` record costs the SQLite store one ``INSERT`` and its counter, no read;
an ``enqueued`` that arrives for a job the store already has still goes through the ordering
rules. The floor (:mod:`bench.overhead.bare`) and the profile run on a real file; the report's
ceiling is arithmetic. Nothing here asserts a timing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.overhead import profile
from bench.overhead.bare import TABLE, BareWriter
from bench.overhead.figures import Limit
from bench.overhead.report import verdict
from immortus.status import State
from immortus.stores.sqlite import SQLiteStore
from immortus.transitions import Event, EventKind

JOB_CLASS = "reports.build"


def _event(kind: EventKind, job_id: str, **fields: object) -> Event:
    return Event(kind=kind, job_id=job_id, at=datetime.now(UTC), job_class=JOB_CLASS, **fields)  # type: ignore[arg-type]


def _statements(store: SQLiteStore, event: Event) -> list[str]:
    """The SQL statements ``store.record(event)`` runs on this thread's connection."""
    seen: list[str] = []
    connection = store._connection()
    connection.set_trace_callback(seen.append)
    try:
        store.record(event)
    finally:
        connection.set_trace_callback(None)
    return [statement.split(None, 2)[0].upper() for statement in seen]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "tracking.sqlite3")
    yield opened
    opened.close()


def test_a_new_jobs_created_record_is_written_without_a_read(store: SQLiteStore) -> None:
    statements = _statements(store, _event(EventKind.ENQUEUED, "job-1"))
    assert statements == ["BEGIN", "INSERT", "INSERT", "COMMIT"]  # the record, its counter
    found = store.get("job-1")
    assert found is not None
    assert (found.state, found.job_class) == (State.CREATED, JOB_CLASS)
    assert store.tally(since=datetime.now(UTC) - timedelta(minutes=1)).jobs == {
        (JOB_CLASS, State.CREATED): 1
    }


def test_a_late_enqueued_keeps_the_ordering_rules_and_the_counters(store: SQLiteStore) -> None:
    store.record(_event(EventKind.STARTED, "job-2", attempt=1))
    statements = _statements(store, _event(EventKind.ENQUEUED, "job-2"))
    assert "SELECT" in statements  # the row exists: read, then the rules apply
    found = store.get("job-2")
    assert found is not None
    assert found.state is State.STARTED
    assert found.enqueued_at is not None
    assert store.tally(since=datetime.now(UTC) - timedelta(minutes=1)).jobs == {
        (JOB_CLASS, State.STARTED): 1
    }


def test_the_bare_writer_writes_each_job_once_on_the_stores_file(store: SQLiteStore) -> None:
    store.record(_event(EventKind.ENQUEUED, "job-3"))
    bare = BareWriter(store.path)
    try:
        timing = bare.measure(5)
        rows = bare.connection.execute(f"SELECT state FROM {TABLE}").fetchall()  # noqa: S608
    finally:
        bare.close()
    assert rows == [("finished",)] * 5
    assert min(timing.insert_us, timing.update_us) > 0
    assert store.get("job-3") is not None  # the store's own table is untouched


def test_the_ceiling_and_the_verdict() -> None:
    limit = Limit(untracked=100.0, tracked=150.0, floor=20.0)
    assert limit.ratio == pytest.approx(100 / 150)
    assert limit.ceiling == pytest.approx(100 / 120)
    assert limit.above_floor == pytest.approx(30.0)
    assert verdict(limit) == "out of reach"
    assert verdict(Limit(untracked=1000.0, tracked=1150.0, floor=20.0)) == "missed"
    assert verdict(Limit(untracked=1000.0, tracked=1050.0, floor=20.0)) == "met"


def test_the_profile_runs_and_names_its_sections(capsys: pytest.CaptureFixture[str]) -> None:
    assert profile.main(["--jobs", "20", "--rounds", "1"]) == 0
    report = capsys.readouterr().out
    for expected in ("enqueue", "job, one write", "SQL COMMIT", "transitions.apply", "bare write"):
        assert expected in report
