"""Run every benchmark, one after the other, and leave their figures in one results file.

``make bench`` runs ``python -m bench.all``: each benchmark of :data:`BENCHMARKS` (a package of
``bench/`` named for its question) runs in its own process (so one benchmark's servers, threads
and imports cannot skew the next), in quick mode unless ``--full`` (``BENCH_FULL=1`` in make)
asks for the large sizes, and adds its section to ``bench/results/latest.json`` (see
:mod:`bench.results`). A benchmark that fails does not stop
the others; the run exits 1 at the end if any failed, naming them. Each benchmark prints its own
table as it finishes; the run ends with how long each took and where the figures are. One-off
studies (``bench/studies/``) are not part of the run.

    python -m bench.all                   # quick mode, every benchmark
    python -m bench.all --full            # the issue's sizes (an hour or more)
    python -m bench.all --only verify_throughput,store_lookup
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Final

from bench.results import LATEST

#: Every benchmark by name, in the order ``make bench`` runs them (the cheap, in-process ones
#: first), with the module that runs it: ``python -m <module> [--quick | --full]``. The name is
#: what ``--only`` takes and the section of the results file.
BENCHMARKS: Final = {
    "store_scaling": "bench.stores.scaling",
    "store_lookup": "bench.stores.lookup",
    "dashboard_scale": "bench.stores.dashboard",
    "group_read": "bench.stores.groups",
    "postgres_writers": "bench.stores.writers",
    "verify_throughput": "bench.verify",
    "peer_celery_progress": "bench.peer",
    "push_vs_polling": "bench.push",
    "idle_processes": "bench.idle",
    "load": "bench.load",
    "tracking_overhead": "bench.overhead",
    "delayed_job_lookup": "bench.rails.delayed_job_lookup",
    "sidekiq_lookup": "bench.rails.sidekiq_lookup",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one benchmark's run ended."""

    name: str
    returncode: int
    seconds: float


def run(name: str, *, full: bool) -> Outcome:
    """Run benchmark ``name`` in a child process, its output going straight to ours."""
    module = BENCHMARKS[name]
    command = [sys.executable, "-m", module, "--full" if full else "--quick"]
    print(f"\n=== {name}: {module} ({'full' if full else 'quick'}) ===", flush=True)
    started = time.perf_counter()
    try:
        returncode = subprocess.run(command, check=False).returncode
    except KeyboardInterrupt:
        returncode = 130
    return Outcome(name, returncode, time.perf_counter() - started)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.all", description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="the large sizes (default: quick)")
    parser.add_argument(
        "--only",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        default=list(BENCHMARKS),
        help="comma-separated benchmarks to run (default: all): " + ", ".join(BENCHMARKS),
    )
    arguments = parser.parse_args(argv)
    unknown = sorted(set(arguments.only) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    return arguments


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; return 0 if all succeeded, 1 otherwise (130 if interrupted)."""
    arguments = parse_arguments(argv)
    outcomes: list[Outcome] = []
    for name in arguments.only:
        outcome = run(name, full=arguments.full)
        outcomes.append(outcome)
        if outcome.returncode == 130:
            break
    print("\n=== summary ===")
    for outcome in outcomes:
        verdict = "ok" if outcome.returncode == 0 else f"FAILED (exit {outcome.returncode})"
        print(f"{outcome.name:<22} {outcome.seconds:7.1f} s  {verdict}")
    print(f"figures: {LATEST}")
    if any(outcome.returncode == 130 for outcome in outcomes):
        return 130
    return 0 if all(outcome.returncode == 0 for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
