"""What one load run measured: the pollers', the streams' and the memory's figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.load.plan import (
    LoadPlan,
)


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
