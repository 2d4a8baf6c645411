"""The load's SSE clients: follow each stream to its final frame, then count what arrived."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import httpx

from bench.common import log
from bench.load.figures import StreamFigures
from bench.load.jobs import (
    StreamJob,
    Writer,
    stream_steps,
)
from bench.load.plan import (
    OPEN_SECONDS,
    STREAM_GRACE_SECONDS,
)


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
