"""A polling source's question costs its store one statement: what a feed's tick pays.

A quiet tick of a feed over SQLite asks the store's ``changes_since`` and nothing else, so it is
read at every tick of every process that follows jobs; each statement is a read transaction of
its own (file locks, system calls). The statements are counted with SQLite's trace hook on the
connection the store uses in this thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from immortus.stores.notify import PollingSource
from immortus.stores.sqlite import SQLiteStore
from immortus.transitions import EventKind
from tests.stores.contract import event


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "jobs.sqlite3")
    yield opened
    opened.close()


def test_a_tick_asks_sqlite_one_statement(store: SQLiteStore) -> None:
    store.record(event(EventKind.ENQUEUED, "job-1"))
    source = store.change_source()
    assert isinstance(source, PollingSource)
    cursor, _ = source.changes_since(None)
    store.record(event(EventKind.STARTED, "job-2"))
    statements: list[str] = []
    connection = store._connection()  # the connection the store reads with in this thread
    connection.set_trace_callback(statements.append)
    try:
        moved, changed = source.changes_since(cursor)
        quiet = source.changes_since(moved)
    finally:
        connection.set_trace_callback(None)
    assert changed == frozenset({"job-2"})
    assert moved > cursor
    assert quiet == (moved, frozenset())
    assert len(statements) == 2  # one a question
