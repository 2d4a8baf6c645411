"""immortus's Django verify view against celery-progress's, on one site (``make bench``).

celery-progress is what Django+Celery users install today to show a task's progress. This
serves its ``get_progress`` view and immortus's verify view from one Django project
(``bench/peer_project.py``), one server, one Celery app with its broker and result backend on a
private redis-server, over the same seeded tasks, and loads each route in turn with ``wrk``:

- **the tasks** (``bench/peer_seed.py``): a real ``celery worker`` runs ``--jobs`` tasks
  (1 000), enqueued from this process with immortus's hooks installed, as a Django view would:
  half report progress and stay in progress, a quarter succeed with a result, a quarter fail
  with an error. Each reports progress with celery-progress's ``ProgressRecorder`` and with
  ``immortus.progress``. The result backend and immortus's store are checked before anything is
  timed, and so are both routes' answers.
- **the server** (``bench/peer_site.py``): gunicorn, 2 worker processes of the ``gthread``
  class with 4 threads each, serving both routes.
- **the load**: ``wrk`` (1 thread, 8 connections), each request for a random seeded task, the
  same random sequence on both routes. Three groups of tasks (:data:`GROUPS`): all of them,
  the ones in progress (what a polling page asks about), the ended ones. Each round loads every
  (group, route) once, the next round in the reverse order, so a noisy neighbour hurts both
  routes alike. Compared: the medians of requests per second, of p99 latency, and of requests
  per CPU second of the server's processes (steadier than the wall clock on a shared machine).
  Target: ours at least 1.0x theirs in requests per second, on all tasks.

What each side does per request (the table says it too):

- celery-progress: ``AsyncResult(task_id)``'s meta: one Redis ``GET`` of the result backend;
- immortus: checks the job's token (HMAC), finds the strategy of the job class
  (``CeleryStrategy``, inferred for ``@immortus.track(queue="celery")``), reads immortus's
  SQLite store (one ``SELECT``) and, unless the store's record has ended, the result backend
  (one Redis ``GET``), and merges them: the set-up a Django+Celery user gets by default (no
  ``IMMORTUS`` setting).

Run ``python -m bench.peer_celery_progress [--quick | --full]`` from the repository root:
short rounds by default, longer ones with ``--full``. Nothing is asserted: the figures are
printed with the machine, and saved by :func:`bench.results.save` as ``peer_celery_progress``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

from tests.services import RedisServer

from bench import results
from bench.common import BenchError, add_modes, log
from bench.peer_seed import EXPECTED, KINDS, SeededJob, seed
from bench.peer_site import SIDES, Deployment, Site, check_answers, path_of, site

#: How many tasks are seeded (and the load picks from).
JOBS: Final = 1000
#: Target of the issue: immortus's requests per second over celery-progress's, on every task.
TARGET: Final = 1.0
#: What each side does per request, for the table.
READS: Final = {
    "immortus": "token HMAC; store SELECT; result backend GET unless the record has ended",
    "celery-progress": "result backend GET",
}
#: The tasks each load asks about, by the name of the group: every task, then each part.
GROUPS: Final[Mapping[str, tuple[str, ...]]] = {
    "all": ("in_progress", "finishes", "fails"),
    "in progress": ("in_progress",),
    "ended": ("finishes", "fails"),
}


@dataclass(frozen=True, slots=True)
class Load:
    """How hard and how long wrk loads each route."""

    connections: int = 8
    rounds: int = 5
    #: Whole seconds (wrk takes no fraction).
    seconds: int = 2
    warm_up: int = 2


@dataclass(frozen=True, slots=True)
class Run:
    """What one wrk run measured."""

    requests: int
    #: Requests per second (wall clock).
    rate: float
    #: p99 latency, in milliseconds.
    p99_ms: float
    #: Requests per CPU second of the server's processes (0 if the server used none).
    cpu_rate: float = 0.0


#: The figures of a run, by the name the report and the results file give them.
FIGURES: Final = {
    "rate": "requests_per_second",
    "p99_ms": "p99_ms",
    "cpu_rate": "requests_per_cpu_s",
}


@dataclass(slots=True)
class Figures:
    """Every run, by group of tasks and side, in the order they ran."""

    runs: dict[tuple[str, str], list[Run]] = field(default_factory=dict)

    def add(self, group: str, side: str, run: Run) -> None:
        """Keep ``run``, of ``side`` on ``group``."""
        self.runs.setdefault((group, side), []).append(run)

    def values(self, group: str, side: str, figure: str) -> list[float]:
        """One figure (a key of :data:`FIGURES`) of every run of ``side`` on ``group``."""
        return [getattr(run, figure) for run in self.runs[group, side]]

    def median(self, group: str, side: str, figure: str) -> float:
        """The median of :meth:`values`."""
        return statistics.median(self.values(group, side, figure))

    def ratio(self, group: str, figure: str) -> float:
        """Ours over theirs, of the medians of ``figure`` on ``group``."""
        theirs = self.median(group, "celery-progress", figure)
        return self.median(group, "immortus", figure) / theirs if theirs else 0.0

    def spread(self, group: str, side: str) -> float:
        """(max - min) / median of the requests per second: how noisy the machine was."""
        rates = self.values(group, side, "rate")
        middle = statistics.median(rates)
        return (max(rates) - min(rates)) / middle if middle else 0.0

    def as_json(self) -> dict[str, Any]:
        """Every figure, its median and the ratios, by group and side, for the results file."""
        report: dict[str, Any] = {}
        for group in GROUPS:
            section: dict[str, Any] = {}
            for side in SIDES:
                section[side] = {
                    name: self.values(group, side, figure) for figure, name in FIGURES.items()
                }
                section[side]["medians"] = {
                    name: self.median(group, side, figure) for figure, name in FIGURES.items()
                }
            section["ours_over_theirs"] = {
                name: self.ratio(group, figure) for figure, name in FIGURES.items()
            }
            report[group] = section
        return report


# -- the load ----------------------------------------------------------------------------------


def random_requests(paths: Sequence[str]) -> str:
    """Return a wrk script GETting a random path of ``paths`` each request (a fixed sequence)."""
    listed = ",".join(json.dumps(path) for path in paths)
    return (
        f"local paths = {{{listed}}}\n"
        "math.randomseed(20260101)\n"
        "request = function()\n"
        "  return wrk.format('GET', paths[math.random(#paths)])\n"
        "end\n"
    )


_RATE = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.MULTILINE)
_REQUESTS = re.compile(r"^\s+(\d+) requests in ", re.MULTILINE)
_P99 = re.compile(r"^\s+99%\s+([0-9.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_ERRORS = re.compile(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)")
_UNIT_MS: Final = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def run_wrk(url: str, script: Path, *, seconds: int, connections: int) -> Run:
    """Run ``wrk`` once with ``script`` (its ``cpu_rate`` is left 0: wrk cannot see it).

    Raises:
        BenchError: wrk failed, or some answers were errors (the figures would be void).
    """
    command = [
        "wrk", "--threads", "1", "--connections", str(connections), "--latency",
        "--duration", f"{seconds}s", "--timeout", "10s", "--script", str(script), url,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise BenchError(f"wrk failed ({result.returncode}): {output}")
    errors = _ERRORS.search(result.stdout)
    if errors:
        raise BenchError(f"{script.stem}: wrk saw errors: {errors.group(0)}")
    rate, requests = _RATE.search(result.stdout), _REQUESTS.search(result.stdout)
    p99 = _P99.search(result.stdout)
    if rate is None or requests is None or p99 is None:
        raise BenchError(f"cannot read wrk's output:\n{result.stdout}")
    return Run(
        requests=int(requests.group(1)),
        rate=float(rate.group(1)),
        p99_ms=float(p99.group(1)) * _UNIT_MS[p99.group(2)],
    )


def measure(server: Site, jobs: Sequence[SeededJob], folder: Path, load: Load) -> Figures:
    """Load each route on each group of tasks ``load.rounds`` times, interleaved.

    Every round runs each (group, side) once; the next round runs them in the reverse order.

    Raises:
        BenchError: a wrk run failed or saw errors.
    """
    loads = [(group, side) for group in GROUPS for side in SIDES]
    scripts = {}
    for group, side in loads:
        paths = [path_of(job, side) for job in jobs if job.kind in GROUPS[group]]
        scripts[group, side] = folder / f"{side}-{group.replace(' ', '-')}.lua"
        scripts[group, side].write_text(random_requests(paths))
    for side in SIDES:  # warm-up: imports, connections, caches
        run_wrk(
            server.url, scripts["all", side], seconds=load.warm_up, connections=load.connections
        )
    figures = Figures()
    for number in range(1, load.rounds + 1):
        for group, side in loads if number % 2 else loads[::-1]:
            cpu = server.cpu_seconds()
            run = run_wrk(
                server.url, scripts[group, side], seconds=load.seconds, connections=load.connections
            )
            cpu = server.cpu_seconds() - cpu
            run = dataclasses.replace(run, cpu_rate=run.requests / cpu if cpu > 0 else 0.0)
            figures.add(group, side, run)
            log(
                f"round {number}/{load.rounds}: {group}, {side}: {run.rate:,.0f} requests/s, "
                f"p99 {run.p99_ms:.1f} ms, {run.cpu_rate:,.0f} requests/CPU s"
            )
    return figures


# -- the report --------------------------------------------------------------------------------


def render(
    figures: Figures, bodies: Mapping[str, Any], *, jobs: int, deployment: Deployment, load: Load
) -> str:
    """Return the report: each side's medians on each group, the ratios, and two bodies."""
    kinds = {
        kind: sum(1 for n in range(jobs) if KINDS[n % len(KINDS)] == kind) for kind in EXPECTED
    }
    lines = [
        f"against the peer: immortus {version('immortus')} vs celery-progress "
        f"{version('celery-progress')}; Django {version('django')}, Celery {version('celery')}",
        f"server: {deployment.describe()}; one redis-server: broker and result backend",
        f"load: wrk 1 thread x {load.connections} connections, {load.rounds} rounds of "
        f"{load.seconds} s a load, interleaved; a random task a request, one sequence for both",
        f"tasks: {jobs} ({kinds['in_progress']} in progress, {kinds['finishes']} finished, "
        f"{kinds['fails']} failed), run by a real Celery worker",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; server, redis-server and wrk share it",
        "",
        f"{'tasks asked':<13}{'route':<17}{'req/s':>8}{'spread':>8}{'p99 ms':>8}{'req/CPU s':>11}",
    ]
    for group in GROUPS:
        lines.extend(_row(figures, group, side) for side in SIDES)
        lines.append(
            f"{'':<13}{'ours / theirs':<17}{figures.ratio(group, 'rate'):>7.2f}x{'':>8}"
            f"{figures.ratio(group, 'p99_ms'):>7.2f}x{figures.ratio(group, 'cpu_rate'):>10.2f}x"
        )
    verdict = "PASS" if figures.ratio("all", "rate") >= TARGET else "MISS"
    lines += [
        "",
        f"ours / theirs on all tasks, req/s: {figures.ratio('all', 'rate'):.2f}x "
        f"(target >= {TARGET}: {verdict})",
        *(f"per request, {side}: {READS[side]}" for side in SIDES),
        "",
        "the body of one in-progress task:",
    ]
    for side in SIDES:
        encoded = json.dumps(bodies[side], separators=(",", ":"))
        lines.append(f"  {side} ({len(encoded)} bytes): {encoded}")
    return "\n".join(lines)


def _row(figures: Figures, group: str, side: str) -> str:
    return (
        f"{group if side == SIDES[0] else '':<13}{side:<17}"
        f"{figures.median(group, side, 'rate'):>8,.0f}{figures.spread(group, side):>8.0%}"
        f"{figures.median(group, side, 'p99_ms'):>8.1f}"
        f"{figures.median(group, side, 'cpu_rate'):>11,.0f}"
    )


def save(figures: Figures, bodies: Mapping[str, Any], **conditions: Any) -> Path:
    """Save every figure, the medians and the ratios in the results file."""
    return results.save(
        "peer_celery_progress",
        {
            **conditions,
            "target": TARGET,
            "per_request": READS,
            "groups": figures.as_json(),
            "bodies": bodies,
        },
    )


# -- the command -------------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peer_celery_progress",
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
