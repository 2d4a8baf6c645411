"""What the tracking-overhead benchmark measures: a batch, every round at one size, a queue."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from bench.overhead.bare import BareTiming

#: The two kinds of worker, of job and of batch.
KINDS: Final = ("untracked", "tracked")
#: Batches of the tracked worker with the job history off (``--history``).
NO_HISTORY: Final = "tracked, no history"


@dataclass(slots=True)
class Run:
    """What one batch (one kind, one size) measured."""

    rate: float
    cpu_rate: float | None
    enqueue_rate: float
    #: The benchmark's CPU seconds a job while enqueuing (``None``: not measured).
    enqueue_cpu_s: float | None
    #: The floor (:mod:`bench.overhead.bare`), timed right after the batch, on the same file.
    bare: BareTiming | None
    #: The benchmark's store calls while enqueuing.
    enqueue_store_calls: Counter[str]
    #: Redis commands, while enqueuing and while the worker ran the batch.
    redis_commands: dict[str, Counter[str]]


@dataclass(slots=True)
class Measure:
    """Every round of one queue at one job count."""

    jobs: int
    runs: dict[str, list[Run]] = field(
        default_factory=lambda: {kind: [] for kind in (*KINDS, NO_HISTORY)}
    )

    def median(self, kind: str, figure: Callable[[Run], float | None]) -> float | None:
        """The median of ``figure`` over the rounds of ``kind`` (``None`` if it has none)."""
        values = [v for v in map(figure, self.runs[kind]) if v is not None]
        return statistics.median(values) if values else None

    def rate(self, kind: str) -> float:
        """The median worker rate of ``kind``, in jobs per second."""
        value = self.median(kind, lambda run: run.rate)
        assert value is not None
        return value

    def spread(self, kind: str) -> float:
        """(max - min) / median of the worker rates of ``kind``."""
        rates = [run.rate for run in self.runs[kind]]
        return (max(rates) - min(rates)) / statistics.median(rates)

    def ratio(self) -> float:
        """Tracked over untracked median worker rate."""
        return self.rate("tracked") / self.rate("untracked")

    def cpu_ratio(self) -> float | None:
        """Tracked over untracked median rate per CPU second of the worker."""
        tracked = self.median("tracked", lambda run: run.cpu_rate)
        untracked = self.median("untracked", lambda run: run.cpu_rate)
        return None if tracked is None or untracked is None else tracked / untracked

    def overheads_us(
        self, clock: str = "wall", *, base: str = "untracked", kind: str = "tracked"
    ) -> list[float]:
        """Per round, the µs tracking added to each job: tracked minus untracked time a job.

        ``clock`` is ``wall`` (the worker's rate) or ``cpu`` (its rate per CPU second; no
        figure for a round without one). ``base`` and ``kind`` compare two other kinds:
        ``NO_HISTORY`` and ``tracked`` give what the job history adds.
        """
        overheads = []
        for untracked, tracked in zip(self.runs[base], self.runs[kind], strict=True):
            pair: tuple[float | None, float | None] = (untracked.rate, tracked.rate)
            if clock == "cpu":
                pair = (untracked.cpu_rate, tracked.cpu_rate)
            if pair[0] and pair[1]:
                overheads.append(1e6 / pair[1] - 1e6 / pair[0])
        return overheads

    def overhead_us(
        self, clock: str = "wall", *, base: str = "untracked", kind: str = "tracked"
    ) -> float | None:
        """The median over the rounds of :meth:`overheads_us` (``None``: none measured)."""
        overheads = self.overheads_us(clock, base=base, kind=kind)
        return statistics.median(overheads) if overheads else None

    def history_share(self, clock: str = "wall") -> float | None:
        """What the job history adds to tracking's cost a job: the median over the rounds of
        its µs/job (tracked minus tracked without history) over the median of tracking's
        without it (tracked without history minus untracked). ``None``: not measured."""
        history = self.overheads_us(clock, base=NO_HISTORY)
        tracking = self.overheads_us(clock, kind=NO_HISTORY)
        if not history or not tracking or statistics.median(tracking) <= 0:
            return None
        return statistics.median(history) / statistics.median(tracking)

    def cpu_us(self, kind: str) -> float | None:
        """The median CPU µs the worker spent a job, for ``kind`` (``None``: not measured)."""
        rate = self.median(kind, lambda run: run.cpu_rate)
        return 1e6 / rate if rate else None

    def enqueue_rate(self, kind: str) -> float:
        """The median rate of enqueuing ``kind``, in jobs per second."""
        value = self.median(kind, lambda run: run.enqueue_rate)
        assert value is not None
        return value

    def enqueue_us(self, kind: str, clock: str = "wall") -> float | None:
        """The median µs of one enqueue of ``kind`` (``cpu``: the benchmark's CPU time)."""
        if clock == "cpu":
            cpu = self.median(kind, lambda run: run.enqueue_cpu_s)
            return None if cpu is None else cpu * 1e6
        return 1e6 / self.enqueue_rate(kind)

    def job_us(self, kind: str, clock: str = "wall") -> float | None:
        """The median µs of one job of ``kind`` in the worker (``cpu``: its CPU time)."""
        return self.cpu_us(kind) if clock == "cpu" else 1e6 / self.rate(kind)

    def bare_us(self, write: str, clock: str = "wall") -> float | None:
        """The median µs of a bare ``insert`` or ``update`` over every batch of this size."""
        field = f"{write}_cpu_us" if clock == "cpu" else f"{write}_us"
        values = [
            getattr(run.bare, field)
            for kind in KINDS
            for run in self.runs[kind]
            if run.bare is not None
        ]
        return statistics.median(values) if values else None

    def limit(self, where: str, clock: str = "wall") -> Limit | None:
        """Tracking's cost against the floor, at ``enqueue`` or in the ``worker``.

        ``None`` when a figure is missing (the CPU of a forking worker).
        """
        writes, bare = (1, "insert") if where == "enqueue" else (2, "update")
        figure = self.enqueue_us if where == "enqueue" else self.job_us
        untracked, tracked = figure("untracked", clock), figure("tracked", clock)
        floor = self.bare_us(bare, clock)
        if untracked is None or tracked is None or floor is None:
            return None
        return Limit(untracked, tracked, writes * floor)


@dataclass(frozen=True, slots=True)
class Limit:
    """One operation, untracked and tracked, against the least it can cost tracked.

    Every figure is µs per job: ``floor`` is the bare writes the promise needs (one a
    ``created`` record, two a job run: ``started``, ``finished``).
    """

    untracked: float
    tracked: float
    floor: float

    @property
    def ratio(self) -> float:
        """Tracked over untracked rate."""
        return self.untracked / self.tracked

    @property
    def ceiling(self) -> float:
        """The best ratio tracking could reach: untracked / (untracked + bare writes)."""
        return self.untracked / (self.untracked + self.floor)

    @property
    def above_floor(self) -> float:
        """What immortus spends beyond the bare writes: tracked - untracked - floor."""
        return self.tracked - self.untracked - self.floor


@dataclass(slots=True)
class Section:
    """What one queue's measurement found."""

    key: str
    queue: str
    worker: str
    measures: dict[int, Measure]
    #: The store calls the tracked worker counted in its life, and the tracked jobs it ran
    #: (warm-up included); no calls when the worker cannot count them (a forking one).
    worker_store_calls: Counter[str] | None = None
    tracked_jobs_run: int = 0

    def runs(self, kind: str) -> Iterator[Run]:
        """Every measured run of ``kind``, at every count."""
        for measure in self.measures.values():
            yield from measure.runs[kind]

    def per_job(self, kind: str, counted: Callable[[Run], Counter[str]]) -> float:
        """The calls ``counted`` in each run of ``kind``, per job of those runs."""
        runs = list(self.runs(kind))
        jobs = sum(m.jobs * len(m.runs[kind]) for m in self.measures.values())
        return sum(sum(counted(run).values()) for run in runs) / jobs if runs else 0.0

    def store_round_trips(self) -> dict[str, float | None]:
        """Store calls per tracked job, while enqueuing and in the worker (``None``: uncounted)."""
        calls = self.worker_store_calls
        return {
            "enqueue": self.per_job("tracked", lambda run: run.enqueue_store_calls),
            "worker": None
            if calls is None or not self.tracked_jobs_run
            else sum(calls.values()) / self.tracked_jobs_run,
        }

    def redis_commands(self) -> dict[str, float]:
        """Redis commands per job, by where (enqueue, worker) and kind; empty if not in Redis."""
        return {
            f"{where} {kind}": self.per_job(kind, _redis_commands_at(where))
            for where in ("enqueue", "worker")
            for kind in KINDS
            if any(
                sum(counted.values())
                for run in self.runs(kind)
                for counted in run.redis_commands.values()
            )
        }

    def slope(self, clock: str = "wall") -> str:
        """Whether the µs/job (:meth:`Measure.overheads_us`) at the smallest and the largest
        count agree: ``flat`` when the two counts' ranges over the rounds overlap."""
        small, large = self.measures[min(self.measures)], self.measures[max(self.measures)]
        low, high = small.overheads_us(clock), large.overheads_us(clock)
        if not low or not high:
            return "-"
        if max(low) >= min(high) and max(high) >= min(low):
            return "flat"
        change = statistics.median(high) - statistics.median(low)
        return f"{'grows' if change > 0 else 'falls'} {abs(change):,.0f}"


def _redis_commands_at(where: str) -> Callable[[Run], Counter[str]]:
    return lambda run: run.redis_commands[where]
