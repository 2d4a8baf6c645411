"""What does tracking cost a queue's worker? Jobs per second, untracked vs tracked, per queue.

For each queue (RQ, Celery, Huey, Dramatiq, Django tasks: one ``bench/overhead/<queue>_app.py``
each, holding its no-op jobs and a class that drives it), two real, long-lived workers in
subprocesses, one slot each, each on its own queue, drain batches of no-op jobs:

- **untracked**: the queue as it comes (no hooks anywhere, a job immortus never heard of);
- **tracked**: immortus's hooks installed the way the queue's docs say (one line), the job
  opted in with ``@immortus.track``, an SQLite store (``IMMORTUS_STORE``) in both processes.

A batch is a *gate* job, then the batch's jobs, enqueued by the benchmark while the gate holds
the worker's slot, then released (:class:`bench.overhead.worker.JobClock`). Every job's whole
body ticks the clock, the same for both kinds: the rate is timed inside the worker from the
batch's first job's start to its last job's end, so neither the enqueueing nor the worker's
start-up is. Two batch sizes (50 and 500 jobs quick, 200 and 2 000 full); each round runs both
kinds at both sizes, the order of kinds and of sizes reversed every other round, so that a noisy
neighbour hurts all alike. Per queue and size:

- ``ratio``: tracked over untracked median jobs per second (target: at least 0.90), and the
  same per CPU second of the worker (steadier on a busy host);
- ``µs/job``: what tracking adds to each job, ``1/tracked - 1/untracked`` rate (wall clock, and
  the worker's CPU time), paired within a round, median of the rounds, with their range. It
  should not depend on the batch size: ``slope`` says ``flat`` when the two sizes' ranges
  overlap;
- against the limit: beside each batch, the same number of bare writes on the store's file
  (:mod:`bench.overhead.bare`), the least that keeps tracking's promise (one write an enqueue,
  two a job); the **ceiling** untracked / (untracked + bare writes), the best ratio any
  tracker keeping the promise could reach, whether the target is met, missed or out of reach,
  and the µs immortus spends above the bare writes, at enqueue and in the worker;
- the enqueue rates, the store round trips per tracked job (the benchmark's store counts its
  calls while enqueuing, the tracked worker its own over its life) and, for queues in Redis,
  Redis commands per job.

With ``--history``, each round also runs the tracked worker's batches with the job history off
(:func:`bench.overhead.worker.switch_history`), beside those with it on: what the history adds
to a job, in µs and as a share of tracking's own cost, paired within each round.

Every batch is checked before it counts: no job left, every result the queue keeps a success,
and (tracked) every job ``finished`` in the store with its enqueue and start times.

Run ``python -m bench.overhead [--quick | --full] [--queue rq ...] [--history]`` from the
repository root. It starts a private redis-server (:mod:`devservices`) unless ``--redis-url``
names an empty database. Nothing is asserted: the figures are printed, added to
``bench/results/latest.json`` (:func:`bench.results.save`), and the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from bench import results
from bench.common import STARTED, BenchError, add_modes, log
from bench.overhead.figures import Section
from bench.overhead.queues import QUEUES, Options
from bench.overhead.report import figures, render
from bench.overhead.runner import WARMUP_JOBS, measure_queue
from bench.overhead.worker import OUT_ENV
from devservices import RedisServer

#: Batch sizes and rounds: quick (``make bench``) and full (``BENCH_FULL=1``).
QUICK_COUNTS: Final = (50, 500)
QUICK_ROUNDS: Final = 3
FULL_COUNTS: Final = (200, 2_000)
FULL_ROUNDS: Final = 5


@contextlib.contextmanager
def _private_redis(url: str | None) -> Iterator[str]:
    """Yield ``url``, or the URL of a private redis-server stopped at the end."""
    if url:
        yield url
        return

    log("starting a private redis-server")
    with RedisServer() as server:
        yield server.url


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.overhead",
        description="Jobs per second of each queue's worker, untracked vs tracked.",
    )
    add_modes(
        parser,
        quick=f"{QUICK_ROUNDS} rounds of batches of {' and '.join(map(str, QUICK_COUNTS))} jobs",
        full=f"{FULL_ROUNDS} rounds of batches of {' and '.join(map(str, FULL_COUNTS))} jobs",
    )
    parser.add_argument("--counts", help="comma-separated batch sizes, instead of the mode's")
    parser.add_argument("--rounds", type=int, help="rounds, instead of the mode's")
    parser.add_argument("--queue", choices=sorted(QUEUES), action="append", help="(all)")
    parser.add_argument("--fork", action="store_true", help="RQ: its default, forking worker")
    parser.add_argument("--redis-url", default=None, help="an EMPTY Redis database (flushed)")
    parser.add_argument(
        "--history",
        action="store_true",
        help="also run the tracked worker with the job history off: what the history adds",
    )
    parser.add_argument(
        "--celery-pool", choices=("solo", "threads"), default="solo", help="Celery's pool (solo)"
    )
    args = parser.parse_args(argv)
    counts: tuple[int, ...] = FULL_COUNTS if args.full else QUICK_COUNTS
    if args.counts:
        try:
            counts = tuple(int(count) for count in args.counts.split(","))
        except ValueError:
            parser.error(f"--counts takes whole numbers, not {args.counts!r}")
    if len(set(counts)) < 2 or min(counts) < WARMUP_JOBS:
        parser.error(f"--counts takes two counts or more, each at least {WARMUP_JOBS}")
    if args.history and args.fork:
        parser.error("--history switches the history in the worker: not with --fork")
    args.counts = tuple(sorted(set(counts)))
    args.rounds = args.rounds or (FULL_ROUNDS if args.full else QUICK_ROUNDS)
    if args.rounds < 1:
        parser.error("--rounds takes 1 or more")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the report; return 0 (or 1 if it could not be measured)."""
    args = _parse(argv)
    options = Options(
        counts=args.counts,
        rounds=args.rounds,
        fork=args.fork,
        redis_url=args.redis_url,
        celery_pool=args.celery_pool,
        history=args.history,
    )
    os.environ.pop(OUT_ENV, None)  # this process enqueues: its job clocks never report
    keys = list(dict.fromkeys(args.queue or QUEUES))
    sections: list[Section] = []
    with (
        tempfile.TemporaryDirectory(prefix="immortus-bench-") as tmp,
        _private_redis(options.redis_url) as redis_url,
    ):
        for key in keys:
            try:
                sections.append(measure_queue(key, options, Path(tmp), redis_url))
            except BenchError as exc:
                log(f"FAILED: {key}: {exc}")
                return 1
    duration_s = time.perf_counter() - STARTED
    print(render(sections, options, duration_s))
    path = results.save("tracking_overhead", figures(sections, options, duration_s))
    log(f"figures written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
