"""What one load run does: its sizes (:class:`LoadPlan`) and the timings every run shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Where ``bench/load/app.py`` mounts immortus's routes.
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
