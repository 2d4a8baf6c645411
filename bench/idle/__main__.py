"""Idle web processes: what they cost their store with nothing happening, polling against push.

For 1, 4 and 16 web processes (each a uvicorn process serving ``immortus_routes()``, see
:mod:`bench.idle.app`), each with ``streams`` event streams open on jobs that do not change,
it measures over ``window`` seconds:

- store operations per second with nothing written: Redis, the calls of ``INFO commandstats``
  (less the benchmark's own ``INFO``); PostgreSQL, ``pg_stat_database.xact_commit`` of the
  database (less the benchmark's own reads of it);
- then the write-to-page latency: ``writes`` progress writes, one at a time, and for each the
  time until a stream of every process delivered it (p50, p95 over every process and write).

Each size runs with push off (``IMMORTUS_PUSH=off``: the feed polls at its 50 ms tick) and on,
side by side in one run, on the same servers. Nothing is asserted; the figures are printed and
saved with ``bench.results.save`` under ``idle_processes``.

    python -m bench.idle            # quick: 1, 4, 16 processes, 2 s window, 5 writes
    python -m bench.idle --full     # 10 s window, 20 writes
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import redis
import sqlalchemy as sa

import immortus
from bench import results
from bench.common import BenchError, add_modes, log, table
from bench.idle import JOB_CLASS, STORE_VARIABLE
from devservices import PostgresServer, RedisServer, end_process, free_port
from devservices.processes import ROOT, python_path
from immortus import Progress, lifecycle

__all__ = ["main"]

SIZES: Final = (1, 4, 16)
STREAMS: Final = 2  # open per process, each on a job of its own that never changes
DEADLINE: Final = 30.0


class Stream:
    """One raw HTTP connection reading a job's event stream, keeping what arrived and when."""

    def __init__(self, port: int, job_id: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        path = f"/immortus/stream/{job_id}/{JOB_CLASS}"
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        self.received = b""
        self.arrivals: list[tuple[float, int]] = []  # (monotonic, size of received after)
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(65536):
                now = time.monotonic()
                with self.lock:
                    self.received += chunk
                    self.arrivals.append((now, len(self.received)))

    def seen_at(self, marker: bytes, after: float) -> float | None:
        """When ``marker`` first arrived, if it did (after monotonic ``after``)."""
        with self.lock:
            at = self.received.find(marker)
            if at < 0:
                return None
            return next(when for when, size in self.arrivals if size > at)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


@contextlib.contextmanager
def web_processes(count: int, store_url: str, push: bool, logs: Path) -> Iterator[list[int]]:
    """Start ``count`` uvicorn processes serving the app; yield their ports."""
    env = {**os.environ, STORE_VARIABLE: store_url, "PYTHONPATH": python_path()}
    if not push:
        env["IMMORTUS_PUSH"] = "off"
    processes: list[subprocess.Popen[bytes]] = []
    ports = [free_port() for _ in range(count)]
    try:
        for port in ports:
            command = [
                sys.executable, "-m", "uvicorn", "bench.idle.app:app", "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning", "--no-access-log",
            ]  # fmt: skip
            with (logs / f"uvicorn-{port}.log").open("wb") as out:
                process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
            processes.append(process)
        deadline = time.monotonic() + 120
        for port, process in zip(ports, processes, strict=True):
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"uvicorn on {port} did not start (see {logs})")
                time.sleep(0.1)
        yield ports
    finally:
        for process in processes:
            end_process(process)


def record_jobs(store_url: str, job_ids: Sequence[str]) -> None:
    immortus.configure(store=store_url, progress_interval=0)
    immortus.declare(JOB_CLASS)
    for job_id in job_ids:
        lifecycle.job_started(job_id, JOB_CLASS)


def progress(job_id: str, mark: int) -> None:
    lifecycle.job_progress(
        job_id, Progress(current=mark, total=1000, message=f"m{mark}"), JOB_CLASS
    )


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def measure(
    count: int,
    *,
    push: bool,
    store_url: str,
    operations: Callable[[], float],
    plan: argparse.Namespace,
    logs: Path,
) -> dict[str, Any]:
    """One size, one mode: idle operations per second, then the write-to-page latency."""
    run = f"{'push' if push else 'poll'}{count}-{time.monotonic_ns()}"
    shared = f"{run}-shared"  # every process follows it: the latency job
    quiet = [f"{run}-{n}" for n in range(count * STREAMS)]
    record_jobs(store_url, [shared, *quiet])
    with web_processes(count, store_url, push, logs) as ports:
        streams = [Stream(port, shared) for port in ports]
        streams += [Stream(port, quiet[n * STREAMS + k]) for n, port in enumerate(ports)
                    for k in range(STREAMS - 1)]  # fmt: skip
        try:
            deadline = time.monotonic() + DEADLINE
            while not all(s.seen_at(b"data: ", 0) for s in streams):
                if time.monotonic() > deadline:
                    raise BenchError("a stream did not open")
                time.sleep(0.05)
            time.sleep(1.5)  # subscriptions confirmed, the first full re-read done
            before, started = operations(), time.monotonic()
            time.sleep(plan.window)
            rate = (operations() - before) / (time.monotonic() - started)
            latencies: list[float] = []
            for mark in range(1, plan.writes + 1):
                progress(shared, mark)
                written = time.monotonic()
                marker = f'"m{mark}"'.encode()
                for stream in streams[:count]:
                    while (seen := stream.seen_at(marker, written)) is None:
                        if time.monotonic() > written + DEADLINE:
                            raise BenchError(f"write {mark} never reached a page")
                        time.sleep(0.002)
                    latencies.append(max(0.0, seen - written) * 1000)
                time.sleep(0.3)
        finally:
            for stream in streams:
                stream.close()
    return {
        "processes": count,
        "push": push,
        "ops_per_s": round(rate, 1),
        "latency_p50_ms": round(statistics.median(latencies), 1),
        "latency_p95_ms": round(percentile(latencies, 95), 1),
    }


@contextlib.contextmanager
def redis_operations(url: str) -> Iterator[Callable[[], float]]:
    """Yield a count of the commands Redis ran so far (``INFO commandstats``, less ``INFO``)."""
    with redis.Redis.from_url(url, decode_responses=True) as client:

        def count() -> float:
            stats = client.info("commandstats")
            return float(sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info"))

        yield count


@contextlib.contextmanager
def postgres_operations(url: str) -> Iterator[Callable[[], float]]:
    """Yield a count of the transactions PostgreSQL committed so far, less the count's own."""
    engine = sa.create_engine(url)
    asked = 0
    query = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"

    def count() -> float:
        nonlocal asked
        asked += 1
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
            value = conn.execute(sa.text(query)).scalar_one()
        return float(value) - 3 * asked  # the benchmark's own transactions

    try:
        yield count
    finally:
        engine.dispose()


def render(store: str, rows: list[dict[str, Any]]) -> str:
    head = ["processes", "poll ops/s", "push ops/s", "poll p50/p95 ms", "push p50/p95 ms"]
    body = []
    for count in sorted({row["processes"] for row in rows}):
        poll = next(r for r in rows if r["processes"] == count and not r["push"])
        push = next(r for r in rows if r["processes"] == count and r["push"])
        body.append([
            str(count), f"{poll['ops_per_s']:.1f}", f"{push['ops_per_s']:.1f}",
            f"{poll['latency_p50_ms']:.0f}/{poll['latency_p95_ms']:.0f}",
            f"{push['latency_p50_ms']:.0f}/{push['latency_p95_ms']:.0f}",
        ])  # fmt: skip
    return "\n".join([f"idle web processes over {store}", *table(head, body)])


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__)
    add_modes(parser, quick="2 s window, 5 writes", full="10 s window, 20 writes")
    parser.add_argument("--stores", default="redis,postgres")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    args = parser.parse_args(argv)
    args.window, args.writes = (10.0, 20) if args.full else (2.0, 5)
    args.stores = [name.strip() for name in args.stores.split(",") if name.strip()]
    args.sizes = [int(size) for size in args.sizes.split(",")]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    plan = _parse(argv)
    figures: dict[str, Any] = {"window_s": plan.window, "writes": plan.writes}
    with contextlib.ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-idle-")))
        for name in plan.stores:
            if name == "redis":
                server: Any = stack.enter_context(RedisServer())
                ops = stack.enter_context(redis_operations(server.url))
            else:
                server = stack.enter_context(PostgresServer())
                ops = stack.enter_context(postgres_operations(server.url))
            url = server.url
            rows = []
            for count in plan.sizes:
                for push in (False, True):
                    log(f"{name}: {count} processes, push {'on' if push else 'off'}")
                    rows.append(
                        measure(
                            count, push=push, store_url=url, operations=ops, plan=plan, logs=logs
                        )
                    )
            print(render(name, rows), flush=True)
            figures[name] = rows
            immortus.config.reset()
    results.save("idle_processes", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
