"""How fast is immortus's verify route next to a bare Starlette route? (``make bench``)

One uvicorn server (one process, one event loop) serves ``bench/verify_app.py``: immortus's
routes over an SQLite store seeded with jobs, and a bare route answering a fixed JSON body of
the same size. ``wrk`` (Debian's package) loads each in turn, rotating over the seeded job ids,
several rounds interleaved so that a noisy neighbour hurts both alike; the median rate of each
is compared:

- ``verify / bare``: requests per second of ``GET /immortus/verify/{id}/{class}`` over those
  of the bare route (target: at least 0.85);
- ``batch(100) / 100 singles``: jobs answered per second by ``POST /immortus/verify`` with 100
  jobs a request, over jobs per second by single verify requests.

Run ``python -m bench.verify_throughput [--quick]``. Nothing is asserted: the figures are
printed, with the machine, and the ratios are what to compare between runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import immortus
from bench.common import BenchError, log
from immortus import Progress, lifecycle
from immortus.web import get_verifier

ROOT = Path(__file__).resolve().parents[1]
#: How many jobs the store holds and the load rotates over.
JOBS = 1000
#: Target of the issue: verify at least this fraction of the bare route's rate.
TARGET = 0.85
BATCH = 100
#: The tracked job class every seeded job belongs to.
JOB_CLASS = "bench.report"


@dataclass(frozen=True, slots=True)
class Load:
    """One wrk load: its name, its Lua script, and how many jobs one request answers."""

    name: str
    script: str
    jobs_per_request: int = 1


def bare_body(size: int) -> bytes:
    """Return a JSON object of exactly ``size`` bytes (at least 26)."""
    head = b'{"job_id":"bare","pad":"'
    tail = b'"}'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


def _lua_list(values: Sequence[str]) -> str:
    return "{" + ",".join(json.dumps(value) for value in values) + "}"


def rotating_get(prefix: str, job_ids: Sequence[str], suffix: str) -> str:
    """Return a wrk script sending ``GET {prefix}{id}{suffix}`` over ``job_ids`` in turn."""
    return (
        f"local ids = {_lua_list(job_ids)}\nlocal i = 0\n"
        "request = function()\n  i = i % #ids + 1\n"
        f"  return wrk.format('GET', {json.dumps(prefix)} .. ids[i] .. {json.dumps(suffix)})\n"
        "end\n"
    )


def batches(job_ids: Sequence[str]) -> str:
    """Return a wrk script POSTing batches of ``BATCH`` jobs, rotating over ``job_ids``."""
    bodies = [
        json.dumps({"jobs": [{"job_id": j, "job_class": JOB_CLASS} for j in job_ids[i:][:BATCH]]})
        for i in range(0, len(job_ids) - BATCH + 1, BATCH)
    ]
    return (
        f"local bodies = {_lua_list(bodies)}\nlocal i = 0\n"
        "local headers = {['Content-Type'] = 'application/json'}\n"
        "request = function()\n  i = i % #bodies + 1\n"
        "  return wrk.format('POST', '/immortus/verify', headers, bodies[i])\n"
        "end\n"
    )


def seed(store_url: str, count: int) -> tuple[list[str], int]:
    """Fill the store with ``count`` started jobs with progress.

    Returns their ids and the size of the first one's verify body.
    """
    immortus.configure(store=store_url, progress_interval=0)
    immortus.track(name=JOB_CLASS)(lambda: None)
    job_ids = [f"job-{number:05d}-{os.urandom(4).hex()}" for number in range(count)]
    for number, job_id in enumerate(job_ids):
        lifecycle.job_enqueued(job_id, JOB_CLASS)
        lifecycle.job_started(job_id, JOB_CLASS)
        progress = Progress(current=number % 100, total=100, message=f"row {number % 100}")
        lifecycle.job_progress(job_id, progress, JOB_CLASS)
    size = len(get_verifier().verify(job_ids[0], JOB_CLASS).content())
    store = immortus.get_store()
    assert store is not None
    store.close()
    immortus.config.reset()
    return job_ids, size


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - our own server
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def server(store_url: str, body_size: int) -> Iterator[str]:
    """Run uvicorn with ``bench.verify_app:app`` on a free port; yield its base URL."""
    port = _free_port()
    env = {
        **os.environ,
        "IMMORTUS_BENCH_STORE": store_url,
        "IMMORTUS_BENCH_BODY_SIZE": str(body_size),
        "PYTHONPATH": str(ROOT),
    }
    command = [
        sys.executable, "-m", "uvicorn", "bench.verify_app:app",
        "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--no-access-log", "--workers", "1",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise BenchError(f"uvicorn exited with {process.returncode}: {process.stderr}")
            with contextlib.suppress(OSError):
                _get(f"{url}/bare/x/y")
                break
            if time.monotonic() > deadline:
                raise BenchError("uvicorn did not start within 30 s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_RATE = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.MULTILINE)
_ERRORS = re.compile(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)")


def run_wrk(url: str, load: Load, folder: Path, *, seconds: float, connections: int) -> float:
    """Run ``wrk`` once; return jobs answered per second.

    Raises:
        BenchError: wrk failed, or some answers were errors (the figure would be void).
    """
    script = folder / f"{load.name}.lua"
    script.write_text(load.script)
    command = [
        "wrk", "--threads", "1", "--connections", str(connections),
        "--duration", f"{seconds:g}s", "--script", str(script), url,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BenchError(f"wrk failed ({result.returncode}): {result.stderr.strip()}")
    errors = _ERRORS.search(result.stdout)
    if errors:
        raise BenchError(f"{load.name}: wrk saw errors: {errors.group(0)}")
    rate = _RATE.search(result.stdout)
    if rate is None:
        raise BenchError(f"cannot read wrk's output:\n{result.stdout}")
    return float(rate.group(1)) * load.jobs_per_request


def check_answers(url: str, job_ids: Sequence[str], size: int) -> None:
    """Check the routes answer what they should before timing them (else the figures are void).

    Raises:
        BenchError: a verify answer is not the seeded job, or the bare body differs in size.
    """
    for job_id in job_ids[:3]:
        status, body = _get(f"{url}/immortus/verify/{job_id}/{JOB_CLASS}")
        answer = json.loads(body)
        if status != 200 or answer["job_id"] != job_id or answer["status"] != "started":
            raise BenchError(f"verify answered {status} {body[:200]!r}")
    status, bare = _get(f"{url}/bare/{job_ids[0]}/{JOB_CLASS}")
    if status != 200 or abs(len(bare) - size) > 1:
        raise BenchError(f"the bare route answered {status} with {len(bare)} bytes, not {size}")


def measure(
    url: str, loads: Sequence[Load], folder: Path, *, rounds: int, seconds: float, connections: int
) -> dict[str, list[float]]:
    """Run every load ``rounds`` times, interleaved; return each load's rates."""
    rates: dict[str, list[float]] = {load.name: [] for load in loads}
    for load in loads:  # warm-up: caches, the thread pool, the SQLite page cache
        run_wrk(url, load, folder, seconds=1, connections=connections)
    for number in range(1, rounds + 1):
        for load in loads:
            rate = run_wrk(url, load, folder, seconds=seconds, connections=connections)
            rates[load.name].append(rate)
            log(f"round {number}/{rounds}: {load.name} {rate:,.0f} jobs/s")
    return rates


def render(rates: dict[str, list[float]], body_size: int, connections: int) -> str:
    """Return the report: each load's median rate and the two ratios."""
    median = {name: statistics.median(values) for name, values in rates.items()}
    spread = {
        name: (max(values) - min(values)) / median[name] if median[name] else 0.0
        for name, values in rates.items()
    }
    verify_ratio = median["verify"] / median["bare"]
    batch_ratio = median["batch"] / median["verify"]
    lines = [
        f"verify throughput: uvicorn (1 process), wrk 1 thread x {connections} connections, "
        f"SQLite store with {JOBS} jobs, verify body {body_size} bytes",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "",
        f"{'load':<28}{'median jobs/s':>15}{'spread':>9}",
    ]
    names = {
        "bare": "bare Starlette route",
        "verify": "GET verify/{id}/{class}",
        "batch": f"POST verify ({BATCH} jobs)",
    }
    for name, label in names.items():
        lines.append(f"{label:<28}{median[name]:>15,.0f}{spread[name]:>8.0%}")
    verdict = "PASS" if verify_ratio >= TARGET else "MISS"
    lines += [
        "",
        f"verify / bare route:          {verify_ratio:.2f}  (target >= {TARGET}: {verdict})",
        f"batch({BATCH}) / {BATCH} singles:     {batch_ratio:.1f}x jobs per second",
    ]
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.verify_throughput", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 2 s instead of 5 of 5 s")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the report; return 0 (or 1 if it could not be measured)."""
    args = _parse(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 1
    rounds, seconds = (3, 2.0) if args.quick else (5, 5.0)
    with tempfile.TemporaryDirectory(prefix="immortus-bench-") as tmp:
        folder = Path(tmp)
        store_url = f"sqlite:///{folder / 'jobs.sqlite3'}"
        log(f"seeding {JOBS} jobs into {store_url}")
        job_ids, size = seed(store_url, JOBS)
        loads = [
            Load("bare", rotating_get("/bare/", job_ids, f"/{JOB_CLASS}")),
            Load("verify", rotating_get("/immortus/verify/", job_ids, f"/{JOB_CLASS}")),
            Load("batch", batches(job_ids), jobs_per_request=BATCH),
        ]
        try:
            with server(store_url, body_size=size) as url:
                check_answers(url, job_ids, size)
                rates = measure(
                    url,
                    loads,
                    folder,
                    rounds=rounds,
                    seconds=seconds,
                    connections=args.connections,
                )
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
    print(render(rates, size, args.connections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
