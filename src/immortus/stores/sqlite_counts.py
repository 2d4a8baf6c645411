"""The SQLite store's counters (:mod:`immortus.stores.counting`): three small tables in its file.

``immortus_counts`` holds records by ``(job_class, state)``, ``immortus_ended`` the endings per
minute and state (kept :data:`~immortus.stores.counting.ENDED_WINDOW` seconds, then pruned),
``immortus_durations`` the attempt-duration histogram. The store changes them inside the
transaction that writes the record, through :func:`add`.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Final

from immortus.status import State
from immortus.stores import counting, sqlite_groups
from immortus.stores.counting import DURATION_BOUNDS, ENDED_WINDOW, NO_CLASS, Change, Tally

__all__ = ["SCHEMA", "add", "prune_ended", "read", "rebuild"]

SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS immortus_counts (
        job_class TEXT NOT NULL, state TEXT NOT NULL, n INTEGER NOT NULL,
        PRIMARY KEY (job_class, state)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS immortus_ended (
        minute INTEGER NOT NULL, state TEXT NOT NULL, n INTEGER NOT NULL,
        PRIMARY KEY (minute, state)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS immortus_durations (
        bucket INTEGER PRIMARY KEY NOT NULL, n INTEGER NOT NULL, total REAL NOT NULL
    )""",
)
_ADD_JOBS: Final = (
    "INSERT INTO immortus_counts (job_class, state, n) VALUES (?, ?, ?) "
    "ON CONFLICT (job_class, state) DO UPDATE SET n = n + excluded.n"
)
_ADD_ENDED: Final = (
    "INSERT INTO immortus_ended (minute, state, n) VALUES (?, ?, ?) "
    "ON CONFLICT (minute, state) DO UPDATE SET n = n + excluded.n"
)
_ADD_DURATION: Final = (
    "INSERT INTO immortus_durations (bucket, n, total) VALUES (?, 1, ?) "
    "ON CONFLICT (bucket) DO UPDATE SET n = n + 1, total = total + excluded.total"
)
_COMPLETED: Final = ", ".join(f"'{state.value}'" for state in State if state.completed)
_BUCKET: Final = (
    "CASE "
    + " ".join(f"WHEN d <= {bound!r} THEN {i}" for i, bound in enumerate(DURATION_BOUNDS))
    + f" ELSE {len(DURATION_BOUNDS)} END"
)
# Built from the constants above, never from user input.
_REBUILD: Final = (
    "DELETE FROM immortus_counts",
    "DELETE FROM immortus_ended",
    "DELETE FROM immortus_durations",
    "INSERT INTO immortus_counts (job_class, state, n) "  # noqa: S608
    f"SELECT IFNULL(job_class, '{NO_CLASS}'), state, COUNT(*) FROM immortus_jobs GROUP BY 1, 2",
    "INSERT INTO immortus_ended (minute, state, n) "  # noqa: S608
    "SELECT CAST(finished_at / 60 AS INTEGER) * 60, state, COUNT(*) FROM immortus_jobs "
    f"WHERE state IN ({_COMPLETED}) AND finished_at > ? GROUP BY 1, 2",
    f"INSERT INTO immortus_durations (bucket, n, total) SELECT {_BUCKET}, COUNT(*), SUM(d) "  # noqa: S608
    "FROM (SELECT finished_at - started_at AS d FROM immortus_jobs "
    f"WHERE state IN ({_COMPLETED}) AND finished_at >= started_at) GROUP BY 1",
)


def add(connection: sqlite3.Connection, done: Change) -> None:
    """Apply one write's :class:`~immortus.stores.counting.Change`, in the caller's transaction.

    Its group changes go to the groups' table (:mod:`immortus.stores.sqlite_groups`).
    """
    if done.jobs:
        connection.executemany(
            _ADD_JOBS, [(job_class, state.value, n) for (job_class, state), n in done.jobs.items()]
        )
    if done.ended:
        connection.executemany(
            _ADD_ENDED, [(minute, state.value, 1) for minute, state in done.ended]
        )
    if done.durations:
        connection.executemany(_ADD_DURATION, done.durations)
    if done.groups:
        sqlite_groups.add(connection, done.groups)


def rebuild(connection: sqlite3.Connection, now: float) -> None:
    """Count every row once (a file from before the counters), in the caller's transaction."""
    for statement in _REBUILD:
        params = (now - ENDED_WINDOW,) if "?" in statement else ()
        connection.execute(statement, params)


def prune_ended(connection: sqlite3.Connection, now: float) -> None:
    """Forget the minutes older than the window, and counters that reached zero."""
    connection.execute("DELETE FROM immortus_ended WHERE minute < ?", (now - ENDED_WINDOW,))
    connection.execute("DELETE FROM immortus_counts WHERE n = 0")


def read(connection: sqlite3.Connection, since: datetime) -> Tally:
    """The counters, with the ``ended`` minutes from ``since`` on (one read transaction)."""
    jobs = connection.execute(
        "SELECT job_class, state, n FROM immortus_counts WHERE n != 0"
    ).fetchall()
    ended = connection.execute(
        "SELECT minute, state, n FROM immortus_ended WHERE minute >= ?",
        (counting.minute_of(since.timestamp()),),
    ).fetchall()
    durations = connection.execute("SELECT bucket, n, total FROM immortus_durations").fetchall()
    histogram = [(bucket, n) for bucket, n, _ in durations]
    seconds = sum(total for *_, total in durations)
    return counting.tally_of(jobs, ended, histogram, seconds, since=since)
