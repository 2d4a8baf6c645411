"""The SQL store's groups (:mod:`immortus.stores.group_counts`): one row per group.

``{table}_groups`` holds, per group id, one counter column per member state, ``running`` (the
running members' progress sum), the first error and the latest update. The store adds a
transaction's group changes after its counters (:meth:`~.sql_counts.Pending.flush`), in group id
order, so concurrent writers take the rows' locks in one order and never deadlock on them.
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection

from immortus.grouping import GroupStatus
from immortus.status import State
from immortus.stores.group_counts import MEMBER_STATES, GroupChange, answer_of

__all__ = ["add", "group_table", "read", "rebuild"]

_COUNTS: Final = tuple(state.value for state in MEMBER_STATES)


def group_table(metadata: sa.MetaData, name: str = "immortus_jobs") -> sa.Table:
    """Return the groups' table of the jobs table ``name``, defined on ``metadata``.

    Add it to an application's own metadata beside :func:`~immortus.stores.sql.jobs_table`
    when it creates its tables with migrations.
    """
    return sa.Table(
        f"{name}_groups",
        metadata,
        sa.Column("group_id", sa.String(255), primary_key=True),
        *(sa.Column(state, sa.BigInteger, nullable=False, default=0) for state in _COUNTS),
        sa.Column("running", sa.Double, nullable=False, default=0.0),
        sa.Column("error_type", sa.String(255)),
        sa.Column("error_message", sa.Text),
        sa.Column("updated_at", sa.Double),
    )


def add(conn: Connection, table: sa.Table, changes: list[GroupChange]) -> None:
    """Apply a transaction's group changes (merged per group), in group id order."""
    for done in sorted(changes, key=lambda one: one.group_id):
        _upsert(conn, table, done)
        if any(n < 0 for n in done.jobs.values()):
            total = sum((table.c[state] for state in _COUNTS), sa.literal(0))
            conn.execute(sa.delete(table).where(table.c.group_id == done.group_id, total <= 0))


def _upsert(conn: Connection, table: sa.Table, done: GroupChange) -> None:
    values = done.row()
    c = table.c
    name = conn.dialect.name

    def changed(new: Any) -> list[tuple[str, Any]]:
        latest = sa.func.max if name == "sqlite" else sa.func.greatest
        # error_message first: MySQL assigns left to right, and reads error_type as it was.
        return [
            (
                "error_message",
                sa.case((c.error_type.is_(None), new.error_message), else_=c.error_message),
            ),
            ("error_type", sa.func.coalesce(c.error_type, new.error_type)),
            *((state, c[state] + new[state]) for state in _COUNTS),
            ("running", c.running + new.running),
            (
                "updated_at",
                latest(
                    sa.func.coalesce(c.updated_at, new.updated_at),
                    sa.func.coalesce(new.updated_at, c.updated_at),
                ),
            ),
        ]

    if name in ("mysql", "mariadb"):
        insert = mysql.insert(table).values(values)
        conn.execute(insert.on_duplicate_key_update(changed(insert.inserted)))
        return
    dialect = postgresql if name == "postgresql" else sqlite
    upsert = dialect.insert(table).values(values)
    conn.execute(
        upsert.on_conflict_do_update(
            index_elements=["group_id"], set_=dict(changed(upsert.excluded))
        )
    )


def read(conn: Connection, table: sa.Table, group_id: str) -> GroupStatus | None:
    """The group's answer from its one row (``None``: no member stored)."""
    row = conn.execute(sa.select(table).where(table.c.group_id == group_id)).mappings().first()
    return None if row is None else answer_of(group_id, row)


def rebuild(conn: Connection, jobs: sa.Table, table: sa.Table) -> None:
    """Count every member once (a table from before groups), in the caller's transaction."""
    c = jobs.c
    fraction = sa.case(
        (c.progress_total == 0, 1.0),
        else_=sa.func.least(sa.func.greatest(c.progress_current / c.progress_total, 0.0), 1.0),
    )
    if conn.dialect.name == "sqlite":
        fraction = sa.case(
            (c.progress_total == 0, 1.0),
            else_=sa.func.min(sa.func.max(c.progress_current / c.progress_total, 0.0), 1.0),
        )
    share = sa.case(
        (
            sa.and_(
                c.state == State.STARTED.value,
                c.progress_current.is_not(None),
                c.progress_total.is_not(None),
            ),
            fraction,
        ),
        else_=0.0,
    )
    counts = [sa.func.sum(sa.case((c.state == state, 1), else_=0)) for state in _COUNTS]
    grouped = (
        sa.select(c.group_id, *counts, sa.func.sum(share), sa.func.max(c.updated_at))
        .where(c.group_id.is_not(None))
        .group_by(c.group_id)
    )
    conn.execute(sa.delete(table))
    columns = ["group_id", *_COUNTS, "running", "updated_at"]
    conn.execute(sa.insert(table).from_select(columns, grouped))
    first = (
        sa.select(c.group_id, c.error_type, c.error_message)
        .where(c.group_id.is_not(None), c.state.in_(("failed", "lost")), c.error_type.is_not(None))
        .order_by(c.group_id, c.finished_at)
    )
    seen: set[str] = set()
    for group_id, error_type, error_message in conn.execute(first):
        if group_id not in seen:
            seen.add(group_id)
            conn.execute(
                sa.update(table)
                .where(table.c.group_id == group_id)
                .values(error_type=error_type, error_message=error_message)
            )
