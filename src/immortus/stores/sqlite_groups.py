"""The SQLite store's groups (:mod:`immortus.stores.group_counts`): one row per group.

``immortus_groups`` holds, per group id, one counter column per member state, the running
members' progress sum, the first error and the latest update. The store changes it inside the
transaction that writes the member's record (:func:`add`), and :func:`read` answers from the
group's one row.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from immortus.grouping import GroupStatus
from immortus.stores.group_counts import MEMBER_STATES, GroupChange, answer_of

__all__ = ["SCHEMA", "add", "read", "rebuild"]

_COUNTS: Final = tuple(state.value for state in MEMBER_STATES)

# Built from the constant state names, never from user input.
SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS immortus_groups (group_id TEXT PRIMARY KEY NOT NULL, "
    + ", ".join(f"{name} INTEGER NOT NULL DEFAULT 0" for name in _COUNTS)
    + ", running REAL NOT NULL DEFAULT 0, error_type TEXT, error_message TEXT, updated_at REAL"
    + ") WITHOUT ROWID",
)
_ADD: Final = (
    "INSERT INTO immortus_groups (group_id, "  # noqa: S608
    + ", ".join(_COUNTS)
    + ", running, error_type, error_message, updated_at) VALUES (:group_id, "
    + ", ".join(f":{name}" for name in _COUNTS)
    + ", :running, :error_type, :error_message, :updated_at) ON CONFLICT (group_id) DO UPDATE SET "
    + ", ".join(f"{name} = {name} + excluded.{name}" for name in _COUNTS)
    + ", running = running + excluded.running"
    # The first error stays: both columns are set together, from the old row's values.
    + ", error_type = IFNULL(error_type, excluded.error_type)"
    + ", error_message = CASE WHEN error_type IS NULL THEN excluded.error_message"
    + " ELSE error_message END"
    + ", updated_at = MAX(IFNULL(updated_at, excluded.updated_at), "
    + "IFNULL(excluded.updated_at, updated_at))"
)
_EMPTY: Final = (
    "DELETE FROM immortus_groups WHERE group_id = ? AND "  # noqa: S608
    + " + ".join(_COUNTS)
    + " <= 0"
)
# The columns of a group's row that its answer reads, as GroupChange.row() names them.
_COLUMNS: Final = (*_COUNTS, "running", "error_type", "error_message", "updated_at")
_READ: Final = f"SELECT {', '.join(_COLUMNS)} FROM immortus_groups WHERE group_id = ?"  # noqa: S608
_RUNNING_SUM: Final = (
    "SUM(CASE WHEN state = 'started' AND progress_current IS NOT NULL "
    "AND progress_total IS NOT NULL THEN CASE WHEN progress_total = 0 THEN 1.0 "
    "ELSE MIN(MAX(progress_current / progress_total, 0.0), 1.0) END ELSE 0.0 END)"
)
_REBUILD: Final = (
    "DELETE FROM immortus_groups",
    "INSERT INTO immortus_groups (group_id, "  # noqa: S608
    + ", ".join(_COUNTS)
    + ", running, updated_at) SELECT group_id, "
    + ", ".join(f"SUM(state = '{name}')" for name in _COUNTS)
    + f", {_RUNNING_SUM}, MAX(updated_at) FROM immortus_jobs "
    "WHERE group_id IS NOT NULL GROUP BY group_id",
    # The first error: the member that ended failed or lost first.
    "UPDATE immortus_groups SET (error_type, error_message) = ("
    "SELECT error_type, error_message FROM immortus_jobs "
    "WHERE immortus_jobs.group_id = immortus_groups.group_id "
    "AND state IN ('failed', 'lost') AND error_type IS NOT NULL "
    "ORDER BY finished_at LIMIT 1)",
)


def add(connection: sqlite3.Connection, changes: tuple[GroupChange, ...]) -> None:
    """Apply one write's group changes, in the caller's transaction."""
    for done in changes:
        connection.execute(_ADD, done.row())
        if any(n < 0 for n in done.jobs.values()):
            connection.execute(_EMPTY, (done.group_id,))


def read(connection: sqlite3.Connection, group_id: str) -> GroupStatus | None:
    """The group's answer from its one row (``None``: no member stored)."""
    row = connection.execute(_READ, (group_id,)).fetchone()
    return None if row is None else answer_of(group_id, dict(zip(_COLUMNS, row, strict=True)))


def rebuild(connection: sqlite3.Connection) -> None:
    """Count every member once (a file from before groups), in the caller's transaction."""
    for statement in _REBUILD:
        connection.execute(statement)
