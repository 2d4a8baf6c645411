"""How fast is immortus's verify route next to a bare route of the same framework? (``make bench``)

Three apps, one per framework (``bench/verify/starlette_app.py`` for Starlette under uvicorn,
``bench/verify/flask_app.py`` and ``bench/verify/django_app.py`` under gunicorn; see
``bench/verify/servers.py``), each serve immortus's routes over one SQLite store seeded with
jobs, beside a bare route of the same framework answering a fixed JSON body of the same size
with the same headers. ``wrk`` (Debian's package) loads each route in turn, rotating over the
seeded job ids; rounds are interleaved (every load of every framework, then again, the order
reversed every other round), so a noisy neighbour hurts all alike; the median rate of each is
compared. The routes are secured with a secret key, as deployed: every verify request carries
its job's token, and the bare route is asked with the same query string.

- ``verify / bare``, per framework: requests per second of ``GET /immortus/verify/{id}/{class}``
  over those of the bare route (target: at least 0.85), for jobs whose answer immortus keeps
  (``verify``: polled while unchanged) and for jobs it must decode and encode at each request
  (``cold``: more jobs than it keeps, as after every change); each also as the median of the
  ratios of bare and verify runs measured side by side, and as the ratio of the server's CPU
  time per request (read from ``/proc``: the steadier figure when other work shares the
  machine);
- batch verify of 1, 10 and 100 jobs a request (``POST /immortus/verify``): jobs answered per
  second, and the line through them: the fixed cost of a request and the cost of each job.

Run ``python -m bench.verify [--quick | --full]`` (``--quick``, the default: 3 rounds
of 2 s; ``--full``: 5 rounds of 5 s). Nothing is asserted: the figures are printed, with the
machine, saved in ``bench/results/latest.json`` (section ``verify_vs_bare``), and the ratios are
what to compare between runs.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import immortus
from bench.common import BenchError, add_modes, log
from bench.results import save
from bench.verify.common import ANSWER_STALENESS, JOB_CLASS, KEPT_PREFIX, SECRET_KEY
from bench.verify.load import (
    BATCH_SIZES,
    Load,
    Measured,
    batch_body,
    job_path,
    loads,
    run_wrk,
)
from bench.verify.servers import FRAMEWORKS, Framework, Server, http_get, http_post, serve
from immortus import Progress, lifecycle
from immortus.stores import records
from immortus.web import get_verifier
from immortus.web.responses import MAX_KEPT_ANSWERS

#: How many jobs the bare, verify and batch loads rotate over.
JOBS: Final = 1000
#: How many other jobs ``verify_cold`` rotates over: more than immortus keeps decoded statuses
#: and encoded answers of, so that each of its requests decodes and encodes anew.
COLD_JOBS: Final = 3 * max(records.DECODED_KEPT, MAX_KEPT_ANSWERS)
#: The apps that also mount the routes answered from the statuses read lately.
KEPT_FRAMEWORKS: Final = frozenset({"starlette", "flask"})
#: Target of the issue: verify at least this fraction of the bare route's rate.
TARGET: Final = 0.85

#: What was measured: framework name -> load name -> one wrk run per round.
Runs = dict[str, dict[str, list[Measured]]]


def seed(store_url: str, count: int) -> tuple[list[str], dict[str, str], int]:
    """Fill the store with ``count`` started jobs with progress.

    Returns their ids, each one's token (as ``render_job`` hands it to the page) and the size
    of the first one's verify body.
    """
    immortus.configure(store=store_url, progress_interval=0, secret_key=SECRET_KEY)
    immortus.track(name=JOB_CLASS)(lambda: None)
    job_ids = [f"job-{number:05d}-{os.urandom(4).hex()}" for number in range(count)]
    for number, job_id in enumerate(job_ids):
        lifecycle.job_enqueued(job_id, JOB_CLASS)
        lifecycle.job_started(job_id, JOB_CLASS)
        progress = Progress(current=number % 100, total=100, message=f"row {number % 100}")
        lifecycle.job_progress(job_id, progress, JOB_CLASS)
    verifier = get_verifier()
    tokens = {job_id: verifier.token_for(job_id, JOB_CLASS) or "" for job_id in job_ids}
    first = verifier.verify(job_ids[0], JOB_CLASS, tokens[job_ids[0]])
    if first.status != 200:
        raise BenchError(f"the seeded job {job_ids[0]} answered {first.status}")
    size = len(first.content())
    store = immortus.get_store()
    assert store is not None
    store.close()
    immortus.config.reset()
    return job_ids, tokens, size


def check_answers(
    framework: Framework, url: str, job_ids: Sequence[str], tokens: Mapping[str, str], size: int
) -> None:
    """Check every route answers what it should before timing it (else the figures are void).

    Raises:
        BenchError: a verify answer is not the seeded job, a batch answers other jobs, or the
            bare body differs in size.
    """
    where = f"{framework.label} at {url}"
    prefixes = ["/immortus"] + ([KEPT_PREFIX] if framework.name in KEPT_FRAMEWORKS else [])
    for job_id, prefix in itertools.product(job_ids[:3], prefixes):
        status, body = http_get(url + job_path(f"{prefix}/verify/", job_id, tokens))
        answer = json.loads(body)
        if status != 200 or answer["job_id"] != job_id or answer["status"] != "started":
            raise BenchError(f"{where}: verify answered {status} {body[:200]!r}")
    for batch in BATCH_SIZES:
        asked = list(job_ids[:batch])
        status, body = http_post(f"{url}/immortus/verify", batch_body(asked, tokens))
        answered = [job["job_id"] for job in json.loads(body)["jobs"]] if status == 200 else []
        if answered != asked:
            raise BenchError(f"{where}: a batch of {batch} answered {status} {body[:200]!r}")
    status, bare = http_get(url + job_path("/bare/", job_ids[0], tokens))
    if status != 200 or abs(len(bare) - size) > 1:
        raise BenchError(
            f"{where}: the bare route answered {status}, {len(bare)} bytes, not {size}"
        )


def measure(
    servers: dict[str, Server],
    loads: Mapping[str, Sequence[Load]],
    folder: Path,
    *,
    rounds: int,
    seconds: float,
    connections: int,
) -> Runs:
    """Run every load on every server ``rounds`` times, interleaved; return each run.

    In each round every server runs every load, bare and verify side by side; every other
    round runs the loads in reverse order.
    """
    runs: Runs = {name: {load.name: [] for load in loads[name]} for name in servers}
    for name, server in servers.items():  # warm-up: caches, thread pools, SQLite's page cache
        for load in loads[name]:
            run_wrk(server, load, folder, seconds=1, connections=connections)
    for number in range(1, rounds + 1):
        for name, server in servers.items():
            order = list(loads[name]) if number % 2 else list(reversed(loads[name]))
            for load in order:
                run = run_wrk(server, load, folder, seconds=seconds, connections=connections)
                runs[name][load.name].append(run)
                log(
                    f"round {number}/{rounds}: {name} {load.name} {run.jobs_per_s:,.0f} jobs/s, "
                    f"{run.cpu_us_per_job:.0f} µs CPU a job"
                )
    return runs


def batch_line(time_per_job: dict[int, float]) -> tuple[float, float]:
    """Fit time per request = fixed + per_job x jobs over the batch sizes; return both."""
    sizes = sorted(time_per_job)
    per_request = [size * time_per_job[size] for size in sizes]
    slope, intercept = statistics.linear_regression(sizes, per_request)
    return intercept, slope


def _spread(values: Sequence[float]) -> float:
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle else 0.0


def _kept_ratios(
    by_load: dict[str, list[Measured]], rate: dict[str, float], cpu: dict[str, float]
) -> dict[str, float]:
    """``verify_kept``'s ratios to the bare route (none when the app has no such routes)."""
    if "verify_kept" not in by_load:
        return {}
    pairs = zip(by_load["bare"], by_load["verify_kept"], strict=True)
    return {
        "kept_over_bare": rate["verify_kept"] / rate["bare"],
        "kept_paired_ratio": statistics.median(v.jobs_per_s / b.jobs_per_s for b, v in pairs),
        "kept_cpu_ratio": cpu["bare"] / cpu["verify_kept"],
    }


def summarise(runs: Runs) -> dict[str, dict[str, Any]]:
    """Each framework's medians, spreads, verify/bare ratios and batch lines.

    ``verify_over_bare`` is the ratio of the median rates; ``paired_ratio`` the median of each
    round's verify rate over the bare rate measured just before or after it;
    ``cpu_ratio`` the bare route's median CPU per request over verify's.
    """
    summary: dict[str, dict[str, Any]] = {}
    for name, by_load in runs.items():
        rate = {
            load: statistics.median(r.jobs_per_s for r in found) for load, found in by_load.items()
        }
        cpu = {
            load: statistics.median(r.cpu_us_per_job for r in found)
            for load, found in by_load.items()
        }
        pairs = zip(by_load["bare"], by_load["verify"], strict=True)
        batch_us = {size: 1e6 / rate[f"batch{size}"] for size in BATCH_SIZES}
        fixed, per_job = batch_line(batch_us)
        cpu_fixed, cpu_per_job = batch_line({size: cpu[f"batch{size}"] for size in BATCH_SIZES})
        summary[name] = {
            "median_jobs_per_s": rate,
            "median_cpu_us_per_job": cpu,
            "spread": {
                load: _spread([r.jobs_per_s for r in found]) for load, found in by_load.items()
            },
            "runs": {
                load: [[r.jobs_per_s, r.cpu_us_per_job] for r in found]
                for load, found in by_load.items()
            },
            "verify_over_bare": rate["verify"] / rate["bare"],
            "cold_over_bare": rate["verify_cold"] / rate["bare"],
            "cold_paired_ratio": statistics.median(
                v.jobs_per_s / b.jobs_per_s
                for b, v in zip(by_load["bare"], by_load["verify_cold"], strict=True)
            ),
            "cold_cpu_ratio": cpu["bare"] / cpu["verify_cold"],
            "paired_ratio": statistics.median(v.jobs_per_s / b.jobs_per_s for b, v in pairs),
            **_kept_ratios(by_load, rate, cpu),
            "cpu_ratio": cpu["bare"] / cpu["verify"],
            "batch_fixed_us": fixed,
            "batch_per_job_us": per_job,
            "batch_cpu_fixed_us": cpu_fixed,
            "batch_cpu_per_job_us": cpu_per_job,
            "batch100_over_single": rate[f"batch{BATCH_SIZES[-1]}"] / rate["verify"],
        }
    return summary


def render(summary: dict[str, dict[str, Any]], body_size: int, connections: int) -> str:
    """Return the report: per framework, each load's median rate, the ratios, the batch line."""
    by_name = {framework.name: framework for framework in FRAMEWORKS}
    lines = [
        f"verify throughput: wrk 1 thread x {connections} connections, SQLite store; verify and"
        f" batches rotate over {JOBS} jobs, cold verify over {COLD_JOBS} others; verify body"
        f" {body_size} bytes",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "",
        f"{'':<10}|{'jobs/s (median)':^27}|{'verify / bare':^26}|{'cold / bare':^20}|"
        f"{'CPU µs / request':^24}",
        f"{'framework':<10}|{'bare':>9}{'verify':>9}{'cold':>9}|{'rates':>7}{'paired':>7}"
        f"{'CPU':>6}{'':>6}|{'rates':>7}{'paired':>7}{'CPU':>6}|{'bare':>8}{'verify':>8}"
        f"{'cold':>8}",
        "-" * 111,
    ]
    for name, figures in summary.items():
        rate, cpu = figures["median_jobs_per_s"], figures["median_cpu_us_per_job"]
        verdict = "PASS" if figures["verify_over_bare"] >= TARGET else "MISS"
        lines.append(
            f"{by_name[name].label:<10}|{rate['bare']:>9,.0f}{rate['verify']:>9,.0f}"
            f"{rate['verify_cold']:>9,.0f}|{figures['verify_over_bare']:>7.2f}"
            f"{figures['paired_ratio']:>7.2f}{figures['cpu_ratio']:>6.2f}{verdict:>6}|"
            f"{figures['cold_over_bare']:>7.2f}{figures['cold_paired_ratio']:>7.2f}"
            f"{figures['cold_cpu_ratio']:>6.2f}|{cpu['bare']:>8.0f}{cpu['verify']:>8.0f}"
            f"{cpu['verify_cold']:>8.0f}"
        )
    kept = {name: figures for name, figures in summary.items() if "kept_over_bare" in figures}
    if kept:
        lines += [
            "",
            f"verify answered from the statuses read lately (staleness <= {ANSWER_STALENESS:g} s)",
            f"{'framework':<10}|{'jobs/s':>9}|{'rates':>7}{'paired':>7}{'CPU':>6}{'':>6}|"
            f"{'CPU µs':>8}",
            "-" * 55,
        ]
        for name, figures in kept.items():
            verdict = "PASS" if figures["kept_over_bare"] >= TARGET else "MISS"
            lines.append(
                f"{by_name[name].label:<10}|{figures['median_jobs_per_s']['verify_kept']:>9,.0f}|"
                f"{figures['kept_over_bare']:>7.2f}{figures['kept_paired_ratio']:>7.2f}"
                f"{figures['kept_cpu_ratio']:>6.2f}{verdict:>6}|"
                f"{figures['median_cpu_us_per_job']['verify_kept']:>8.0f}"
            )
    heads = "".join(f"{f'batch({size})':>11}" for size in BATCH_SIZES)
    lines += [
        "",
        f"{'jobs/s':<10}|{heads} |{'fixed µs':>9}{'µs/job':>8} |{'CPU fixed':>10}{'µs/job':>8}"
        f" |{'b100 / 1':>9}",
        "-" * 92,
    ]
    for name, figures in summary.items():
        rate = figures["median_jobs_per_s"]
        batches = "".join(f"{rate[f'batch{size}']:>11,.0f}" for size in BATCH_SIZES)
        lines.append(
            f"{by_name[name].label:<10}|{batches} |{figures['batch_fixed_us']:>9.0f}"
            f"{figures['batch_per_job_us']:>8.1f} |{figures['batch_cpu_fixed_us']:>10.0f}"
            f"{figures['batch_cpu_per_job_us']:>8.1f} |{figures['batch100_over_single']:>8.1f}x"
        )
    lines += [
        "",
        f"target: verify / bare >= {TARGET} (PASS/MISS on the ratio of median rates); "
        "spreads (max - min) / median of the rates:",
    ]
    for name, figures in summary.items():
        spreads = ", ".join(f"{load} {value:.0%}" for load, value in figures["spread"].items())
        lines.append(f"  {by_name[name].label}: {spreads}")
    lines += [f"{by_name[name].label}: {by_name[name].describe()}" for name in summary]
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for package in ("uvicorn", "gunicorn", "starlette", "flask", "django", "h11"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    result = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    found["wrk"] = (result.stdout or result.stderr).split("\n", 1)[0].strip()
    return found


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.verify", description=__doc__)
    add_modes(parser, quick="3 rounds of 2 s", full="5 rounds of 5 s")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument(
        "--frameworks",
        default=",".join(framework.name for framework in FRAMEWORKS),
        help="comma-separated, among starlette, flask, django (all)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the report; return 0 (or 1 if it could not be measured)."""
    args = _parse(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 1
    wanted = args.frameworks.split(",")
    frameworks = [framework for framework in FRAMEWORKS if framework.name in wanted]
    if len(frameworks) != len(set(wanted)):
        print(f"bench: unknown framework in {args.frameworks!r}", file=sys.stderr)
        return 1
    rounds, seconds = (5, 5.0) if args.full else (3, 2.0)
    with tempfile.TemporaryDirectory(prefix="immortus-bench-") as tmp:
        folder = Path(tmp)
        store_url = f"sqlite:///{folder / 'jobs.sqlite3'}"
        log(f"seeding {JOBS + COLD_JOBS} jobs into {store_url}")
        job_ids, tokens, size = seed(store_url, JOBS + COLD_JOBS)
        job_ids, cold_ids = job_ids[:JOBS], job_ids[JOBS:]
        try:
            with contextlib.ExitStack() as stack:
                servers: dict[str, Server] = {}
                for framework in frameworks:
                    log(f"starting {framework.label} ({framework.describe()})")
                    server = stack.enter_context(serve(framework, store_url, size, folder))
                    check_answers(framework, server.url, job_ids, tokens, size)
                    servers[framework.name] = server
                by_server = {
                    name: loads(job_ids, cold_ids, tokens, kept=name in KEPT_FRAMEWORKS)
                    for name in servers
                }
                runs = measure(
                    servers,
                    by_server,
                    folder,
                    rounds=rounds,
                    seconds=seconds,
                    connections=args.connections,
                )
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
    summary = summarise(runs)
    print(render(summary, size, args.connections))
    save(
        "verify_vs_bare",
        {
            "target": TARGET,
            "jobs": JOBS,
            "cold_jobs": COLD_JOBS,
            "body_bytes": size,
            "rounds": rounds,
            "seconds_per_round": seconds,
            "wrk": {"threads": 1, "connections": args.connections},
            "servers": {framework.name: framework.describe() for framework in frameworks},
            "versions": _versions(),
            "frameworks": summary,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
