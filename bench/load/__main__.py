"""Load test of the ASGI adapter: 1 000 pollers and 200 SSE streams against one uvicorn process.

One uvicorn process serves ``bench/load/app.py`` (``immortus_routes("/jobs")`` with a secret
key) over an SQLite file or a Redis database. This process seeds the store with jobs in every
state, then keeps writing to it as a worker would while the load runs:

- **pollers**: ``wrk`` holds ``--pollers`` keep-alive HTTP/1.1 connections (2 threads) for
  ``--duration`` seconds, each request a ``GET /jobs/verify/{id}?token=...`` of a random seeded
  job (``bench/load/wrk.lua``). Only seeded jobs are asked about, so every answer but a 200 is an
  error, as is every wrk socket error (connect, read, write, timeout);
- **churn**: a writer thread moves the progress of the running polled jobs (``--churn`` writes a
  second), so the pollers read changing records, not a cache;
- **streams**: ``--streams`` SSE clients (httpx) follow ``GET /jobs/stream/{id}?token=...`` of
  jobs that are waiting. Once every stream has its first frame, the writer starts them, moves
  their progress and ends each one (a tenth of them fail), spread over half the run. Each stream
  must end with its job's final ``completed: true`` frame and carry no ``event: error`` frame.
  The delivery time is from the moment the job's last write committed to the moment its client
  read the final frame;
- **memory**: the server's RSS (``VmRSS``) when it is idle after a warm-up (the same load, shorter,
  with streams of its own), and idle again after the run; the peak is ``VmHWM``;
- **server log**: the server runs with ``--log-level warning``: anything it writes to stderr is
  reported (immortus logs every 500 and 503 it answers).

Run ``python -m bench.load [--quick | --full] [--store sqlite] [--store redis] [--redis-url URL]
[--pollers 1000] [--streams 200] [--duration S]``: ``--quick`` (the default) runs 10 s per store,
``--full`` 60 s. Redis is a private ``redis-server`` (:mod:`devservices`) unless ``--redis-url``
names one (its jobs are added under fresh ids, nothing is deleted). The table goes to stdout, the
figures to ``bench/results/latest.json`` (section ``load``). ``tests/reliability/test_load.py``
runs the same with the full sizes and asserts zero errors and a bounded memory growth.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.common import BenchError, log
from bench.load.figures import LoadReport
from bench.load.plan import (
    LoadPlan,
)
from bench.load.report import render, save
from bench.load.run import run_load
from devservices import RedisServer


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description="Load immortus's ASGI routes with pollers and SSE streams (bench/load/).",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="10 s of load per store (default)")
    size.add_argument("--full", action="store_true", help="60 s of load per store")
    parser.add_argument(
        "--store", action="append", choices=("sqlite", "redis"), help="repeatable; default both"
    )
    parser.add_argument("--redis-url", help="a Redis database to use (default: a private server)")
    parser.add_argument("--duration", type=float, help="seconds of load (overrides the size)")
    parser.add_argument("--pollers", type=int, default=1000, help="wrk connections (1000)")
    parser.add_argument("--streams", type=int, default=200, help="SSE clients (200)")
    parser.add_argument("--jobs", type=int, default=1000, help="polled jobs (1000)")
    parser.add_argument("--churn", type=float, default=100.0, help="progress writes/s (100)")
    parser.add_argument("--wrk-timeout", type=float, default=10.0, help="seconds (10)")
    return parser.parse_args(argv)


def _store_url(
    name: str, args: argparse.Namespace, folder: Path, stack: contextlib.ExitStack
) -> str:
    if name == "sqlite":
        return f"sqlite:///{folder / 'jobs.sqlite3'}"
    if args.redis_url:
        url: str = args.redis_url
        return url
    log("starting a private redis-server")
    return stack.enter_context(RedisServer()).url


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load on each store; print the table; save the figures.

    Returns 0, or 1 when the run saw any error or could not be made.
    """
    args = _parse(argv)
    duration = args.duration or (60.0 if args.full else 10.0)
    plan = LoadPlan(
        pollers=args.pollers,
        duration=duration,
        streams=args.streams,
        jobs=args.jobs,
        churn=args.churn,
        wrk_timeout=args.wrk_timeout,
    )
    reports: list[LoadReport] = []
    try:
        for name in args.store or ["sqlite", "redis"]:
            with contextlib.ExitStack() as stack:
                folder = Path(
                    stack.enter_context(tempfile.TemporaryDirectory(prefix="immortus-load-"))
                )
                url = _store_url(name, args, folder, stack)
                reports.append(run_load(plan, url, name=name, folder=folder))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(render(reports))
    save(reports)
    return 1 if any(report.errors for report in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
