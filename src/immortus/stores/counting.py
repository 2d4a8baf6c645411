"""The counters a store keeps as jobs change, so the dashboard's numbers cost the same at any size.

A store with ``supports_counts`` applies, in the atomic write of every ``record``,
``reap_lost``, reviving ``beat`` and ``prune``, the :class:`Change` that :func:`change` (a
write) or :func:`gone` (a deletion) returns, and answers ``tally`` with a :class:`Tally`.
Records are counted **as stored** until pruned: one past its TTL is counted until ``prune``
(or Redis) removes it, and a lapsed lease counts ``started`` until ``reap_lost`` writes it
``lost`` (``immortus prune`` runs both).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from immortus.status import JobStatus, State
from immortus.stores.group_counts import GroupChange, Member, group_change, group_gone

__all__ = [
    "DURATION_BOUNDS",
    "ENDED_WINDOW",
    "NO_CLASS",
    "Change",
    "Counters",
    "Tally",
    "change",
    "duration_bucket",
    "gone",
    "minute_of",
    "tally_of",
]

#: Upper bounds, in seconds, of the attempt-duration histogram (a last bucket holds the rest).
DURATION_BOUNDS: Final = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 3600.0)
#: How long, in seconds, the per-minute ``ended`` counters are kept.
ENDED_WINDOW: Final = 24 * 3600
#: The ``job_class`` key stores write for a job without one (keys cannot be NULL).
NO_CLASS: Final = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tally:
    """The counters a store keeps as jobs change (or a scan's count of some jobs).

    - ``jobs``: records by ``(job_class, state)`` (``job_class`` ``None`` for none);
    - ``ended``: for each minute since ``since`` (its start, UTC; at most
      :data:`ENDED_WINDOW` back), the records that reached each completed state in it:
      ``{minute: {state: n}}`` (minutes with none may be absent);
    - ``durations``: attempts ended over the store's life per :data:`DURATION_BOUNDS` bucket
      (one more for longer ones), and ``duration_sum`` their total seconds;
    - ``complete``: False when only some of the store's jobs were counted.
    """

    jobs: Mapping[tuple[str | None, State], int]
    ended: Mapping[datetime, Mapping[State, int]]
    durations: tuple[int, ...] = (0,) * (len(DURATION_BOUNDS) + 1)
    duration_sum: float = 0.0
    complete: bool = True
    counted: int = 0


@dataclass(frozen=True, slots=True)
class Change:
    """What one write does to the counters.

    ``jobs``: ``(job_class or NO_CLASS, state) -> +n/-n``; ``ended``: ``(minute epoch, state)``
    once per ending; ``durations``: ``(bucket, seconds)`` once per ended attempt; ``groups``:
    what it does to the record's group (:mod:`immortus.stores.group_counts`), for stores with
    ``supports_groups``.
    """

    jobs: dict[tuple[str, State], int] = field(default_factory=dict)
    ended: tuple[tuple[int, State], ...] = ()
    durations: tuple[tuple[int, float], ...] = ()
    groups: tuple[GroupChange, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.jobs or self.ended or self.durations or self.groups)


def minute_of(seconds: float) -> int:
    """The start (epoch seconds) of the minute that holds ``seconds``."""
    return int(seconds // 60) * 60


def duration_bucket(seconds: float) -> int:
    """The :data:`DURATION_BOUNDS` bucket of an attempt that lasted ``seconds``."""
    return bisect.bisect_left(DURATION_BOUNDS, seconds)


def _key(status: JobStatus) -> tuple[str, State]:
    return (status.job_class or NO_CLASS, status.state)


def change(before: JobStatus | None, after: JobStatus) -> Change:
    """What writing ``after`` over the record ``before`` (``None``: none) does to the counters.

    Both are records as stored (not as read). Reaching a completed state it was not in counts
    one ending in the minute of ``finished_at``, and its attempt's duration.
    """
    jobs: Counter[tuple[str, State]] = Counter()
    if before is not None:
        jobs[_key(before)] -= 1
    jobs[_key(after)] += 1
    moved = {key: number for key, number in jobs.items() if number}
    groups = group_change(before, after)
    ends = after.state.completed and (before is None or before.state is not after.state)
    if not ends or after.finished_at is None:
        return Change(moved, groups=groups)
    end = after.finished_at.timestamp()
    ended = ((minute_of(end), after.state),)
    start = after.started_at
    if start is None or after.finished_at < start:
        return Change(moved, ended, groups=groups)
    seconds = (after.finished_at - start).total_seconds()
    return Change(moved, ended, ((duration_bucket(seconds), seconds),), groups)


def gone(job_class: str | None, state: State, group: Member | None = None) -> Change:
    """What deleting (pruning) a record of ``job_class`` in ``state`` does to the counters.

    ``group``: what the record counted for in its group (:func:`group_counts.member`).
    """
    groups = () if group is None else (group_gone(group),)
    return Change({(job_class or NO_CLASS, state): -1}, groups=groups)


class Counters:
    """The counters themselves, in memory: what the memory store keeps (not thread-safe)."""

    def __init__(self) -> None:
        self.jobs: Counter[tuple[str, State]] = Counter()
        self.ended: dict[int, Counter[State]] = {}
        self.durations = [0] * (len(DURATION_BOUNDS) + 1)
        self.duration_sum = 0.0

    def add(self, done: Change) -> None:
        """Apply one write's :class:`Change`, and forget minutes past :data:`ENDED_WINDOW`."""
        for key, number in done.jobs.items():
            self.jobs[key] += number
            if not self.jobs[key]:
                del self.jobs[key]
        for minute, state in done.ended:
            self.ended.setdefault(minute, Counter())[state] += 1
            if len(self.ended) > ENDED_WINDOW // 60 + 60:  # now and then, not at every ending
                oldest = max(self.ended) - ENDED_WINDOW
                for old in [old for old in self.ended if old < oldest]:
                    del self.ended[old]
        for bucket, seconds in done.durations:
            self.durations[bucket] += 1
            self.duration_sum += seconds

    def tally(self, *, since: datetime) -> Tally:
        """The counters now, with the ``ended`` minutes from ``since`` on."""
        return tally_of(
            ((job_class, state, n) for (job_class, state), n in self.jobs.items()),
            (
                (minute, state, n)
                for minute, states in self.ended.items()
                for state, n in states.items()
            ),
            enumerate(self.durations),
            self.duration_sum,
            since=since,
        )


def tally_of(
    jobs: Iterable[tuple[Any, Any, Any]],
    ended: Iterable[tuple[Any, Any, Any]],
    durations: Iterable[tuple[Any, Any]],
    duration_sum: float,
    *,
    since: datetime,
) -> Tally:
    """The :class:`Tally` of counters a store read back, as rows or fields of any number type.

    ``jobs``: ``(job_class or NO_CLASS, state, n)``; ``ended``: ``(minute epoch, state, n)``,
    kept from ``since``'s minute on; ``durations``: ``(bucket, n)``. Zero ``jobs`` are left out.
    """
    by_class = {(job_class or None, State(state)): int(n) for job_class, state, n in jobs if int(n)}
    first = minute_of(since.timestamp())
    by_minute: dict[datetime, dict[State, int]] = {}
    for minute, state, n in ended:
        if int(minute) >= first:
            moment = datetime.fromtimestamp(int(minute), UTC)
            by_minute.setdefault(moment, {})[State(state)] = int(n)
    histogram = [0] * (len(DURATION_BOUNDS) + 1)
    for bucket, n in durations:
        histogram[int(bucket)] = int(n)
    return Tally(
        jobs=by_class,
        ended=by_minute,
        durations=tuple(histogram),
        duration_sum=float(duration_sum),
        counted=sum(by_class.values()),
    )
