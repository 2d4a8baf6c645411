"""Measurement for the store scaling benchmark: timed calls, interleaved across sizes.

:func:`bench_backend` seeds one store per data set, verifies them, warms them up, then times
every operation (:data:`METRICS`) on all of them in alternation (:func:`_interleave`), ROUND
calls at a time (whole bursts for ``record_burst``), each answer checked outside the timed
span. The raw durations land in one :class:`Result` per store and size; :func:`percentile`
summarises them.
"""

from __future__ import annotations

import gc
import math
import random
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bench.common import BenchError, log
from bench.stores.backends import Backend, verify
from bench.stores.common import PAGE, deep_page, go_on
from bench.stores.dataset import Dataset
from immortus.exceptions import CorruptRecord
from immortus.status import JobStatus, Progress
from immortus.stores.base import JobPage, Store
from immortus.transitions import Event, EventKind

LOOKUPS: Final = 3_000  # get() of existing ids, and again of unknown ids
WRITES: Final = 2_000  # record() of progress events, each on a random running job
#: record() of BURST_LENGTH successive progress events on each of BURST_JOBS running jobs.
BURST_JOBS: Final = 100
BURST_LENGTH: Final = 20
BATCHES: Final = 300  # get_many(100) calls, and list_jobs calls of each kind
BATCH_IDS: Final = 100
WARMUP_LOOKUPS: Final = 500
WARMUP_CALLS: Final = 30
WARMUP_WRITES: Final = 100
WARMUP_BURSTS: Final = 5
#: Seconds a measured operation may take in all (full mode; quick mode gives it QUICK_BUDGET_S);
#: sampling stops early, never under MIN_SAMPLES.
BUDGET_S: Final = 30.0
QUICK_BUDGET_S: Final = 10.0
MIN_SAMPLES: Final = 100
#: Calls of one size in a row before the next size's turn.
ROUND: Final = 50
#: The same for bursts, rounded down to whole bursts: a size's turn never splits one.
BURST_ROUND: Final = max(1, ROUND // BURST_LENGTH) * BURST_LENGTH


@dataclass(slots=True)
class Result:
    """The raw durations (ns) measured for one store at one size."""

    store: str
    size: int
    seed_s: float
    deep_page: int
    footprint: int | None = None
    get_ns: list[int] = field(default_factory=list)
    unknown_ns: list[int] = field(default_factory=list)
    get_many_ns: list[int] = field(default_factory=list)
    list_first_ns: list[int] = field(default_factory=list)
    list_deep_ns: list[int] = field(default_factory=list)
    record_ns: list[int] = field(default_factory=list)
    record_burst_ns: list[int] = field(default_factory=list)

    @property
    def writes_per_s(self) -> float:
        """Progress events recorded per second, back to back, each on a random running job."""
        return len(self.record_ns) / (sum(self.record_ns) / 1e9)

    @property
    def burst_writes_per_s(self) -> float:
        """Progress events recorded per second, back to back, in bursts on one job at a time."""
        return len(self.record_burst_ns) / (sum(self.record_burst_ns) / 1e9)

    def summary(self) -> dict[str, Any]:
        """Percentiles of every measurement, for the JSON report."""
        out: dict[str, Any] = {
            "size": self.size,
            "seed_s": round(self.seed_s, 3),
            "deep_page": self.deep_page,
            "footprint_bytes": self.footprint,
            "writes_per_s": round(self.writes_per_s, 1),
            "burst_writes_per_s": round(self.burst_writes_per_s, 1),
        }
        for name in METRICS:
            out[name] = _stats(getattr(self, f"{name}_ns"))
        return out


METRICS: Final = (
    "get",
    "unknown",
    "get_many",
    "list_first",
    "list_deep",
    "record",
    "record_burst",
)


def percentile(samples: Sequence[int], pct: float) -> int:
    """Nearest-rank percentile of ``samples``."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def _stats(samples: Sequence[int]) -> dict[str, float]:
    us = 1_000
    return {
        "samples": len(samples),
        "p50_us": percentile(samples, 50) / us,
        "p90_us": percentile(samples, 90) / us,
        "p99_us": percentile(samples, 99) / us,
        "max_us": max(samples) / us,
        "mean_us": round(statistics.fmean(samples) / us, 3),
    }


@dataclass(eq=False, slots=True)
class _Task:
    """Calls of one operation on one store: ``call(arg)`` for each of ``args``."""

    label: str
    call: Callable[[Any], Any]
    args: Sequence[Any]
    check: Callable[[Any, Any], bool]
    #: Calls in a row before the next task's turn.
    per_turn: int = ROUND
    durations: list[int] = field(default_factory=list)


def _interleave(tasks: Sequence[_Task], what: str, budget_s: float = BUDGET_S) -> None:
    """Time every task's calls, ``per_turn`` calls of each task in turn, reversing the order each
    round.

    The sizes share every stretch of time, so a machine that slows down for a while (a noisy
    neighbour on a VM) slows them alike and their ratio holds. Each answer is checked outside
    the timed span. Stops early once ``budget_s`` is spent and every task has MIN_SAMPLES.
    """
    gc.collect()
    clock = time.perf_counter_ns
    deadline = clock() + int(budget_s * 1e9)
    turn = 0
    while any(len(task.durations) < len(task.args) for task in tasks):
        for task in tasks if turn % 2 == 0 else tasks[::-1]:
            done = len(task.durations)
            for arg in task.args[done : done + task.per_turn]:
                start = clock()
                answer = task.call(arg)
                end = clock()
                task.durations.append(end - start)
                if not task.check(arg, answer):
                    raise BenchError(f"{task.label} {what}({arg!r}) answered {answer!r}")
        turn += 1
        go_on()
        if clock() > deadline and min(len(task.durations) for task in tasks) >= MIN_SAMPLES:
            counts = ", ".join(f"{task.label}: {len(task.durations)}" for task in tasks)
            log(f"  {what}: time budget spent after {counts} calls")
            return


@dataclass(eq=False)
class Subject:
    """One store seeded with one data set, and what is measured on it."""

    data: Dataset
    store: Store
    result: Result
    deep_cursor: str | None = None
    rng: random.Random = field(init=False)
    #: Running jobs kept for ``record_burst``, and the others, for every other write.
    burst_jobs: list[str] = field(init=False)
    write_jobs: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.data.seed}/measure/{self.data.size}")
        # Nothing else writes to the burst jobs, so at every size each burst starts on a job as
        # seeded: its first event moves the job's expiry, and the next ones need not.
        started = self.data.started
        burst_rng = random.Random(f"{self.data.seed}/burst/{self.data.size}")
        self.burst_jobs = burst_rng.sample(started, min(BURST_JOBS, len(started) // 2))
        reserved = set(self.burst_jobs)
        self.write_jobs = [job_id for job_id in started if job_id not in reserved]

    @property
    def label(self) -> str:
        return f"{self.result.store} {self.data.label}"

    def progress_events(self, first: int, count: int) -> list[Event]:
        """``count`` progress events on random running jobs, each a real change."""
        targets = [_fresh(self.rng.choice(self.write_jobs)) for _ in range(count)]
        return [
            Event(
                kind=EventKind.PROGRESS,
                job_id=job_id,
                progress=Progress(current=first + k, total=10**6, message=f"step {first + k}"),
            )
            for k, job_id in enumerate(targets)
        ]

    def burst_events(self, jobs: Sequence[str]) -> list[Event]:
        """BURST_LENGTH progress events (1 to BURST_LENGTH of BURST_LENGTH) on each of ``jobs``,
        one job after the other, as a job that reports its progress as it goes."""
        return [
            Event(
                kind=EventKind.PROGRESS,
                job_id=job_id,
                progress=Progress(current=k, total=BURST_LENGTH, message=f"step {k}"),
            )
            for job_id in map(_fresh, jobs)  # one string per job, as a worker holds it
            for k in range(1, BURST_LENGTH + 1)
        ]

    def warm_up(self) -> None:
        """Open connections, load scripts and caches before anything is timed."""
        store, ids = self.store, self.data.ids
        for job_id in self.rng.sample(ids, min(WARMUP_LOOKUPS, len(ids))):
            store.get(job_id)
        for _ in range(WARMUP_CALLS):
            store.get_many(self.rng.sample(ids, BATCH_IDS))
            store.list_jobs(limit=PAGE)
            store.list_jobs(limit=PAGE, cursor=self.deep_cursor)
        for event in self.progress_events(1_000, WARMUP_WRITES):
            store.record(event)
        for event in self.burst_events(self.rng.sample(self.write_jobs, WARMUP_BURSTS)):
            store.record(event)


def _fresh(job_id: str) -> str:
    """A new string equal to ``job_id``, as a request would bring it: no cached hash, no identity
    with the store's own key, not kept warm in the CPU caches by the benchmark's id list."""
    return job_id.encode().decode()


def _found(job_id: str, status: JobStatus | None) -> bool:
    return status is not None and status.job_id == job_id


def _absent(_: str, status: JobStatus | None) -> bool:
    return status is None


def _all_found(batch: Sequence[str], found: dict[str, JobStatus]) -> bool:
    return len(found) == len(batch)


def _recorded(event: Event, status: JobStatus | None) -> bool:
    return status is not None and status.progress == event.progress


def _tasks(subjects: Sequence[Subject], metric: str) -> list[_Task]:
    """The calls that measure ``metric`` on each subject."""
    tasks = []
    for subject in subjects:
        store, data, rng = subject.store, subject.data, subject.rng
        if metric == "get":
            lookups = [_fresh(job_id) for job_id in rng.choices(data.ids, k=LOOKUPS)]
            task = _Task(subject.label, store.get, lookups, _found)
        elif metric == "unknown":
            unknown = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(LOOKUPS)]
            task = _Task(subject.label, store.get, unknown, _absent)
        elif metric == "get_many":
            batches = [list(map(_fresh, rng.sample(data.ids, BATCH_IDS))) for _ in range(BATCHES)]
            task = _Task(subject.label, store.get_many, batches, _all_found)
        elif metric == "list_first":
            task = _Task(subject.label, _lister(store), [None] * BATCHES, _page(data.ids[-1]))
        elif metric == "list_deep":
            first = data.newest((subject.result.deep_page - 1) * PAGE + 1)[-1]
            cursors = [subject.deep_cursor] * BATCHES
            task = _Task(subject.label, _lister(store), cursors, _page(first))
        elif metric == "record":
            events = subject.progress_events(10_000, WRITES)
            task = _Task(subject.label, store.record, events, _recorded)
        else:
            events = subject.burst_events(subject.burst_jobs)
            task = _Task(subject.label, store.record, events, _recorded, BURST_ROUND)
        tasks.append(task)
    return tasks


def _lister(store: Store) -> Callable[[str | None], JobPage]:
    return lambda cursor: store.list_jobs(limit=PAGE, cursor=cursor)


def _page(first: str) -> Callable[[str | None, JobPage], bool]:
    return lambda _, page: len(page.jobs) == PAGE and page.jobs[0].job_id == first


def bench_backend(
    backend: Backend, datasets: Sequence[Dataset], *, budget_s: float = BUDGET_S
) -> dict[int, Result]:
    """Seed one store per data set, verify them, then measure them all, interleaved.

    ``budget_s`` is the time each operation may take over every size (see :func:`_interleave`).
    """
    subjects: list[Subject] = []
    try:
        for data in datasets:
            store = backend.open(data)
            started = time.perf_counter()
            try:
                expected = backend.seed(store, data)
            except BaseException:
                store.close()
                raise
            seed_s = time.perf_counter() - started
            footprint = backend.footprint(store)
            result = Result(backend.name, data.size, seed_s, deep_page(data.size), footprint)
            subjects.append(Subject(data, store, result))
            size = "" if footprint is None else f" ({footprint / 2**20:,.1f} MiB)"
            log(f"{backend.name} {data.label}: seeded in {seed_s:.1f} s{size}")
            try:
                subjects[-1].deep_cursor = verify(store, data, expected)
            except CorruptRecord as exc:
                raise BenchError(f"{backend.name} cannot read the seeded records: {exc}") from exc
        started = time.perf_counter()
        for subject in subjects:
            subject.warm_up()
        for metric in METRICS:
            tasks = _tasks(subjects, metric)
            _interleave(tasks, metric, budget_s)
            for subject, task in zip(subjects, tasks, strict=True):
                setattr(subject.result, f"{metric}_ns", task.durations)
            go_on()
        log(f"{backend.name}: verified and measured in {time.perf_counter() - started:.1f} s")
        return {subject.data.size: subject.result for subject in subjects}
    finally:
        for subject in subjects:
            subject.store.close()
        subjects.clear()
        try:
            backend.wipe()
        except Exception as exc:  # noqa: BLE001 - the servers and their files go at exit anyway
            log(f"could not wipe the {backend.name} stores: {exc}")
        gc.collect()
