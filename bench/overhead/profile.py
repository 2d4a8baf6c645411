"""Where a tracked write's µs go, in-process: ``python -m bench.overhead.profile``.

Drives immortus's own paths against an SQLite store in a temporary file, with no queue around
them: the **enqueue** path (:func:`immortus.lifecycle.job_enqueued`, what every queue's enqueue
hook calls), the worker's **job** path (:func:`immortus.jobs.start_attempt` then ``finish()``,
what a queue's hooks call around a job) and **job, one write** (``finished`` alone: what a job
would cost if its ``started`` were folded into its ending, which immortus does not do), beside
the floor of :mod:`bench.overhead.bare` on the same file. First untimed rounds (the totals),
then rounds with every section of :data:`SECTIONS` wrapped in a timer that keeps each section's
own time (its sections' taken out), SQL statements by kind through a connection subclass. The
timers' own cost is measured (:meth:`Sections.calibrate`) and taken out; what is left of it
lands in the calling sections, so read the shares, not the sum. ``--clock cpu`` (the default)
times this thread's CPU, steadier on a busy host than the wall clock.

    .venv/bin/python -m bench.overhead.profile --jobs 2000 --rounds 5
"""

from __future__ import annotations

import argparse
import functools
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import immortus
from bench.common import table
from bench.overhead.bare import BareWriter
from immortus import heartbeat, jobs, lifecycle, outbox, store_strategy, strategy
from immortus.stores import records, sqlite, sqlite_counts, sqlite_groups
from immortus.stores.sqlite import SQLiteStore

JOB_CLASS: Final = "bench.overhead.profile.noop"
#: The operations profiled, in the table's column order.
OPERATIONS: Final = ("enqueue", "job", "job, one write")

#: ``(owner, attribute, section)``: what is timed. Functions are patched where their caller
#: looks them up (the module that imported them), methods on their class. An attribute the
#: code no longer has is left out (the report names it).
SECTIONS: Final[tuple[tuple[Any, str, str], ...]] = (
    (lifecycle, "_emit", "lifecycle._emit"),
    (lifecycle, "check_job_id", "validation"),
    (lifecycle, "check_job_class", "validation"),
    (lifecycle, "find_recording_strategy", "finder"),
    (lifecycle, "notify", "lifecycle.notify (arguments)"),
    (store_strategy.StoreStrategy, "on_event", "store strategy"),
    (store_strategy, "Event", "Event()"),
    (strategy, "Event", "Event()"),
    (outbox, "record", "outbox"),
    (SQLiteStore, "record", "SQLiteStore.record"),
    (SQLiteStore, "_connection", "SQLiteStore.record"),
    (sqlite, "_row", "row -> dict, decode, lease"),
    (sqlite, "decode", "row -> dict, decode, lease"),
    (sqlite, "lease_of", "row -> dict, decode, lease"),
    (sqlite, "advance", "advance (lease rules)"),
    (records, "apply", "transitions.apply"),
    (records, "archived", "history: archived"),
    (records, "history_after", "history: encode"),
    (SQLiteStore, "_write", "_write"),
    (SQLiteStore, "_insert", "_write"),
    (sqlite, "change", "counters: change()"),
    (sqlite_counts, "add", "counters: add"),
    (sqlite_groups, "add", "groups: add"),
    (sqlite, "encode", "encode"),
    (sqlite, "changed", "changed columns"),
    (heartbeat, "watch", "heartbeat watch/unwatch"),
    (heartbeat, "unwatch", "heartbeat watch/unwatch"),
    (jobs, "_flush_progress", "jobs: progress flush"),
)


#: The sections' clocks (``--clock``).
CLOCKS: Final[dict[str, Callable[[], int]]] = {
    "cpu": time.thread_time_ns,
    "wall": time.perf_counter_ns,
}


def _statement(sql: str) -> str:
    """The section of an SQL statement, by what it does."""
    head = sql.lstrip()[:12].upper()
    if head.startswith("BEGIN"):
        return "SQL BEGIN IMMEDIATE"
    if head.startswith("COMMIT"):
        return "SQL COMMIT"
    if any(f"immortus_{table}" in sql for table in ("counts", "ended", "durations")):
        return "SQL counters"
    if "immortus_groups" in sql:
        return "SQL groups"
    if head.startswith("SELECT"):
        return "SQL read row"
    return "SQL write row"


class Sections:
    """Timers around :data:`SECTIONS` and SQL statements, each keeping its own time."""

    def __init__(self, clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self.clock = clock
        self.own_ns: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.nested: Counter[str] = Counter()  # calls of sections inside each section
        self._open: list[list[int]] = []  # per open section: its sections' time, their calls
        self.cost = (0.0, 0.0)  # the timers' ns inside a section and in its caller, a call
        self.missing: list[str] = []  # sections the code no longer has
        self._patched: list[tuple[Any, str, Any]] = []

    def run(self, section: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``function``, adding its time less its sections' to ``section``."""
        self._open.append([0, 0])
        start = self.clock()
        try:
            return function(*args, **kwargs)
        finally:
            elapsed = self.clock() - start
            children_ns, children = self._open.pop()
            self.own_ns[section] += elapsed - children_ns
            self.calls[section] += 1
            self.nested[section] += children
            if self._open:
                self._open[-1][0] += elapsed
                self._open[-1][1] += 1

    def corrected(
        self, own: Counter[str], calls: Counter[str], nested: Counter[str]
    ) -> dict[str, float]:
        """``own`` ns less the timers' cost: :meth:`calibrate`'s, per call and per nested call."""
        inside, outside = self.cost
        return {
            section: own[section] - calls[section] * inside - nested[section] * outside
            for section in own
        }

    def calibrate(self, calls: int = 2000, repeats: int = 20) -> None:
        """Measure the timers' own cost: inside a section (ns a call), and in its caller."""
        probe = Sections(self.clock)
        child = probe._timed(_nothing, "child")
        baseline = []
        for _ in range(repeats):
            start = self.clock()
            for _ in range(calls):
                _nothing()
            baseline.append(self.clock() - start)

        def parent() -> None:
            for _ in range(calls):
                child()

        outside = []
        for _ in range(repeats):
            before = probe.own_ns["parent"]
            probe.run("parent", parent)
            outside.append(probe.own_ns["parent"] - before)
        inside = probe.own_ns["child"] / probe.calls["child"]
        self.cost = (
            inside,
            max(0.0, (statistics.median(outside) - statistics.median(baseline)) / calls),
        )

    def install(self) -> None:
        """Wrap every section of :data:`SECTIONS`, and time SQL on new connections."""
        for owner, name, section in SECTIONS:
            original = vars(owner).get(name)
            if original is None:
                self.missing.append(f"{getattr(owner, '__name__', owner)}.{name}")
                continue
            self._patched.append((owner, name, original))
            setattr(owner, name, self._timed(original, section))
        connect = sqlite3.connect
        self._patched.append((sqlite3, "connect", connect))
        setattr(sqlite3, "connect", functools.partial(connect, factory=self._connection_class()))  # noqa: B010

    def uninstall(self) -> None:
        """Put back what :meth:`install` wrapped."""
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched.clear()

    def _timed(self, function: Callable[..., Any], section: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            return self.run(section, function, *args, **kwargs)

        return timed

    def _connection_class(self) -> type[sqlite3.Connection]:
        sections = self

        class TimedConnection(sqlite3.Connection):
            def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
                run = super().execute
                return sections.run(_statement(sql), run, sql, parameters)  # type: ignore[no-any-return]

            def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
                run = super().executemany
                return sections.run(_statement(sql), run, sql, parameters)  # type: ignore[no-any-return]

        return TimedConnection


def _nothing() -> None:
    pass


def _ids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


def _enqueue(ids: Sequence[str]) -> None:
    for job_id in ids:
        lifecycle.job_enqueued(job_id, JOB_CLASS)


def _job(ids: Sequence[str]) -> None:
    for job_id in ids:
        jobs.start_attempt(job_id, JOB_CLASS, attempt=1).finish()


def _ending_only(ids: Sequence[str]) -> None:
    """A job whose ``started`` is folded into its ending: one write (not implemented)."""
    for job_id in ids:
        lifecycle.job_finished(job_id, JOB_CLASS, attempt=1)


def _timed_round(count: int, bare: BareWriter) -> dict[str, tuple[float, float]]:
    """One round: ``count`` of each operation and of bare writes; µs (wall, CPU) per one."""
    figures: dict[str, tuple[float, float]] = {}
    steps: tuple[tuple[str, Callable[[Sequence[str]], None]], ...] = (
        ("enqueue", _enqueue),
        ("job", _job),
    )
    ids = _ids(count)
    for name, step in steps:
        wall, cpu = time.perf_counter(), time.process_time()
        step(ids)
        figures[name] = (
            (time.perf_counter() - wall) * 1e6 / count,
            (time.process_time() - cpu) * 1e6 / count,
        )
    ended = _ids(count)
    _enqueue(ended)
    wall, cpu = time.perf_counter(), time.process_time()
    _ending_only(ended)
    figures["job, one write"] = (
        (time.perf_counter() - wall) * 1e6 / count,
        (time.process_time() - cpu) * 1e6 / count,
    )
    timing = bare.measure(count)
    figures["bare insert"] = (timing.insert_us, timing.insert_cpu_us)
    figures["bare update"] = (timing.update_us, timing.update_cpu_us)
    return figures


def _medians(rounds: list[dict[str, tuple[float, float]]]) -> dict[str, tuple[float, float]]:
    return {
        name: (
            statistics.median(r[name][0] for r in rounds),
            statistics.median(r[name][1] for r in rounds),
        )
        for name in rounds[0]
    }


def _sectioned(sections: Sections, count: int, rounds: int) -> dict[str, dict[str, float]]:
    """Run the operations with every section timed; the ns of each section, per operation,
    less the timers' own cost."""
    own: dict[str, Counter[str]] = {name: Counter() for name in OPERATIONS}
    calls: dict[str, Counter[str]] = {name: Counter() for name in OPERATIONS}
    nested: dict[str, Counter[str]] = {name: Counter() for name in OPERATIONS}
    for _ in range(rounds):
        ids, ended = _ids(count), _ids(count)
        for name, step, batch in (
            ("enqueue", _enqueue, ids),
            ("job", _job, ids),
            ("enqueue", _enqueue, ended),
            ("job, one write", _ending_only, ended),
        ):
            before = (sections.own_ns.copy(), sections.calls.copy(), sections.nested.copy())
            sections.run("(the hooks' callers)", step, batch)
            own[name].update(sections.own_ns - before[0])
            calls[name].update(sections.calls - before[1])
            nested[name].update(sections.nested - before[2])
    return {name: sections.corrected(own[name], calls[name], nested[name]) for name in OPERATIONS}


def render(
    untimed: dict[str, tuple[float, float]],
    by_operation: dict[str, dict[str, float]],
    *,
    count: int,
    rounds: int,
    clock: str,
    cost: tuple[float, float],
) -> str:
    """The report: the untimed totals against the floor, then µs per section and operation."""
    bare_insert, bare_update = untimed["bare insert"], untimed["bare update"]
    floors = {"enqueue": bare_insert, "job": bare_update, "job, one write": bare_update}
    writes = {"enqueue": 1, "job": 2, "job, one write": 1}
    total_rows = []
    for name in OPERATIONS:
        (wall, cpu), (floor, floor_cpu) = untimed[name], floors[name]
        n = writes[name]
        total_rows.append(
            [
                name,
                str(n),
                f"{wall:,.1f} ({cpu:,.1f})",
                f"{n * floor:,.1f} ({n * floor_cpu:,.1f})",
                f"{wall - n * floor:,.1f} ({cpu - n * floor_cpu:,.1f})",
            ]
        )
    lines = [
        f"immortus's write path, in-process, SQLite store; medians of rounds of {count}",
        "",
        *table(
            ["operation", "writes", "µs (CPU)", "bare writes µs (CPU)", "immortus above bare"],
            total_rows,
        ),
        "",
        f"bare write: insert {bare_insert[0]:,.1f} µs ({bare_insert[1]:,.1f} CPU), "
        f"update {bare_update[0]:,.1f} µs ({bare_update[1]:,.1f} CPU)",
        "",
    ]
    # Each timed round enqueues twice (the jobs of both job paths).
    per = {name: 1e3 * count * rounds * (2 if name == "enqueue" else 1) for name in OPERATIONS}

    def cell(name: str, section: str) -> str:
        return f"{by_operation[name].get(section, 0.0) / per[name]:,.1f}"

    names = sorted(
        {section for counted in by_operation.values() for section in counted},
        key=lambda section: -sum(by_operation[n].get(section, 0.0) / per[n] for n in OPERATIONS),
    )
    rows = [[section, *(cell(n, section) for n in OPERATIONS)] for section in names]
    totals = [f"{sum(by_operation[n].values()) / per[n]:,.1f}" for n in OPERATIONS]
    rows.append(["total (timers' cost out)", *totals])
    inside, outside = cost
    lines += [
        f"µs per operation by section, {clock} clock: each section's own time, less the timers' "
        f"({inside:,.0f} ns in a section and {outside:,.0f} ns in its caller, a call)",
        *table(["section", *OPERATIONS], rows),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Profile the paths; print the report."""
    parser = argparse.ArgumentParser(prog="python -m bench.overhead.profile", description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs a round (1000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="cpu",
        help="the sections' clock: this thread's CPU time (steadier on a busy host), or wall",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="immortus-profile-") as tmp:
        path = Path(tmp) / "tracking.sqlite3"
        store = SQLiteStore(path)
        immortus.configure(store=store, progress_interval=0)
        immortus.declare(JOB_CLASS)
        bare = BareWriter(path)
        try:
            _timed_round(args.jobs // 5 or 1, bare)  # warm-up
            untimed = _medians([_timed_round(args.jobs, bare) for _ in range(args.rounds)])
            sections = Sections(CLOCKS[args.clock])
            sections.calibrate()
            store.close()  # its next connection is a timed one
            sections.install()
            try:
                by_operation = _sectioned(sections, args.jobs, args.rounds)
            finally:
                sections.uninstall()
        finally:
            bare.close()
            store.close()
            immortus.config.reset()
    print(
        render(
            untimed,
            by_operation,
            count=args.jobs,
            rounds=args.rounds,
            clock=args.clock,
            cost=sections.cost,
        )
    )
    if sections.missing:
        print(f"not timed (the code has them no more): {', '.join(sections.missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
