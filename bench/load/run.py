"""One load run: seed, serve, warm up, then wrk's pollers and the streams together."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import immortus
from bench.common import BenchError, log
from bench.load.figures import LoadReport, MemoryFigures, PollFigures
from bench.load.jobs import (
    StreamJob,
    Writer,
    seed,
)
from bench.load.plan import (
    SAMPLE_SECONDS,
    SETTLE_SECONDS,
    STREAM_GRACE_SECONDS,
    LoadPlan,
)
from bench.load.server import LogLines, Server, raise_open_files_limit, sampling, serve
from bench.load.streams import StreamOutcome, follow, stream_figures
from devservices.processes import memory
from immortus.web.core import Verifier

WRK_SCRIPT: Final = Path(__file__).with_name("wrk.lua")


# -- the pollers ----------------------------------------------------------------------------


def read_wrk(output: str) -> PollFigures:
    """Read the figures ``wrk.lua`` prints at the end of wrk's output.

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
