"""The SQL store's counters (:mod:`immortus.stores.counting`): three small tables beside its own.

``{table}_counts`` holds records by ``(job_class, state)``, ``{table}_ended`` the endings per
minute and state (kept :data:`~immortus.stores.counting.ENDED_WINDOW` seconds, then pruned),
``{table}_durations`` the attempt-duration histogram. The store adds one write's
:class:`~immortus.stores.counting.Change` (or a batch's, merged) in the transaction that writes
the rows, in one fixed order (table, then key), so concurrent writers never deadlock on them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection

from immortus.status import State
from immortus.stores import counting
from immortus.stores.counting import DURATION_BOUNDS, ENDED_WINDOW, NO_CLASS, Change, Tally
from immortus.stores.group_counts import GroupChange, merged

__all__ = ["CounterTables", "Pending", "count_rows", "counter_tables", "read", "rebuild"]


@dataclass(frozen=True, slots=True)
class CounterTables:
    """The three counter tables of one jobs table."""

    counts: sa.Table
    ended: sa.Table
    durations: sa.Table


def counter_tables(metadata: sa.MetaData, name: str = "immortus_jobs") -> CounterTables:
    """Return the counter tables of the jobs table ``name``, defined on ``metadata``.

    Add them to an application's own metadata beside :func:`~immortus.stores.sql.jobs_table`
    when it creates its tables with migrations.
    """
    return CounterTables(
        sa.Table(
            f"{name}_counts",
            metadata,
            sa.Column("job_class", sa.String(255), primary_key=True),
            sa.Column("state", sa.String(32), primary_key=True),
            sa.Column("n", sa.BigInteger, nullable=False),
        ),
        sa.Table(
            f"{name}_ended",
            metadata,
            sa.Column("minute", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("state", sa.String(32), primary_key=True),
            sa.Column("n", sa.BigInteger, nullable=False),
        ),
        sa.Table(
            f"{name}_durations",
            metadata,
            sa.Column("bucket", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("n", sa.BigInteger, nullable=False),
            sa.Column("total", sa.Double, nullable=False),
        ),
    )


class Pending:
    """The counter changes of one transaction, merged, written once at its end (:meth:`flush`)."""

    def __init__(self) -> None:
        self.jobs: Counter[tuple[str, str]] = Counter()
        self.ended: Counter[tuple[int, str]] = Counter()
        self.durations: dict[int, tuple[int, float]] = {}
        #: The group changes, merged per group (:mod:`immortus.stores.sql_groups` writes them).
        self.groups: dict[str, GroupChange] = {}

    def add(self, done: Change) -> None:
        """Merge one write's change."""
        for group in done.groups:
            earlier = self.groups.get(group.group_id)
            self.groups[group.group_id] = group if earlier is None else merged(earlier, group)
        for (job_class, state), number in done.jobs.items():
            self.jobs[job_class, state.value] += number
        for minute, state in done.ended:
            self.ended[minute, state.value] += 1
        for bucket, seconds in done.durations:
            count, total = self.durations.get(bucket, (0, 0.0))
            self.durations[bucket] = (count + 1, total + seconds)

    def flush(self, conn: Connection, tables: CounterTables) -> None:
        """Write the merged changes: upserts in a fixed order (tables, then keys)."""
        jobs = sorted((key, n) for key, n in self.jobs.items() if n)
        for (job_class, state), number in jobs:
            _bump(conn, tables.counts, {"job_class": job_class, "state": state}, {"n": number})
        for (minute, state), number in sorted(self.ended.items()):
            _bump(conn, tables.ended, {"minute": minute, "state": state}, {"n": number})
        for bucket, (number, total) in sorted(self.durations.items()):
            _bump(conn, tables.durations, {"bucket": bucket}, {"n": number, "total": total})


def _bump(conn: Connection, table: sa.Table, key: dict[str, Any], add: dict[str, Any]) -> None:
    """Add ``add`` to the row of ``key`` (created when missing), in one statement."""
    values = {**key, **add}
    name = conn.dialect.name
    if name in ("mysql", "mariadb"):
        insert = mysql.insert(table).values(values)
        added = {column: table.c[column] + insert.inserted[column] for column in add}
        conn.execute(insert.on_duplicate_key_update(added))
        return
    dialect = postgresql if name == "postgresql" else sqlite
    upsert = dialect.insert(table).values(values)
    changed = {column: table.c[column] + upsert.excluded[column] for column in add}
    conn.execute(upsert.on_conflict_do_update(index_elements=list(key), set_=changed))


_COMPLETED: Final = tuple(state.value for state in State if state.completed)


def _grouped(jobs: sa.Table, now: float) -> tuple[sa.Select[Any], sa.Select[Any], sa.Select[Any]]:
    """The rows counted: by class and state, endings by minute and state, durations by bucket."""
    c = jobs.c
    job_class = sa.func.coalesce(c.job_class, NO_CLASS)
    by_class = sa.select(job_class, c.state, sa.func.count()).group_by(job_class, c.state)
    minute = sa.cast(sa.func.floor(c.finished_at / 60) * 60, sa.BigInteger)
    ended = (
        sa.select(minute, c.state, sa.func.count())
        .where(c.state.in_(_COMPLETED), c.finished_at > now - ENDED_WINDOW)
        .group_by(minute, c.state)
    )
    seconds = c.finished_at - c.started_at
    bucket = sa.case(
        *((seconds <= bound, index) for index, bound in enumerate(DURATION_BOUNDS)),
        else_=len(DURATION_BOUNDS),
    )
    durations = (
        sa.select(bucket, sa.func.count(), sa.func.sum(seconds))
        .where(c.state.in_(_COMPLETED), c.finished_at >= c.started_at)
        .group_by(bucket)
    )
    return by_class, ended, durations


def rebuild(conn: Connection, jobs: sa.Table, tables: CounterTables, now: float) -> None:
    """Count every row once (a table from before the counters), in the caller's transaction."""
    by_class, ended, durations = _grouped(jobs, now)
    conn.execute(sa.delete(tables.counts))
    conn.execute(sa.delete(tables.ended))
    conn.execute(sa.delete(tables.durations))
    conn.execute(sa.insert(tables.counts).from_select(["job_class", "state", "n"], by_class))
    conn.execute(sa.insert(tables.ended).from_select(["minute", "state", "n"], ended))
    conn.execute(sa.insert(tables.durations).from_select(["bucket", "n", "total"], durations))


def count_rows(conn: Connection, jobs: sa.Table, since: datetime) -> Tally:
    """The :class:`Tally` counted from the rows themselves: a table without its counter tables."""
    by_class, ended, durations = _grouped(jobs, time.time())
    return _tally(
        conn.execute(by_class).all(),
        conn.execute(ended).all(),
        conn.execute(durations).all(),
        since,
    )


def prune_ended(conn: Connection, tables: CounterTables, now: float) -> None:
    """Forget the minutes older than the window, and counters that reached zero."""
    conn.execute(sa.delete(tables.ended).where(tables.ended.c.minute < now - ENDED_WINDOW))
    conn.execute(sa.delete(tables.counts).where(tables.counts.c.n == 0))


def read(conn: Connection, tables: CounterTables, since: datetime) -> Tally:
    """The counters, with the ``ended`` minutes from ``since`` on."""
    counts = tables.counts.c
    by_class = conn.execute(sa.select(counts.job_class, counts.state, counts.n)).all()
    first = counting.minute_of(since.timestamp())
    ended = conn.execute(sa.select(tables.ended).where(tables.ended.c.minute >= first)).all()
    return _tally(by_class, ended, conn.execute(sa.select(tables.durations)).all(), since)


def _tally(
    by_class: Sequence[Any], ended: Sequence[Any], durations: Sequence[Any], since: datetime
) -> Tally:
    """The :class:`Tally` of counter rows; ``durations`` rows are ``(bucket, n, seconds)``."""
    histogram = [(bucket, n) for bucket, n, _ in durations]
    seconds = sum(float(total) for *_, total in durations)
    return counting.tally_of(by_class, ended, histogram, seconds, since=since)
