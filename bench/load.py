"""Load test of the ASGI adapter: 1 000 pollers and 200 SSE streams against one uvicorn process.

One uvicorn process serves ``bench/load_app.py`` (``immortus_routes("/jobs")`` with a secret
key) over an SQLite file or a Redis database. This process seeds the store with jobs in every
state, then keeps writing to it as a worker would while the load runs:

- **pollers**: ``wrk`` holds ``--pollers`` keep-alive HTTP/1.1 connections (2 threads) for
  ``--duration`` seconds, each request a ``GET /jobs/verify/{id}?token=...`` of a random seeded
  job (``bench/load_wrk.lua``). Only seeded jobs are asked about, so every answer but a 200 is an
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
``--full`` 60 s. Redis is a private ``redis-server`` (``tests/services/``) unless ``--redis-url``
names one (its jobs are added under fresh ids, nothing is deleted). The table goes to stdout, the
figures to ``bench/results/latest.json`` (section ``load``). ``tests/reliability/test_load.py``
runs the same with the full sizes and asserts zero errors and a bounded memory growth.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import logging
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

import httpx
from tests.services import RedisServer, free_port

import immortus
from bench import results
from bench.common import BenchError, end_process, log
from immortus import Progress, lifecycle
from immortus.web.core import Verifier

__all__ = [
    "PREFIX",
    "LoadPlan",
    "LoadReport",
    "MemoryFigures",
    "PollFigures",
    "StreamFigures",
    "main",
    "render",
    "run_load",
    "save",
]

ROOT: Final = Path(__file__).resolve().parents[1]
WRK_SCRIPT: Final = Path(__file__).with_name("load_wrk.lua")
HOST: Final = "127.0.0.1"
#: Where ``bench/load_app.py`` mounts immortus's routes.
PREFIX: Final = "/jobs"
#: Pause after a load before reading the server's memory: its connections close meanwhile.
SETTLE_SECONDS: Final = 1.0
#: How often the server's memory is read during the run.
SAMPLE_SECONDS: Final = 5.0
#: Generous, for a loaded 2-core machine: how long the server may take to answer its first poll.
STARTUP_SECONDS: Final = 30.0
#: How long the streams may take to get their first frame before the writer starts them anyway.
OPEN_SECONDS: Final = 30.0
#: Beyond the run's length, how long a stream may go on before it counts as a timeout.
STREAM_GRACE_SECONDS: Final = 60.0
#: One stream job in this many fails instead of finishing.
FAILING_EVERY: Final = 10


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What one run does: how many clients, for how long, on how many jobs.

    ``warmup`` seconds of the same load (streams included) come first, so that the server's
    buffers, pools and caches have grown to their working size before its memory is read: on a
    busy machine, 5 s answered too few requests for that, and the run then "grew" by 6 MiB.

    ``wrk_timeout`` is how long wrk waits for an answer before counting a timeout. wrk's own
    default, 2 s, would measure wrk's patience, not the server: each connection sends its next
    request as soon as it has an answer, so an answer waits about ``pollers / rate`` seconds in
    the server's queue (Little's law). One uvicorn process answering 600 requests a second (the
    Redis store on a busy 2-core machine) makes 1 000 connections wait 1.7 s on average, 2.4 s
    at p99: answers that all came would count as timeouts. 10 s still counts a stuck request.
    """

    pollers: int = 1000
    duration: float = 60.0
    streams: int = 200
    jobs: int = 1000
    warmup: float = 10.0
    churn: float = 100.0
    wrk_threads: int = 2
    wrk_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.pollers < self.wrk_threads or self.wrk_threads < 1:
            raise ValueError("wrk needs at least one thread, and one connection per thread")
        if self.duration <= 0 or self.warmup <= 0 or self.jobs < 20 or self.streams < 0:
            raise ValueError(f"unusable plan: {self}")


# -- figures --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PollFigures:
    """What wrk measured: answers, rate, latency, and every error."""

    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    #: wrk's socket errors: ``connect``, ``read``, ``write``, ``timeout``.
    socket_errors: dict[str, int]
    #: Answers by status code (as text, for JSON).
    statuses: dict[str, int]

    @property
    def rate(self) -> float:
        """Requests answered per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        """Socket errors plus every answer other than 200."""
        wrong = sum(count for status, count in self.statuses.items() if status != "200")
        return sum(self.socket_errors.values()) + wrong


@dataclass(frozen=True, slots=True)
class StreamFigures:
    """What the SSE clients saw: how many ended right, the errors, the delivery times."""

    streams: int
    completed: int
    #: Error kinds and how many streams had each.
    errors: dict[str, int]
    #: Seconds from each job's last write to its client reading the final frame, sorted.
    delivery: list[float] = field(repr=False)

    def delivery_ms(self, percent: float) -> float:
        """The ``percent`` percentile of the delivery times, in ms (0 when there is none)."""
        return _percentile(self.delivery, percent) * 1000


@dataclass(frozen=True, slots=True)
class MemoryFigures:
    """The server's resident memory, idle after the warm-up and idle after the run; the peak."""

    start_bytes: int
    end_bytes: int
    peak_bytes: int
    #: The resident memory under load, read every :data:`SAMPLE_SECONDS` during the run: a leak
    #: climbs all along, a one-off allocation is a step.
    samples: list[int] = field(default_factory=list, repr=False)

    @property
    def growth_bytes(self) -> int:
        """End minus start (negative when the server gave memory back)."""
        return self.end_bytes - self.start_bytes

    @property
    def growth_ratio(self) -> float:
        """Growth as a fraction of the start."""
        return self.growth_bytes / self.start_bytes


@dataclass(frozen=True, slots=True)
class LoadReport:
    """One store's run: the plan, what the pollers and streams saw, the server's memory."""

    store: str
    plan: LoadPlan
    polls: PollFigures
    streams: StreamFigures
    memory: MemoryFigures
    #: Writes of the writer thread that the store refused (lifecycle returned False).
    writer_errors: int
    writes: int
    #: What immortus logged in this process (warnings and errors: a write held or lost).
    writer_log: list[str]
    #: What the server wrote to stderr (it runs with ``--log-level warning``).
    server_log: list[str]
    #: Errors of the warm-up (polls and streams alike).
    warmup_errors: int

    @property
    def errors(self) -> int:
        """Every error of the run: polls, streams, the writer's, log lines of either side."""
        return (
            self.polls.errors
            + sum(self.streams.errors.values())
            + self.writer_errors
            + len(self.writer_log)
            + len(self.server_log)
            + self.warmup_errors
        )

    def to_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready data (for :func:`bench.results.save`)."""
        memory, polls, streams = self.memory, self.polls, self.streams
        mib = 1 << 20
        return {
            "plan": asdict(self.plan),
            "polls": {
                "requests": polls.requests,
                "seconds": round(polls.seconds, 2),
                "requests_per_second": round(polls.rate, 1),
                "p50_ms": polls.p50_ms,
                "p90_ms": polls.p90_ms,
                "p99_ms": polls.p99_ms,
                "max_ms": polls.max_ms,
                "errors": polls.errors,
                "socket_errors": polls.socket_errors,
                "statuses": polls.statuses,
            },
            "streams": {
                "streams": streams.streams,
                "completed": streams.completed,
                "errors": streams.errors,
                "delivery_p50_ms": round(streams.delivery_ms(50), 1),
                "delivery_p99_ms": round(streams.delivery_ms(99), 1),
                "delivery_max_ms": round(streams.delivery_ms(100), 1),
            },
            "memory": {
                "rss_start_mib": round(memory.start_bytes / mib, 1),
                "rss_end_mib": round(memory.end_bytes / mib, 1),
                "rss_peak_mib": round(memory.peak_bytes / mib, 1),
                "growth_mib": round(memory.growth_bytes / mib, 2),
                "growth_percent": round(memory.growth_ratio * 100, 1),
                "growth_bytes_per_request": round(memory.growth_bytes / max(1, polls.requests), 1),
                "rss_under_load_mib": [round(sample / mib, 1) for sample in memory.samples],
            },
            "writes": self.writes,
            "writer_errors": self.writer_errors,
            "writer_log": self.writer_log[:20],
            "warmup_errors": self.warmup_errors,
            "server_log": self.server_log[:20],
            "errors": self.errors,
        }


def _percentile(values: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile of sorted ``values`` (0 for none)."""
    if not values:
        return 0.0
    rank = max(1, -(-len(values) * percent // 100))
    return values[min(len(values), int(rank)) - 1]


# -- jobs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamJob:
    """A job a stream follows: its request path, and the state it must end in."""

    job_id: str
    path: str
    final: str


@dataclass(frozen=True, slots=True)
class Seeded:
    """The seeded jobs: the polled ones (and which of them run), and each phase's stream jobs."""

    poll_paths: list[str]
    running: list[str]
    warmup_streams: list[StreamJob]
    streams: list[StreamJob]


def _path(route: str, job_id: str, verifier: Verifier) -> str:
    return f"{PREFIX}/{route}/{job_id}?token={verifier.token_for(job_id)}"


def _write(*writes: Callable[[], bool]) -> None:
    for write in writes:
        if not write():
            raise BenchError("seeding failed: the store refused a write (see the log above)")


def _polled_writes(job_id: str, kind: int) -> list[Callable[[], bool]]:
    """The writes that put a polled job in the state of its ``kind`` (0-19, see :func:`seed`)."""
    failure = RuntimeError("load test: a planned failure")
    enqueued = partial(lifecycle.job_enqueued, job_id)
    started = partial(lifecycle.job_started, job_id)
    if kind < 8:
        progress = Progress(current=kind * 10, total=100, message=f"row {kind * 10}")
        return [enqueued, started, partial(lifecycle.job_progress, job_id, progress)]
    if kind < 12:
        return [enqueued]
    if kind < 16:
        return [enqueued, started, partial(lifecycle.job_finished, job_id)]
    if kind < 18:
        return [enqueued, started, partial(lifecycle.job_failed, job_id, failure)]
    if kind < 19:
        return [enqueued, started, partial(lifecycle.job_retrying, job_id, failure)]
    return [enqueued, partial(lifecycle.job_cancelled, job_id)]


def seed(plan: LoadPlan, verifier: Verifier) -> Seeded:
    """Write the polled jobs in mixed states and each phase's stream jobs, waiting, to the store.

    Of every 20 polled jobs, 8 run with progress (the writer moves it during the run), 4 wait,
    4 finished, 2 failed, 1 is retrying and 1 was cancelled. Ids are fresh for every run.

    Raises:
        BenchError: the store refused a write.
    """
    run = secrets.token_hex(3)
    poll_paths: list[str] = []
    running: list[str] = []
    for number in range(plan.jobs):
        job_id = f"load-{run}-{number:05d}"
        _write(*_polled_writes(job_id, number % 20))
        if number % 20 < 8:
            running.append(job_id)
        poll_paths.append(_path("verify", job_id, verifier))

    def stream_jobs(phase: str) -> list[StreamJob]:
        jobs = []
        for number in range(plan.streams):
            job_id = f"stream-{run}-{phase}-{number:04d}"
            _write(partial(lifecycle.job_enqueued, job_id))
            final = "failed" if number % FAILING_EVERY == FAILING_EVERY - 1 else "finished"
            jobs.append(StreamJob(job_id, _path("stream", job_id, verifier), final))
        return jobs

    return Seeded(poll_paths, running, stream_jobs("warmup"), stream_jobs("main"))


# -- the writer -----------------------------------------------------------------------------


@dataclass(order=True, frozen=True, slots=True)
class Step:
    """One planned write: when (``time.monotonic()``), to which job, and whether it is its last."""

    at: float
    job_id: str = field(compare=False)
    write: Callable[[], bool] = field(compare=False)
    last: bool = field(compare=False, default=False)


def stream_steps(jobs: Sequence[StreamJob], start: float, window: float) -> list[Step]:
    """Plan each stream job's writes: started, 1/3, 2/3, then its end, evenly spaced.

    The jobs end one after the other between 20 % and 100 % of ``window`` seconds after
    ``start``, so streams are still running while the others end.
    """
    failure = RuntimeError("load test: a planned failure")
    steps: list[Step] = []
    for number, job in enumerate(jobs):
        end = window * (0.2 + 0.8 * (number + 1) / len(jobs))
        last: Callable[[], bool] = (
            partial(lifecycle.job_failed, job.job_id, failure)
            if job.final == "failed"
            else partial(lifecycle.job_finished, job.job_id)
        )
        writes: list[Callable[[], bool]] = [
            partial(lifecycle.job_started, job.job_id),
            partial(lifecycle.job_progress, job.job_id, Progress(current=1, total=3)),
            partial(lifecycle.job_progress, job.job_id, Progress(current=2, total=3)),
            last,
        ]
        for index, write in enumerate(writes, 1):
            at = start + end * index / len(writes)
            steps.append(Step(at, job.job_id, write, last=index == len(writes)))
    return steps


class Writer(threading.Thread):
    """Writes to the store as a worker process would, until :meth:`stop`.

    It makes the planned :class:`Step` writes when they are due and, in between, moves the
    progress of the running polled jobs at ``rate`` writes a second, one job after another.
    ``committed`` maps each job whose last step was written to the ``time.monotonic()`` at which
    that write returned (committed); ``errors`` counts the writes the store refused.
    """

    def __init__(self, running: Sequence[str], rate: float) -> None:
        super().__init__(name="load-writer", daemon=True)
        self.running = list(running)
        self.rate = rate
        self.committed: dict[str, float] = {}
        self.writes = 0
        self.errors = 0
        self._steps: list[Step] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def schedule(self, steps: Sequence[Step]) -> None:
        """Add ``steps`` to the plan (from any thread)."""
        with self._lock:
            for step in steps:
                heapq.heappush(self._steps, step)

    def stop(self) -> None:
        """Stop writing and wait for the thread to end."""
        self._halt.set()
        self.join()

    def run(self) -> None:
        """Write until stopped; what the store refuses is counted, never raised."""
        churned = 0
        next_churn = time.monotonic()
        while not self._halt.is_set():
            for step in self._due(time.monotonic()):
                self._make(step.write)
                if step.last:
                    self.committed[step.job_id] = time.monotonic()
            now = time.monotonic()
            if self.rate > 0 and self.running and now >= next_churn:
                job_id = self.running[churned % len(self.running)]
                current = (churned // len(self.running)) % 101
                progress = Progress(current=current, total=100, message=f"row {current}")
                self._make(partial(lifecycle.job_progress, job_id, progress))
                churned += 1
                next_churn = max(next_churn + 1 / self.rate, now - 1.0)
            wake = min(self._next_at(), next_churn if self.rate > 0 else now + 0.05)
            self._halt.wait(min(0.05, max(0.0, wake - time.monotonic())))

    def _due(self, now: float) -> list[Step]:
        with self._lock:
            due = []
            while self._steps and self._steps[0].at <= now:
                due.append(heapq.heappop(self._steps))
            return due

    def _next_at(self) -> float:
        with self._lock:
            return self._steps[0].at if self._steps else float("inf")

    def _make(self, write: Callable[[], bool]) -> None:
        self.writes += 1
        if not write():
            self.errors += 1


# -- the pollers ----------------------------------------------------------------------------


def read_wrk(output: str) -> PollFigures:
    """Read the figures ``load_wrk.lua`` prints at the end of wrk's output.

    Raises:
        BenchError: the line is missing.
    """
    line = next((ln for ln in output.splitlines() if ln.startswith("IMMORTUS_WRK ")), None)
    if line is None:
        raise BenchError(f"wrk printed no figures:\n{output}")
    data = json.loads(line.removeprefix("IMMORTUS_WRK "))
    return PollFigures(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        socket_errors={name: data[name] for name in ("connect", "read", "write", "timeout")},
        statuses=dict(sorted(data["statuses"].items())),
    )


async def poll(url: str, paths_file: Path, plan: LoadPlan, seconds: float) -> PollFigures:
    """Run wrk's ``plan.pollers`` connections against ``url`` for ``seconds``; read its figures.

    Raises:
        BenchError: wrk failed or printed no figures.
    """
    command = [
        "wrk", "--threads", str(plan.wrk_threads), "--connections", str(plan.pollers),
        "--duration", f"{max(1, round(seconds))}s", "--timeout", f"{plan.wrk_timeout:g}s",
        "--script", str(WRK_SCRIPT), url, "--", str(paths_file),
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await process.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise BenchError(f"wrk failed ({process.returncode}): {err.decode().strip()}")
    return read_wrk(out.decode())


# -- the streams ----------------------------------------------------------------------------


@dataclass(slots=True)
class StreamOutcome:
    """What one SSE client saw: data frames, the final state, when it came, the first error."""

    job: StreamJob
    frames: int = 0
    final: str | None = None
    received_at: float | None = None
    error: str | None = None


class _Gate:
    """Opens once every stream has its first frame (or has failed)."""

    def __init__(self, count: int) -> None:
        self.left = count
        self.open = asyncio.Event()
        if count <= 0:
            self.open.set()

    def arrived(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.open.set()


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """Yield each ``(event, data)`` of an SSE response (comments, such as heartbeats, skipped)."""
    event = "message"
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


def _take(outcome: StreamOutcome, event: str, data: str) -> None:
    if event == "error":
        outcome.error = outcome.error or "error frame"
        log(f"stream {outcome.job.job_id}: event: error {data[:200]}")
        return
    body = json.loads(data)
    outcome.frames += 1
    if body.get("completed") is True:
        outcome.final = body.get("status")
        outcome.received_at = time.monotonic()


async def watch(
    client: httpx.AsyncClient, job: StreamJob, gate: _Gate, limit: float
) -> StreamOutcome:
    """Follow ``job``'s stream to its end (at most ``limit`` seconds); say what it carried."""
    outcome = StreamOutcome(job)
    arrived = False
    try:
        async with asyncio.timeout(limit), client.stream("GET", job.path) as response:
            if response.status_code != 200:
                outcome.error = f"HTTP {response.status_code}"
                return outcome
            async for event, data in _events(response):
                if not arrived:
                    arrived = True
                    gate.arrived()
                _take(outcome, event, data)
    except TimeoutError:
        outcome.error = "timeout"
    except httpx.HTTPError as exc:
        outcome.error = type(exc).__name__
    finally:
        if not arrived:
            gate.arrived()
    if outcome.error is None and outcome.final is None:
        outcome.error = "ended before its final frame"
    elif outcome.error is None and outcome.final != job.final:
        outcome.error = "ended in the wrong state"
    return outcome


async def follow(
    url: str, jobs: Sequence[StreamJob], writer: Writer, *, window: float, limit: float
) -> list[StreamOutcome]:
    """Open a stream per job; once all have their first frame, have ``writer`` run the jobs."""
    gate = _Gate(len(jobs))
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    timeout = httpx.Timeout(OPEN_SECONDS, read=STREAM_GRACE_SECONDS)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        tasks = [asyncio.create_task(watch(client, job, gate, limit)) for job in jobs]
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gate.open.wait(), OPEN_SECONDS)
            writer.schedule(stream_steps(jobs, time.monotonic(), window))
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()


def stream_figures(outcomes: Sequence[StreamOutcome], committed: dict[str, float]) -> StreamFigures:
    """Count the streams that ended right and the errors; compute each delivery time."""
    errors: Counter[str] = Counter()
    delivery: list[float] = []
    for outcome in outcomes:
        if outcome.error is None and outcome.job.job_id not in committed:
            outcome.error = "final frame before its write returned"
        if outcome.error is not None:
            errors[outcome.error] += 1
        elif outcome.received_at is not None:
            delivery.append(outcome.received_at - committed[outcome.job.job_id])
    return StreamFigures(
        streams=len(outcomes),
        completed=len(delivery),
        errors=dict(sorted(errors.items())),
        delivery=sorted(delivery),
    )


# -- the server -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Server:
    """The uvicorn process: its base URL, its pid, and the file its stderr goes to."""

    url: str
    pid: int
    log: Path


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - our own server
            status: int = answer.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@contextlib.contextmanager
def serve(store_url: str, secret: str, folder: Path, probe: str) -> Iterator[Server]:
    """Run uvicorn with ``bench.load_app:app`` until the block ends; yield it once ``probe``
    (a path) answers 200.

    Raises:
        BenchError: the server exited, or did not answer 200 in time.
    """
    port = free_port()
    python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {
        **os.environ,
        "IMMORTUS_LOAD_STORE": store_url,
        "IMMORTUS_LOAD_SECRET": secret,
        "PYTHONPATH": python_path,
    }
    command = [
        sys.executable, "-m", "uvicorn", "bench.load_app:app",
        "--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log",
        "--backlog", "4096", "--timeout-graceful-shutdown", "5",
    ]  # fmt: skip
    log_path = folder / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
        )
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while (status := _status(url + probe)) != 200:
            if process.poll() is not None:
                raise BenchError(f"uvicorn exited with {process.returncode}: {_tail(log_path)}")
            if time.monotonic() > deadline:
                raise BenchError(f"uvicorn answered {status}, not 200, for {STARTUP_SECONDS} s")
            time.sleep(0.1)
        yield Server(url, process.pid, log_path)
    finally:
        end_process(process, 15)


def _tail(path: Path) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-20:])


def memory(pid: int) -> tuple[int, int]:
    """Return the process's resident memory now and its peak so far (``VmHWM``), in bytes."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            found[name] = int(value.split()[0]) * 1024
    return found["VmRSS"], found["VmHWM"]


@contextlib.contextmanager
def sampling(pid: int, every: float) -> Iterator[list[int]]:
    """Read ``pid``'s resident memory every ``every`` seconds in the block; yield the readings."""
    readings: list[int] = []
    halt = threading.Event()

    def read() -> None:
        while not halt.wait(every):
            with contextlib.suppress(OSError, KeyError):
                readings.append(memory(pid)[0])

    reader = threading.Thread(target=read, name="load-memory", daemon=True)
    reader.start()
    try:
        yield readings
    finally:
        halt.set()
        reader.join()


def raise_open_files_limit(needed: int) -> None:
    """Raise this process's soft limit of open files to ``needed`` (children inherit it).

    Raises:
        BenchError: the hard limit is lower than ``needed``.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise BenchError(
            f"the load needs {needed} open files per process, but the hard limit is {hard}: "
            "raise it (ulimit -Hn, or LimitNOFILE for a service)"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


class LogLines(logging.Handler):
    """Keeps what is logged at WARNING or above, formatted, while installed on a logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")

    @contextlib.contextmanager
    def installed(self, logger: logging.Logger) -> Iterator[list[str]]:
        """Collect ``logger``'s records in the block; yield the list they go to."""
        logger.addHandler(self)
        try:
            yield self.lines
        finally:
            logger.removeHandler(self)


# -- one run --------------------------------------------------------------------------------


def run_load(plan: LoadPlan, store_url: str, *, name: str, folder: Path) -> LoadReport:
    """Seed ``store_url``, serve it, warm up, then load it by ``plan``; return the figures.

    ``name`` labels the run (``sqlite``, ``redis``); ``folder`` receives the server's log and
    the pollers' request paths. Changes immortus's settings in this process, and resets them at
    the end.

    Raises:
        BenchError: wrk is missing or failed, the limit of open files is too low, the seeding
            failed, or the server did not start.
    """
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (apt-get install wrk)")
    raise_open_files_limit(plan.pollers + plan.streams + 512)
    secret = secrets.token_urlsafe(32)
    immortus.configure(store=store_url, progress_interval=0)
    writer_log = LogLines()
    try:
        with writer_log.installed(logging.getLogger("immortus")):
            log(f"{name}: seeding {plan.jobs} polled jobs and 2 x {plan.streams} stream jobs")
            seeded = seed(plan, Verifier(secret_key=secret))
            paths_file = folder / "paths.txt"
            paths_file.write_text("\n".join(seeded.poll_paths) + "\n")
            writer = Writer(seeded.running, plan.churn)
            with serve(store_url, secret, folder, seeded.poll_paths[0]) as server:
                load = _Load(server, paths_file, plan, writer)
                writer.start()
                try:
                    log(f"{name}: warm-up, {plan.warmup:g} s")
                    warmup = load.phase(plan.warmup, seeded.warmup_streams)
                    time.sleep(SETTLE_SECONDS)
                    start, _ = memory(server.pid)
                    log(f"{name}: {plan.pollers} pollers, {plan.streams} streams")
                    with sampling(server.pid, SAMPLE_SECONDS) as samples:
                        polls, outcomes = load.phase(plan.duration, seeded.streams)
                finally:
                    writer.stop()
                time.sleep(SETTLE_SECONDS)
                end, peak = memory(server.pid)
    finally:
        immortus.config.reset()
    warmup_streams = stream_figures(warmup[1], writer.committed)
    return LoadReport(
        store=name,
        plan=plan,
        polls=polls,
        streams=stream_figures(outcomes, writer.committed),
        memory=MemoryFigures(start, end, peak, samples),
        writer_errors=writer.errors,
        writes=writer.writes,
        writer_log=writer_log.lines,
        server_log=[line for line in server.log.read_text(errors="replace").splitlines() if line],
        warmup_errors=warmup[0].errors + sum(warmup_streams.errors.values()),
    )


@dataclass(frozen=True, slots=True)
class _Load:
    """What both phases of a run share: the server, the pollers' paths, the plan, the writer."""

    server: Server
    paths_file: Path
    plan: LoadPlan
    writer: Writer

    def phase(
        self, seconds: float, jobs: Sequence[StreamJob]
    ) -> tuple[PollFigures, list[StreamOutcome]]:
        """Run the pollers for ``seconds`` and the streams of ``jobs`` side by side."""
        return asyncio.run(self._phase(seconds, jobs))

    async def _phase(
        self, seconds: float, jobs: Sequence[StreamJob]
    ) -> tuple[PollFigures, list[StreamOutcome]]:
        url = self.server.url
        polls = asyncio.create_task(poll(url, self.paths_file, self.plan, seconds))
        try:
            window = max(1.0, seconds / 2)
            limit = seconds + STREAM_GRACE_SECONDS
            outcomes = await follow(url, jobs, self.writer, window=window, limit=limit)
            return await polls, outcomes
        finally:
            if not polls.done():
                polls.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await polls


# -- report ---------------------------------------------------------------------------------


def render(reports: Sequence[LoadReport]) -> str:
    """Return the table of every run: polls, streams, the server's memory, the errors."""
    if not reports:
        return "load: no run"
    plan = reports[0].plan
    mib = 1 << 20
    lines = [
        f"load: one uvicorn process (immortus_routes, secret key), wrk {plan.wrk_threads} "
        f"threads x {plan.pollers} keep-alive connections (timeout {plan.wrk_timeout:g} s) "
        f"+ {plan.streams} SSE streams, {plan.duration:g} s after a {plan.warmup:g} s warm-up; "
        f"{plan.jobs} polled jobs, {plan.churn:g} progress writes/s",
        f"machine: {os.cpu_count()} CPUs, shared; figures are one run's, not medians",
        "",
        f"{'store':<8}{'requests':>10}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}"
        f"{'SSE ok':>8}{'SSE p50':>9}{'SSE p99':>9}{'SSE err':>8}"
        f"{'RSS start':>10}{'end':>7}{'peak':>7}{'growth':>13}",
    ]
    for report in reports:
        polls, streams, memory = report.polls, report.streams, report.memory
        growth = f"{memory.growth_bytes / mib:+.1f} ({memory.growth_ratio:+.0%})"
        lines.append(
            f"{report.store:<8}{polls.requests:>10,}{polls.rate:>8,.0f}{polls.p50_ms:>8.0f}"
            f"{polls.p99_ms:>8.0f}{polls.errors:>7}"
            f"{streams.completed:>5}/{streams.streams:<3}{streams.delivery_ms(50):>7.0f}ms"
            f"{streams.delivery_ms(99):>7.0f}ms{sum(streams.errors.values()):>8}"
            f"{memory.start_bytes / mib:>8.1f}Mi{memory.end_bytes / mib:>7.1f}"
            f"{memory.peak_bytes / mib:>7.1f}{growth:>13}"
        )
    for report in reports:
        problems = {
            "poll answers": report.polls.statuses,
            "wrk socket errors": report.polls.socket_errors,
            "stream errors": report.streams.errors,
            "writer errors": report.writer_errors,
            "warm-up errors": report.warmup_errors,
            "server log lines": len(report.server_log),
        }
        lines.append(f"{report.store}: " + "; ".join(f"{k} {v}" for k, v in problems.items()))
        readings = " ".join(f"{sample / mib:.1f}" for sample in report.memory.samples)
        lines.append(f"  server RSS under load, every {SAMPLE_SECONDS:g} s (MiB): {readings}")
        lines += [f"  writer: {line}" for line in report.writer_log[:10]]
        lines += [f"  server: {line}" for line in report.server_log[:10]]
    return "\n".join(lines)


def save(reports: Sequence[LoadReport]) -> Path:
    """Add the runs to the ``load`` section of the results file, beside runs of other stores."""
    runs: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        saved = json.loads(results.LATEST.read_text(encoding="utf-8"))["load"]["runs"]
        runs.update(saved if isinstance(saved, dict) else {})
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    runs.update({report.store: {"measured_at": stamp, **report.to_dict()} for report in reports})
    return results.save("load", {"runs": runs})


# -- command line ---------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description="Load immortus's ASGI routes with pollers and SSE streams (bench/load.py).",
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
