"""Fixtures of the dashboard's tests: fresh settings, a memory store holding a few jobs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from immortus import config, registry
from immortus.status import JobError, Progress
from immortus.stores.memory import MemoryStore
from immortus.transitions import Event, EventKind
from tests.support import pristine_immortus

#: A job id a hostile client chose: it must be shown as text, never run.
HOSTILE_ID = '<script>alert("x")</script>'


@pytest.fixture(autouse=True)
def fresh_immortus() -> Iterator[None]:
    """Default settings for each test; the jobs declared at import time restored after it."""
    with pristine_immortus():
        yield


def fill(store: MemoryStore) -> None:
    """Record a finished, a failed (with a traceback), a running and a hostile job."""
    registry.declare("reports.build", queue="huey")
    now = datetime.now(UTC)
    earlier = now - timedelta(minutes=3)

    def record(kind: EventKind, job_id: str, **fields: object) -> None:
        store.record(Event(kind=kind, job_id=job_id, job_class="reports.build", **fields))  # type: ignore[arg-type]

    for job_id in ("done-1", "failed-1", "running-1", HOSTILE_ID):
        record(EventKind.ENQUEUED, job_id, at=earlier)
    record(EventKind.STARTED, "done-1", at=earlier, attempt=1)
    record(EventKind.FINISHED, "done-1", at=now, attempt=1)
    record(EventKind.STARTED, "failed-1", at=earlier, attempt=1)
    error = JobError(type="ValueError", message="bad <row>", traceback="Traceback: line 7 <b>")
    record(EventKind.FAILED, "failed-1", at=now, attempt=1, error=error)
    record(EventKind.STARTED, "running-1", at=earlier, attempt=1)
    record(
        EventKind.PROGRESS, "running-1", progress=Progress(current=37, total=100, message="row 37")
    )


@pytest.fixture
def store() -> MemoryStore:
    """A memory store holding the jobs of :func:`fill`, configured as the app's store."""
    store = MemoryStore()
    fill(store)
    config.configure(store=store)
    return store
