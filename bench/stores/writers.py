"""PostgreSQL under many writers: how many progress events per second do 1, 8 and 32 workers write?

For each number of writer processes, one after the other on the same private PostgreSQL:

- **immortus**: each process runs :data:`JOBS` jobs through the job API
  (``immortus.running``, then ``immortus.progress`` at every step, ``progress_interval=0`` so
  that every call is written; heartbeats off), into one ``SQLStore`` table;
- **psycopg**: each process writes the same number of events as bare single-row UPSERTs
  (``INSERT ... ON CONFLICT (job_id) DO UPDATE``, autocommit, prepared) into a table of its own
  shape: the least any tracker could do per event.

Both start together once every process has connected, and are timed from the first event to
the last. The figure is the ratio psycopg / immortus in the same run (absolute rates on a shared
machine are noise), with p50 and p99 of one event's latency as the job sees it. What limits the
rate is measured, not guessed: each client's CPU time per event (``time.process_time``), the
CPU its PostgreSQL backend used per event (``/proc/<pid>/stat`` of the backends), and what the
backends were doing, sampled from ``pg_stat_activity`` every few milliseconds during the run.

Processes are forks of one server process that imported everything once (``forkserver``).
Figures go to ``bench/results/latest.json`` under ``postgres_writers``.

Run it from the repository root: ``make bench`` or ``.venv/bin/python -m bench.stores.writers
[--quick | --full] [--writers 1,8,32]``.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import os
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bench import results
from bench.common import STARTED, BenchError, add_modes, log, table

#: Writer processes of each configuration, in the order they run.
WRITERS: Final = (1, 8, 32)
#: Jobs each writer process runs; each is ``started``, ``STEPS`` progress events, ``finished``.
JOBS: Final = 4
QUICK_STEPS: Final = 40
FULL_STEPS: Final = 250
#: Runs of each configuration in ``--full`` mode (the median rate is reported).
FULL_ROUNDS: Final = 3
#: Seconds between two samples of ``pg_stat_activity``.
SAMPLE_EVERY: Final = 0.005
#: Generous: the machine may be loaded.
TIMEOUT: Final = 600.0
#: The baseline's table and statement.
BASELINE_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS bench_upserts (job_id VARCHAR(255) PRIMARY KEY, state VARCHAR(32),"
    " progress_current DOUBLE PRECISION, progress_total DOUBLE PRECISION, progress_message TEXT,"
    " updated_at DOUBLE PRECISION)"
)
UPSERT: Final = (
    "INSERT INTO bench_upserts (job_id, state, progress_current, progress_total,"
    " progress_message, updated_at) VALUES (%s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (job_id) DO UPDATE SET state = excluded.state,"
    " progress_current = excluded.progress_current, progress_total = excluded.progress_total,"
    " progress_message = excluded.progress_message, updated_at = excluded.updated_at"
)
KINDS: Final = ("immortus", "psycopg")
JOB_CLASS: Final = "bench.writers.job"


@dataclass(frozen=True, slots=True)
class Plan:
    """What one writer process does: ``kind`` of writing, its number, its events."""

    kind: str
    number: int
    steps: int

    @property
    def events(self) -> int:
        """Events the process writes: per job, ``started``, the steps and ``finished``."""
        return JOBS * (self.steps + 2)

    def job_id(self, job: int) -> str:
        """The id of the process's ``job``-th job."""
        return f"{self.kind}-w{self.number}-j{job}"


# -- the writer processes -------------------------------------------------------------------------


def _connect_immortus(url: str) -> int:
    """Configure immortus on ``url`` and connect; return the pid of the connection's backend."""
    import immortus
    from immortus.stores.sql import SQLStore

    immortus.configure(store=url, progress_interval=0, heartbeat_interval=None)
    immortus.declare(JOB_CLASS)
    store = immortus.get_store()
    assert isinstance(store, SQLStore)
    store.get("warm-up")  # connects before the clock starts
    with store.engine.connect() as conn:  # the pool's one connection, which the events use
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def _run_immortus(plan: Plan) -> list[float]:
    """Run the plan's jobs through the job API; return the seconds of each progress call."""
    import immortus

    seconds: list[float] = []
    clock = time.perf_counter
    for job in range(JOBS):
        with immortus.running(plan.job_id(job), JOB_CLASS):
            for step in range(1, plan.steps + 1):
                began = clock()
                immortus.progress(step, plan.steps, f"step {step}")
                seconds.append(clock() - began)
    return seconds


def _run_psycopg(plan: Plan, conn: Any) -> list[float]:
    """Write the plan's events as UPSERTs; return the seconds of each progress one."""
    seconds: list[float] = []
    clock = time.perf_counter
    for job in range(JOBS):
        job_id = plan.job_id(job)
        conn.execute(UPSERT, (job_id, "started", None, None, None, time.time()), prepare=True)
        for step in range(1, plan.steps + 1):
            began = clock()
            values = (job_id, "started", step, plan.steps, f"step {step}", time.time())
            conn.execute(UPSERT, values, prepare=True)
            seconds.append(clock() - began)
        conn.execute(UPSERT, (job_id, "finished", None, None, None, time.time()), prepare=True)
    return seconds


def writer(plan: Plan, *, url: str, dsn: str, ready: Any, go: Any, done: Any, out: Any) -> None:
    """In a writer process: connect, say ready, write the plan's events at ``go``, report."""
    import psycopg

    conn: Any = None
    if plan.kind == "immortus":
        backend = _connect_immortus(url)
    else:
        conn = psycopg.connect(dsn, autocommit=True)
        backend = conn.info.backend_pid
    ready.put(backend)
    if not go.wait(TIMEOUT):
        return
    cpu, began = time.process_time(), time.monotonic()
    seconds = _run_immortus(plan) if conn is None else _run_psycopg(plan, conn)
    ended, cpu = time.monotonic(), time.process_time() - cpu
    out.put({"began": began, "ended": ended, "cpu": cpu, "seconds": seconds})
    done.wait(TIMEOUT)  # the connection stays open until its backend's CPU time is read
    if conn is not None:
        conn.close()


# -- one configuration ----------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    """What one configuration (a kind, a number of writers) measured."""

    kind: str
    writers: int
    events: int
    wall_s: float
    latencies_s: list[float]
    client_cpu_s: float
    server_cpu_s: float
    waits: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.events / self.wall_s


def _ticks(pid: int) -> int:
    """CPU clock ticks (user + system) a process used so far; 0 if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return 0


class Sampler:
    """Samples what the writers' backends are doing in ``pg_stat_activity``, in a thread."""

    def __init__(self, dsn: str, backends: list[int]) -> None:
        self.dsn = dsn
        self.backends = backends
        self.waits: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)

    def _run(self) -> None:
        import psycopg

        query = (
            "SELECT state, wait_event_type, wait_event FROM pg_stat_activity WHERE pid = ANY(%s)"
        )
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.wait(SAMPLE_EVERY):
                for state, kind, event in conn.execute(query, (self.backends,), prepare=True):
                    self.waits[_activity(state, kind, event)] += 1


def _activity(state: str | None, kind: str | None, event: str | None) -> str:
    """One sample's category: what the backend is doing, or what it waits for."""
    if state == "active":
        return "server: running" if kind is None else f"server: waits {kind}/{event}"
    if state == "idle in transaction":
        return "client: inside a transaction"
    return "client: between transactions"


def run_configuration(
    context: Any, *, kind: str, writers: int, steps: int, url: str, dsn: str
) -> Run:
    """Run ``writers`` processes of ``kind`` together; return what they measured."""
    module = importlib.import_module("bench.stores.writers")  # picklable, even run as __main__
    ready, out = context.Queue(), context.Queue()
    go, done = context.Event(), context.Event()
    plans = [Plan(kind, number, steps) for number in range(writers)]
    processes = [
        context.Process(
            target=module.writer,
            args=(plan,),
            kwargs={"url": url, "dsn": dsn, "ready": ready, "go": go, "done": done, "out": out},
        )
        for plan in plans
    ]
    for process in processes:
        process.start()
    try:
        backends = [ready.get(timeout=TIMEOUT) for _ in processes]
        cpu_before = sum(_ticks(pid) for pid in backends)
        with Sampler(dsn, backends) as sampler:
            go.set()
            reports = [out.get(timeout=TIMEOUT) for _ in processes]
        server_ticks = sum(_ticks(pid) for pid in backends) - cpu_before
    except queue.Empty:
        raise BenchError(f"{kind} with {writers} writers: a writer did not report") from None
    finally:
        go.set()
        done.set()
        for process in processes:
            process.join(TIMEOUT)
    if any(process.exitcode != 0 for process in processes):
        raise BenchError(f"{kind} with {writers} writers: a writer process failed")
    return Run(
        kind=kind,
        writers=writers,
        events=sum(plan.events for plan in plans),
        wall_s=max(r["ended"] for r in reports) - min(r["began"] for r in reports),
        latencies_s=[second for r in reports for second in r["seconds"]],
        client_cpu_s=sum(r["cpu"] for r in reports),
        server_cpu_s=server_ticks / os.sysconf("SC_CLK_TCK"),
        waits=sampler.waits,
    )


def check(url: str, dsn: str, runs: Sequence[Run], steps: int) -> None:
    """Check every event landed: every job finished at its last step, every UPSERT there.

    Raises:
        BenchError: a job or a row is missing or not at its last step.
    """
    import psycopg

    from immortus.status import State
    from immortus.stores.sql import SQLStore

    writers = max(run.writers for run in runs)
    store = SQLStore(url)
    try:
        ids = [Plan("immortus", w, steps).job_id(j) for w in range(writers) for j in range(JOBS)]
        found = store.get_many(ids)
    finally:
        store.close()
    last = {job_id: status.progress for job_id, status in found.items()}
    wrong = [
        job_id
        for job_id in ids
        if job_id not in found
        or found[job_id].state is not State.FINISHED
        or getattr(last[job_id], "current", None) != steps
    ]
    if wrong:
        raise BenchError(f"{len(wrong)} immortus jobs did not end at their last step: {wrong[:3]}")
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM bench_upserts WHERE state = 'finished'").fetchone()
    if row is None or row[0] != writers * JOBS:
        raise BenchError(f"the baseline table holds {row} finished rows, not {writers * JOBS}")


# -- the report -----------------------------------------------------------------------------------


def _ms(seconds: list[float], percent: float) -> float:
    ordered = sorted(seconds)
    index = min(len(ordered) - 1, max(0, round(percent / 100 * len(ordered)) - 1))
    return ordered[index] * 1000


def _median_run(runs: list[Run]) -> Run:
    """The run of median rate among the rounds of one configuration."""
    return sorted(runs, key=lambda run: run.rate)[len(runs) // 2]


def render(best: dict[tuple[str, int], Run], writers: Sequence[int]) -> str:
    """The rates side by side, then the costs per event, then what the backends did at most."""
    head = ["writers", "immortus ev/s", "psycopg ev/s", "ratio", "p50 ms", "p99 ms"]
    head += ["psycopg p50", "psycopg p99"]
    rows = []
    for count in writers:
        ours, bare = best["immortus", count], best["psycopg", count]
        rows.append([
            str(count),
            f"{ours.rate:,.0f}",
            f"{bare.rate:,.0f}",
            f"{bare.rate / ours.rate:.1f}x",
            f"{_ms(ours.latencies_s, 50):.2f}",
            f"{_ms(ours.latencies_s, 99):.2f}",
            f"{_ms(bare.latencies_s, 50):.2f}",
            f"{_ms(bare.latencies_s, 99):.2f}",
        ])  # fmt: skip
    lines = ["PostgreSQL under many writers: progress events per second", ""]
    lines += table(head, rows)
    lines += ["", "CPU per event (ms): client process, PostgreSQL backend", ""]
    cost_rows = []
    for count in writers:
        row = [str(count)]
        for kind in KINDS:
            run = best[kind, count]
            row += [f"{run.client_cpu_s / run.events * 1000:.3f}"]
            row += [f"{run.server_cpu_s / run.events * 1000:.3f}"]
        cost_rows.append(row)
    cost_head = ["writers", "immortus client", "immortus server", "psycopg client"]
    lines += table([*cost_head, "psycopg server"], cost_rows)
    top = max(writers)
    lines += [
        "",
        f"What the backends did with {top} writers (share of pg_stat_activity samples)",
        "",
    ]
    categories = sorted(
        {name for kind in KINDS for name in best[kind, top].waits},
        key=lambda name: -best["immortus", top].waits[name],
    )
    share_rows = []
    for name in categories:
        row = [name]
        for kind in KINDS:
            waits = best[kind, top].waits
            row.append(f"{100 * waits[name] / max(1, waits.total()):.1f} %")
        share_rows.append(row)
    lines += table(["activity", *KINDS], share_rows)
    return "\n".join(lines)


def figures(best: dict[tuple[str, int], Run], writers: Sequence[int], steps: int) -> dict[str, Any]:
    """The run's figures for ``bench/results/latest.json``."""
    body: dict[str, Any] = {"jobs_per_writer": JOBS, "steps_per_job": steps, "configurations": []}
    for count in writers:
        entry: dict[str, Any] = {"writers": count}
        for kind in KINDS:
            run = best[kind, count]
            waits = run.waits.total() or 1
            entry[kind] = {
                "events": run.events,
                "events_per_s": round(run.rate, 1),
                "p50_ms": round(_ms(run.latencies_s, 50), 3),
                "p99_ms": round(_ms(run.latencies_s, 99), 3),
                "client_cpu_ms_per_event": round(run.client_cpu_s / run.events * 1000, 4),
                "server_cpu_ms_per_event": round(run.server_cpu_s / run.events * 1000, 4),
                "activity_share": {k: round(v / waits, 4) for k, v in run.waits.items()},
            }
        entry["ratio"] = round(
            entry["psycopg"]["events_per_s"] / entry["immortus"]["events_per_s"], 2
        )
        body["configurations"].append(entry)
    return body


# -- the command ----------------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.stores.writers", description=__doc__.split("\n")[0]
    )
    add_modes(
        parser,
        quick=f"{JOBS} jobs of {QUICK_STEPS} steps per writer, one round: about a minute",
        full=f"{JOBS} jobs of {FULL_STEPS} steps per writer, {FULL_ROUNDS} rounds (median)",
    )
    parser.add_argument(
        "--writers",
        default=",".join(map(str, WRITERS)),
        help="comma-separated numbers of writer processes (default: 1,8,32)",
    )
    args = parser.parse_args(argv)
    try:
        args.writers = sorted({int(part) for part in args.writers.split(",") if part.strip()})
    except ValueError:
        parser.error(f"--writers takes whole numbers, not {args.writers!r}")
    if not args.writers or min(args.writers) < 1:
        parser.error("--writers takes numbers from 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    import psycopg

    from devservices import PostgresServer

    args = _parse(argv)
    steps = FULL_STEPS if args.full else QUICK_STEPS
    rounds = FULL_ROUNDS if args.full else 1
    os.environ.pop(PostgresServer.env_var, None)  # it drops what it writes: a private server
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["immortus.stores.sql", "psycopg"])
    log(f"PostgreSQL writers: {args.writers} processes, {JOBS} jobs x {steps} steps each")
    runs: dict[tuple[str, int], list[Run]] = {}
    try:
        with PostgresServer() as server:
            with psycopg.connect(server.dsn, autocommit=True) as conn:
                conn.execute(BASELINE_DDL)
                version = str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]  # type: ignore[index]
            from immortus.stores.sql import SQLStore

            SQLStore(server.url).prune()  # creates the table once, before the writers race to
            for turn in range(rounds):
                for count in args.writers:
                    for kind in KINDS:
                        table = "immortus_jobs" if kind == "immortus" else "bench_upserts"
                        with psycopg.connect(server.dsn, autocommit=True) as conn:
                            conn.execute(f"TRUNCATE {table}")
                        run = run_configuration(
                            context,
                            kind=kind,
                            writers=count,
                            steps=steps,
                            url=server.url,
                            dsn=server.dsn,
                        )
                        runs.setdefault((kind, count), []).append(run)
                        log(
                            f"round {turn + 1}: {kind} x{count}: {run.rate:,.0f} events/s "
                            f"({run.events} events in {run.wall_s:.2f} s)"
                        )
                    check(server.url, server.dsn, [runs[kind, count][-1] for kind in KINDS], steps)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except BenchError as exc:
        log(f"FAILED: {exc}")
        return 1
    best = {key: _median_run(value) for key, value in runs.items()}
    print(render(best, args.writers))
    body = figures(best, args.writers, steps)
    body["postgresql"] = version
    body["rounds"] = rounds
    body["duration_s"] = round(time.perf_counter() - STARTED, 1)
    path = results.save("postgres_writers", body)
    log(f"figures written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
