"""Push against polling: what do N browser-like watchers cost the server, and how late are they?

N jobs each report ``steps`` progress values over ``seconds`` (a writer process, through the
store as a worker writes); N real HTTP clients (a watcher process, one TCP connection each)
follow one job each, with its token (the routes are secured with a secret key, as deployed):
over the one-job Server-Sent Events route (``sse``), over the multi-job stream the JavaScript
client opens for a page (``multi``, ``POST /immortus/stream``), or by polling the verify route
every 500 ms, as the JavaScript client does without streams. The server is one uvicorn
process (one event loop) serving ``immortus_routes()`` over the store
(``bench/verify/starlette_app.py``). Per run it measures:

- the server's CPU seconds (``utime + stime`` of its process in ``/proc``, all its threads),
  from the moment every watcher has its first answer to the moment the last job is seen done;
- requests the watchers made, and bytes they received (what the server sent) and sent;
- latency: for every progress write, from the moment the store had it (stamped by the writer)
  to the moment the job's watcher first saw that value or a later one (p50, p95, max).

The modes' runs alternate (SSE, multi, polling, then the reverse, ... over ``--rounds``) on the
same server, each run with fresh jobs, so machine noise hits all alike; the table shows the
median of each mode's runs and the ratios CPU(SSE) / CPU(polling) for both streams. Targets:
each stream at most 0.25x the CPU of polling, and a p95 latency under 100 ms.

    python -m bench.push            # quick: 100 watchers, 10 steps over 5 s
    python -m bench.push --full     # the issue's: 200 watchers, 20 steps over 10 s
    python -m bench.push --stores sqlite,redis

Nothing is asserted; the figures are printed and saved with ``bench.results.save``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import immortus
from bench import results
from bench.common import BenchError, add_modes, log
from bench.verify.common import (
    BODY_SIZE_VARIABLE,
    JOB_CLASS,
    SECRET_KEY,
    STORE_VARIABLE,
    track_job_class,
)
from bench.verify.servers import FRAMEWORKS, http_get
from devservices import RedisServer, end_process, free_port
from devservices.processes import ROOT, cpu_seconds, python_path
from immortus import Progress, lifecycle
from immortus.web import get_verifier

#: Targets of the issue.
CPU_TARGET: Final = 0.25
P95_TARGET_MS: Final = 100.0
POLL_INTERVAL: Final = 0.5
MODES: Final = ("sse", "multi", "polling")
#: How each mode is named in the report.
LABELS: Final = {"sse": "SSE", "multi": "multi", "polling": "polling"}


@dataclass(frozen=True, slots=True)
class Plan:
    """The size of one run: watchers (= jobs), progress steps per job, seconds they span."""

    watchers: int
    steps: int
    seconds: float


QUICK: Final = Plan(watchers=100, steps=10, seconds=5.0)
FULL: Final = Plan(watchers=200, steps=20, seconds=10.0)


class ThreadClock:
    """Samples the CPU time of each thread of a process, to split it between its threads.

    The change feed's thread ends with the last stream, and a thread that has ended leaves
    ``/proc``: its CPU time is read every ``every`` seconds while it runs, so the split may miss
    its last fraction of a second. The process's own total (:func:`cpu_seconds`) is exact.
    """

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.pid, self.every = pid, every
        self.start = self._read()
        self.last = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _read(self) -> dict[int, float]:
        times = {}
        for entry in os.scandir(f"/proc/{self.pid}/task"):
            with contextlib.suppress(OSError, ValueError):
                times[int(entry.name)] = cpu_seconds(self.pid, int(entry.name))
        return times

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.last.update(self._read())

    def stop(self) -> dict[str, float]:
        """Stop sampling; return the main thread's CPU seconds and the other threads'."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            with contextlib.suppress(OSError):
                self.last.update(self._read())
        used = {tid: spent - self.start.get(tid, 0.0) for tid, spent in self.last.items()}
        main = used.pop(self.pid, 0.0)
        return {
            "main_thread_cpu_s": round(main, 2),
            "other_threads_cpu_s": round(sum(used.values()), 2),
        }


def seed(store_url: str, job_ids: Sequence[str], steps: int) -> dict[str, str]:
    """Record each job as enqueued, started, at progress 0 of ``steps``; return their tokens.

    Each token is the one ``render_job`` would hand the page under the server's secret key.
    """
    immortus.configure(store=store_url, progress_interval=0, secret_key=SECRET_KEY)
    track_job_class()
    try:
        tokens = {}
        for job_id in job_ids:
            lifecycle.job_enqueued(job_id, JOB_CLASS)
            lifecycle.job_started(job_id, JOB_CLASS)
            lifecycle.job_progress(job_id, Progress(current=0, total=steps), JOB_CLASS)
            tokens[job_id] = get_verifier().token_for(job_id, JOB_CLASS) or ""
        return tokens
    finally:
        store = immortus.get_store()
        if store is not None:
            store.close()
        immortus.config.reset()


def _ready(url: str) -> bool:
    try:
        return http_get(f"{url}/bare/x/y")[0] == 200
    except OSError:
        return False


@contextlib.contextmanager
def server(store_url: str, logs: Path) -> Iterator[tuple[str, int]]:
    """Run the verify benchmark's Starlette app under uvicorn; yield its URL and pid.

    The same command as ``bench.verify.servers`` (one process, one event loop), started here
    because the CPU it uses is read from its pid.
    """

    port = free_port()
    env = {
        **os.environ,
        STORE_VARIABLE: store_url,
        BODY_SIZE_VARIABLE: "300",
        "PYTHONPATH": python_path(),
    }
    [starlette] = [framework for framework in FRAMEWORKS if framework.name == "starlette"]
    log_path = logs / "uvicorn.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            starlette.command(port), cwd=ROOT, env=env, stdout=log_file, stderr=log_file
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _ready(url):
            if process.poll() is not None:
                output = log_path.read_text(errors="replace")[-2000:]
                raise BenchError(f"uvicorn exited with {process.returncode}:\n{output}")
            if time.monotonic() > deadline:
                raise BenchError("uvicorn did not start within 30 s")
            time.sleep(0.1)
        yield url, process.pid
    finally:
        end_process(process)


def _spawn(module: str, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", module, *args]
    env = {**os.environ, "PYTHONPATH": python_path()}
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def _expect(process: subprocess.Popen[str], word: str, what: str) -> None:
    stdout: IO[str] | None = process.stdout
    line = stdout.readline().strip() if stdout is not None else ""
    if line != word:
        process.kill()
        process.wait()
        raise BenchError(f"the {what} did not start (said {line!r}, exit {process.poll()})")


@dataclass(frozen=True, slots=True)
class Setup:
    """What every run on one store shares: the server, the store, the plan, a scratch folder."""

    url: str
    pid: int
    store_url: str
    plan: Plan
    folder: Path


def run_once(setup: Setup, mode: str, label: str) -> dict[str, Any]:
    """One run of ``mode`` with fresh jobs; return its figures."""
    url, pid, store_url, plan, folder = (
        setup.url, setup.pid, setup.store_url, setup.plan, setup.folder
    )  # fmt: skip
    job_ids = [f"{label}-{number:04d}-{os.urandom(3).hex()}" for number in range(plan.watchers)]
    tokens = seed(store_url, job_ids, plan.steps)
    ids_file, seen_file, stamps_file = (
        folder / f"{label}-{k}.json" for k in ("ids", "seen", "stamps")
    )
    writer_ids_file = folder / f"{label}-writer-ids.json"
    writer_ids_file.write_text(json.dumps(job_ids))
    ids_file.write_text(json.dumps(tokens))
    timing = ["--steps", str(plan.steps), "--seconds", str(plan.seconds)]
    writer = _spawn(
        "bench.push.writer", store_url, JOB_CLASS, str(writer_ids_file), str(stamps_file), *timing
    )
    watchers: subprocess.Popen[str] | None = None
    threads: ThreadClock | None = None
    try:
        _expect(writer, "waiting", "writer")
        deadline = str(plan.seconds + 60)
        watchers = _spawn(
            "bench.push.watchers", mode, url, JOB_CLASS, str(ids_file), str(seen_file),
            "--interval", str(POLL_INTERVAL), "--deadline", deadline,
        )  # fmt: skip
        _expect(watchers, "ready", "watchers")
        threads = ThreadClock(pid)
        cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
        assert writer.stdin is not None
        writer.stdin.write("go\n")
        writer.stdin.flush()
        if watchers.wait(plan.seconds + 90) != 0:
            raise BenchError(f"the {mode} watchers failed (exit {watchers.returncode})")
        cpu_after, wall_after = cpu_seconds(pid), time.monotonic()
        split = threads.stop()
        if writer.wait(60) != 0:
            raise BenchError(f"the writer failed (exit {writer.returncode})")
    finally:
        if threads is not None:
            threads.stop()
        for process in (writer, watchers):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    seen = json.loads(seen_file.read_text())
    stamps = json.loads(stamps_file.read_text())
    figures = latency(seen["seen"], stamps["stamps"])
    return {
        "mode": mode,
        "server_cpu_s": round(cpu_after - cpu_before, 3),
        **split,
        "wall_s": round(wall_after - wall_before, 2),
        "requests": seen["requests"],
        "bytes_to_clients": seen["bytes_in"],
        "bytes_from_clients": seen["bytes_out"],
        "errors": seen["error_count"],
        "unfinished": seen["unfinished"],
        "watcher_cpu_s": round(seen["cpu_s"], 2),
        "writer_lag_max_ms": round(stamps["lag_max_ms"], 1),
        **figures,
    }


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, round(pct / 100 * len(ordered) + 0.5) - 1)]


def latency(seen: dict[str, list[list[float]]], stamps: dict[str, list[float]]) -> dict[str, Any]:
    """Write-to-seen latency of every step: when the watcher first saw it or a later value.

    ``steps_seen`` counts the steps whose own value reached the watcher; polling misses those
    that a later step replaced between two polls (their latency is that of the later sight).
    """
    delays: list[float] = []
    exact = missed = 0
    for job_id, written in stamps.items():
        sights = seen.get(job_id, [])
        values = {current for current, _ in sights}
        for step, stamp in enumerate(written, start=1):
            first = next((moment for current, moment in sights if current >= step), None)
            if first is None:
                missed += 1
                continue
            delays.append((first - stamp) * 1000)
            exact += step in values
    if not delays:
        raise BenchError("no watcher saw any progress")
    return {
        "p50_ms": round(percentile(delays, 50), 1),
        "p95_ms": round(percentile(delays, 95), 1),
        "max_ms": round(max(delays), 1),
        "steps": len(delays) + missed,
        "steps_seen": exact,
        "steps_never_seen": missed,
    }


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over one mode's runs."""
    keys = [key for key, value in runs[0].items() if isinstance(value, int | float)]
    return {key: statistics.median(run[key] for run in runs) for key in keys}


def _ratio(by_mode: dict[str, dict[str, Any]], mode: str) -> float:
    """CPU(mode) / CPU(polling), medians (0 when polling used none)."""
    polling = by_mode["polling"]["server_cpu_s"]
    return by_mode[mode]["server_cpu_s"] / polling if polling else 0.0


def render(store: str, plan: Plan, by_mode: dict[str, dict[str, Any]], rounds: int) -> str:
    lines = [
        f"push vs polling, {store} store: {plan.watchers} watchers, {plan.steps} steps over "
        f"{plan.seconds:g} s per job, polling every {POLL_INTERVAL * 1000:.0f} ms; uvicorn, "
        f"1 process; median of {rounds} run(s) per mode",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}",
        "",
        f"{'mode':<9}{'CPU s':>7}{'(loop':>7}{'other)':>7}{'requests':>10}{'KiB sent':>10}"
        f"{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}{'steps seen':>12}{'errors':>8}",
    ]
    for mode in MODES:
        name, row = LABELS[mode], by_mode[mode]
        seen = f"{row['steps_seen']:.0f}/{row['steps']:.0f}"
        lines.append(
            f"{name:<9}{row['server_cpu_s']:>7.2f}{row['main_thread_cpu_s']:>7.2f}"
            f"{row['other_threads_cpu_s']:>7.2f}{row['requests']:>10.0f}"
            f"{row['bytes_to_clients'] / 1024:>10.0f}{row['p50_ms']:>8.1f}{row['p95_ms']:>8.1f}"
            f"{row['max_ms']:>8.1f}{seen:>12}{row['errors']:>8.0f}"
        )
    lines.append(
        "(loop: the event loop's thread; other: every other thread, the change feed's for SSE;"
        " multi: the multi-job stream, one job a page)"
    )
    lines.append("")
    for mode in ("sse", "multi"):
        ratio, p95 = _ratio(by_mode, mode), by_mode[mode]["p95_ms"]
        cpu_verdict = "PASS" if ratio <= CPU_TARGET else "MISS"
        p95_verdict = "PASS" if p95 < P95_TARGET_MS else "MISS"
        name = f"CPU({LABELS[mode]}) / CPU(polling):"
        lines += [
            f"{name:<28}{ratio:.2f}  (target <= {CPU_TARGET}: {cpu_verdict})",
            f"{LABELS[mode] + ' p95 latency:':<28}{p95:.0f} ms  (target < {P95_TARGET_MS:.0f}"
            f" ms: {p95_verdict})",
        ]
    return "\n".join(lines)


def bench_store(
    store: str, store_url: str, plan: Plan, rounds: int, folder: Path
) -> dict[str, Any]:
    """Every run of both modes on one store; return the runs, medians and ratio."""
    order = [MODES if number % 2 == 0 else MODES[::-1] for number in range(rounds)]
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with server(store_url, folder) as (url, pid):
        setup = Setup(url, pid, store_url, plan, folder)
        for number, modes in enumerate(order, start=1):
            for mode in modes:
                label = f"{store}-{mode}-{number}"
                figures = run_once(setup, mode, label)
                runs[mode].append(figures)
                log(
                    f"{store} {mode} run {number}/{rounds}: CPU {figures['server_cpu_s']:.2f} s, "
                    f"{figures['requests']} requests, p50 {figures['p50_ms']:.0f} ms, "
                    f"p95 {figures['p95_ms']:.0f} ms"
                )
    medians = {mode: summarize(runs[mode]) for mode in MODES}
    print(render(store, plan, medians, rounds), flush=True)
    print(flush=True)
    return {
        "runs": runs,
        "median": medians,
        "cpu_ratio_sse_over_polling": round(_ratio(medians, "sse"), 3),
        "cpu_ratio_multi_over_polling": round(_ratio(medians, "multi"), 3),
    }


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.push", description=__doc__)
    add_modes(
        parser,
        quick="100 watchers, 10 steps over 5 s, 1 run per mode",
        full="the issue's 200 watchers, 20 steps over 10 s, 2 runs per mode",
    )
    parser.add_argument("--rounds", type=int, help="runs per mode (quick: 1, full: 2)")
    parser.add_argument("--stores", default="sqlite", help="sqlite, redis or both (sqlite)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables; save the figures. Exit status 1 if it failed."""
    args = _parse(argv)
    plan = FULL if args.full else QUICK
    rounds = args.rounds or (2 if args.full else 1)
    stores = [name.strip() for name in args.stores.split(",") if name.strip()]
    if not stores or any(name not in {"sqlite", "redis"} for name in stores):
        print("bench: --stores takes sqlite, redis or both", file=sys.stderr)
        return 2
    figures: dict[str, Any] = {
        "watchers": plan.watchers,
        "steps": plan.steps,
        "seconds": plan.seconds,
        "poll_interval_s": POLL_INTERVAL,
        "rounds": rounds,
        "load_average_start": os.getloadavg()[0],
    }
    try:
        with (
            tempfile.TemporaryDirectory(prefix="immortus-push-") as tmp,
            contextlib.ExitStack() as stack,
        ):
            folder = Path(tmp)
            for store in stores:
                if store == "sqlite":
                    store_url = f"sqlite:///{folder / 'jobs.sqlite3'}"
                else:
                    store_url = stack.enter_context(RedisServer()).url
                figures[store] = bench_store(store, store_url, plan, rounds, folder)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    results.save("push_vs_polling", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
