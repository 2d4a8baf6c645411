"""What the peer benchmark measures: wrk's load on both status routes, round after round."""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.common import BenchError, log
from bench.peer.deployment import SIDES, Site, path_of
from bench.peer.seed import SeededJob

#: How many tasks are seeded (and the load picks from).
JOBS: Final = 1000
#: Target: immortus's requests per second over celery-progress's, on tasks in progress (what a
#: polling page asks about).
TARGET: Final = 1.5
#: The group of tasks the target is set for.
TARGET_GROUP: Final = "in progress"
#: What each side does per request, for the table.
READS: Final = {
    "immortus": "token (HMAC once, then remembered); store SELECT; result backend GET unless"
    " the record has ended or its worker's heartbeat lease is live",
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
