"""immortus's Django verify view against celery-progress's, on one site (``make bench``).

celery-progress is what Django+Celery users install today to show a task's progress. This
serves its ``get_progress`` view and immortus's verify view from one Django project
(``bench/peer/project.py``), one server, one Celery app with its broker and result backend on a
private redis-server, over the same seeded tasks, and loads each route in turn with ``wrk``:

- **the tasks** (``bench/peer/seed.py``): a real ``celery worker`` runs ``--jobs`` tasks
  (1 000), enqueued from this process with immortus's hooks installed, as a Django view would:
  half report progress and stay in progress, a quarter succeed with a result, a quarter fail
  with an error. Each reports progress with celery-progress's ``ProgressRecorder`` and with
  ``immortus.progress``. The result backend and immortus's store are checked before anything is
  timed, and so are both routes' answers.
- **the server** (``bench/peer/deployment.py``): gunicorn, 2 worker processes of the ``gthread``
  class with 4 threads each, serving both routes.
- **the load**: ``wrk`` (1 thread, 8 connections), each request for a random seeded task, the
  same random sequence on both routes. Three groups of tasks (:data:`GROUPS`): all of them,
  the ones in progress (what a polling page asks about), the ended ones. Each round loads every
  (group, route) once, the next round in the reverse order, so a noisy neighbour hurts both
  routes alike. Compared: the medians of requests per second, of p99 latency, and of requests
  per CPU second of the server's processes (steadier than the wall clock on a shared machine).
  Target: ours at least 1.5x theirs in requests per second, on tasks in progress.

What each side does per request (the table says it too):

- celery-progress: ``AsyncResult(task_id)``'s meta: one Redis ``GET`` of the result backend;
- immortus: checks the job's token (an HMAC the first time, then remembered), finds the
  strategy of the job class (``CeleryStrategy``, inferred for
  ``@immortus.track(queue="celery")``), reads immortus's
  SQLite store (one ``SELECT``) and, unless the store's record has ended, the result backend
  (one Redis ``GET``), and merges them: the set-up a Django+Celery user gets by default (no
  ``IMMORTUS`` setting).

Run ``python -m bench.peer [--quick | --full]`` from the repository root:
short rounds by default, longer ones with ``--full``. Nothing is asserted: the figures are
printed with the machine, and saved by :func:`bench.results.save` as ``peer_celery_progress``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.common import BenchError, add_modes
from bench.peer.deployment import Deployment, check_answers, site
from bench.peer.measure import (
    JOBS,
    Load,
    measure,
)
from bench.peer.report import render, save
from bench.peer.seed import KINDS, seed
from devservices import RedisServer


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_modes(parser, quick="5 rounds of 2 s a load", full="10 rounds of 5 s a load")
    parser.add_argument("--jobs", type=int, default=JOBS, help=f"tasks seeded ({JOBS})")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (8)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (4)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the report; return 0 (or 1 if it could not be measured)."""
    args = _parse(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 1
    if args.jobs < len(KINDS):
        print(f"bench: --jobs must be at least {len(KINDS)}", file=sys.stderr)
        return 1
    load = (
        Load(connections=args.connections, rounds=10, seconds=5)
        if args.full
        else Load(connections=args.connections)
    )
    deployment = Deployment(workers=args.workers, threads=args.threads)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="immortus-bench-peer-") as tmp,
            RedisServer() as redis_server,
        ):
            folder = Path(tmp)
            jobs, store_url = seed(redis_server.url, folder, args.jobs)
            with site(redis_server.url, store_url, folder, deployment) as server:
                bodies = check_answers(server.url, jobs)
                figures = measure(server, jobs, folder, load)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(render(figures, bodies, jobs=args.jobs, deployment=deployment, load=load))
    save(
        figures,
        bodies,
        jobs=args.jobs,
        server=deployment.describe(),
        connections=load.connections,
        rounds=load.rounds,
        seconds=load.seconds,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
