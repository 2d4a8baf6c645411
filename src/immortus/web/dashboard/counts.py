"""The overview's numbers: jobs by state, queue and class, throughput, durations, losses.

Both the overview and the metrics read one :class:`Counts`, made from a :class:`Tally`: the
counters a store keeps as jobs change. A store that keeps them says so with
``supports_counts`` and answers :meth:`CountingStore.tally` in constant time, whatever the
number of jobs. For every other store, :func:`scan_tally` counts its ``limit`` most recent jobs
(one bounded read of its listing), and the counts say ``approximate`` when older jobs were left
out. The queue of a job class comes from the registry of tracked jobs, never from the store.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Final, Protocol, runtime_checkable

from immortus import registry
from immortus.status import JobStatus, State
from immortus.stores.base import MAX_PAGE_SIZE, Store
from immortus.stores.counting import DURATION_BOUNDS, Tally

__all__ = [
    "BUCKETS",
    "BUCKET_SECONDS",
    "DURATION_BOUNDS",
    "SCAN_LIMIT",
    "Bucket",
    "CountingStore",
    "Counts",
    "Tally",
    "queue_of",
    "read_counts",
    "scan_tally",
    "summarize",
]

#: Most recent jobs the fallback reads when the store keeps no counters.
SCAN_LIMIT: Final = 1000
#: The throughput chart: this many buckets of this many seconds, ending now (the last hour).
BUCKETS: Final = 12
BUCKET_SECONDS: Final = 300
#: The label of a job whose queue or class is not known.
NONE: Final = "-"
#: Endings that count as failures in the throughput chart.
_FAILURES: Final = frozenset({State.FAILED, State.LOST, State.CANCELLED})


@runtime_checkable
class CountingStore(Protocol):
    """A store that keeps a :class:`Tally` as jobs change, so reading it costs the same at any size.

    ``supports_counts`` is checked before any call (a subclass may inherit the method without
    the counters).
    """

    supports_counts: ClassVar[bool]

    def tally(self, *, since: datetime) -> Tally:
        """Return the counters now, with the ``ended`` minutes from ``since`` on.

        Raises:
            StoreUnavailable: the store cannot be reached.
        """
        ...


@dataclass(frozen=True, slots=True)
class Bucket:
    """Jobs that ended within one interval of the throughput chart."""

    start: datetime
    finished: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Counts:
    """What the overview and the metrics show, read at ``at``.

    ``by_queue`` and ``by_class`` map a queue or class to its jobs by state; ``approximate`` is
    True when the numbers cover only the ``counted`` most recent jobs.
    """

    at: datetime
    by_state: Mapping[State, int]
    by_queue: Mapping[str, Mapping[State, int]]
    by_class: Mapping[str, Mapping[State, int]]
    by_class_queue: Mapping[str, str]
    lost_last_hour: int
    buckets: tuple[Bucket, ...]
    durations: tuple[int, ...]
    duration_sum: float
    approximate: bool
    counted: int


def queue_of(job_class: str | None) -> str:
    """The queue that runs ``job_class``, from the registry of tracked jobs, else ``"-"``."""
    tracked = registry.lookup(job_class) if job_class else None
    return (tracked.queue if tracked is not None else None) or NONE


def read_counts(store: Store, *, now: datetime | None = None, limit: int = SCAN_LIMIT) -> Counts:
    """The counts of ``store``: from its counters when it keeps them, else from a bounded scan.

    Raises:
        StoreUnavailable: the store cannot be reached.
    """
    now = now or datetime.now(UTC)
    since = now - timedelta(seconds=BUCKETS * BUCKET_SECONDS)
    if store.supports_counts:  # every store immortus ships keeps them
        return summarize(store.tally(since=since), now=now)
    return summarize(scan_tally(store, since=since, limit=limit), now=now)


def scan_tally(store: Store, *, since: datetime, limit: int = SCAN_LIMIT) -> Tally:
    """Count the ``limit`` most recent jobs of ``store``: one bounded read of its listing.

    Raises:
        StoreUnavailable: the store cannot be reached.
    """
    jobs: list[JobStatus] = []
    cursor: str | None = None
    more = True
    while more and len(jobs) < limit:
        page = store.list_jobs(limit=min(MAX_PAGE_SIZE, limit - len(jobs)), cursor=cursor)
        jobs.extend(page.jobs)
        cursor = page.next_cursor
        more = cursor is not None
    return tally_jobs(jobs, since=since, complete=not more)


def tally_jobs(jobs: list[JobStatus], *, since: datetime, complete: bool) -> Tally:
    """The :class:`Tally` of ``jobs`` (all the store's when ``complete``)."""
    by_class_state: Counter[tuple[str | None, State]] = Counter()
    ended: dict[datetime, Counter[State]] = {}
    durations = [0] * (len(DURATION_BOUNDS) + 1)
    total = 0.0
    for job in jobs:
        by_class_state[job.job_class, job.state] += 1
        end = job.finished_at
        if end is None or not job.completed:
            continue
        if job.started_at is not None and end >= job.started_at:
            seconds = (end - job.started_at).total_seconds()
            durations[bisect.bisect_left(DURATION_BOUNDS, seconds)] += 1
            total += seconds
        if end >= since:
            minute = end.astimezone(UTC).replace(second=0, microsecond=0)
            ended.setdefault(minute, Counter())[job.state] += 1
    return Tally(
        jobs=dict(by_class_state),
        ended={minute: dict(states) for minute, states in ended.items()},
        durations=tuple(durations),
        duration_sum=total,
        complete=complete,
        counted=len(jobs),
    )


def summarize(tally: Tally, *, now: datetime) -> Counts:
    """The :class:`Counts` shown at ``now`` from a store's (or a scan's) ``tally``."""
    by_state: Counter[State] = Counter()
    by_queue: dict[str, Counter[State]] = {}
    by_class: dict[str, Counter[State]] = {}
    for (job_class, state), number in tally.jobs.items():
        by_state[state] += number
        by_queue.setdefault(queue_of(job_class), Counter())[state] += number
        by_class.setdefault(job_class or NONE, Counter())[state] += number
    first = now - timedelta(seconds=BUCKETS * BUCKET_SECONDS)
    finished = [0] * BUCKETS
    failed = [0] * BUCKETS
    lost = 0
    for minute, states in tally.ended.items():
        if not first <= minute <= now:
            continue
        slot = min(BUCKETS - 1, int((minute - first).total_seconds() // BUCKET_SECONDS))
        lost += states.get(State.LOST, 0)
        finished[slot] += states.get(State.FINISHED, 0)
        failed[slot] += sum(number for state, number in states.items() if state in _FAILURES)
    return Counts(
        at=now,
        by_state=dict(by_state),
        by_queue={name: dict(states) for name, states in sorted(by_queue.items())},
        by_class={name: dict(states) for name, states in sorted(by_class.items())},
        by_class_queue={name: queue_of(None if name == NONE else name) for name in by_class},
        lost_last_hour=lost,
        buckets=tuple(
            Bucket(first + timedelta(seconds=i * BUCKET_SECONDS), finished[i], failed[i])
            for i in range(BUCKETS)
        ),
        durations=tally.durations,
        duration_sum=tally.duration_sum,
        approximate=not tally.complete,
        counted=tally.counted,
    )
