"""What each write does to its job's group, so a group's answer costs one read at any size.

A store with ``supports_groups`` keeps, per group, the members by state, the sum of the running
members' progress fractions, the first error and the latest update (:mod:`immortus.groups`),
and changes them in the same atomic write as the member's record, by the
:class:`GroupChange` that :func:`group_change` (a write) or :func:`group_gone` (a deletion)
returns. Like the dashboard's counters (:mod:`immortus.stores.counting`), members are counted
as stored until pruned.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from immortus.grouping import GroupStatus
from immortus.status import JobError, JobStatus, State

__all__ = [
    "ERROR_STATES",
    "MEMBER_STATES",
    "GroupChange",
    "GroupCounters",
    "Member",
    "answer",
    "answer_of",
    "group_change",
    "group_gone",
    "member",
    "merged",
    "running",
    "running_of",
]

#: The states a stored member can be in (each a counter of its group).
MEMBER_STATES: Final[tuple[State, ...]] = tuple(
    state for state in State if state is not State.UNKNOWN
)
#: A member reaching one of these states gives its group a first error if it has none.
ERROR_STATES: Final = frozenset({State.FAILED, State.LOST})


def running(status: JobStatus) -> float:
    """What a ``started`` member adds to its group's running sum: its progress fraction.

    ``current / total`` within 0 and 1 (a total of 0 is done: 1); 0 without a total, and for
    any other state (a completed member counts as 1 through the completed count instead).
    """
    progress = status.progress
    if progress is None:
        return 0.0
    return running_of(status.state, progress.current, progress.total)


def running_of(state: State, current: float | None, total: float | None) -> float:
    """:func:`running` from a record's state and progress columns."""
    if state is not State.STARTED or current is None or total is None:
        return 0.0
    if total == 0:
        return 1.0
    return min(max(current / total, 0.0), 1.0)


@dataclass(frozen=True, slots=True)
class Member:
    """What one stored record counts for in its group."""

    group_id: str
    state: State
    running: float = 0.0


def member(status: JobStatus | None) -> Member | None:
    """What ``status`` counts for in its group (``None``: no record, or in no group)."""
    if status is None or status.group_id is None:
        return None
    return Member(status.group_id, status.state, running(status))


@dataclass(frozen=True, slots=True)
class GroupChange:
    """What one write does to one group's counters.

    ``jobs``: ``state -> +n/-n``; ``running``: the change of the running sum; ``error``: the
    group's first error, if it has none yet; ``at``: the member's update time (epoch seconds),
    which the group keeps if later than its own.
    """

    group_id: str
    jobs: dict[State, int] = field(default_factory=dict)
    running: float = 0.0
    error: JobError | None = None
    at: float | None = None

    def __bool__(self) -> bool:
        return bool(self.jobs or self.running or self.error or self.at)

    def row(self) -> dict[str, Any]:
        """The change as one group row's columns: a count per member state, 0 for the rest."""
        error = self.error
        values: dict[str, Any] = {state.value: 0 for state in MEMBER_STATES}
        values.update({state.value: n for state, n in self.jobs.items()})
        values.update(
            group_id=self.group_id,
            running=self.running,
            error_type=None if error is None else error.type,
            error_message=None if error is None else error.message,
            updated_at=self.at,
        )
        return values


def _error(before: JobStatus | None, after: JobStatus) -> JobError | None:
    """The error ``after`` gives its group: on reaching failed or lost, type and message."""
    if after.state not in ERROR_STATES or after.error is None:
        return None
    if before is not None and before.state is after.state and before.group_id == after.group_id:
        return None
    return JobError(type=after.error.type, message=after.error.message)


def group_change(before: JobStatus | None, after: JobStatus) -> tuple[GroupChange, ...]:
    """What writing ``after`` over the record ``before`` (``None``: none) does to the groups.

    Both are records as stored. A record that joins a group (its first event naming one, or
    :func:`immortus.add_to_group`) is added to it with its state and running fraction; one
    already in it moves between states. Empty when neither is in a group.
    """
    old, new = member(before), member(after)
    changes: list[GroupChange] = []
    if old is not None and (new is None or new.group_id != old.group_id):
        changes.append(group_gone(old))  # not by apply(): a renewed record of another life
        old = None
    if new is None:
        return tuple(changes)
    jobs: Counter[State] = Counter({new.state: 1})
    if old is not None:
        jobs[old.state] -= 1
    moved = {state: n for state, n in jobs.items() if n}
    delta = new.running - (0.0 if old is None else old.running)
    changes.append(
        GroupChange(
            new.group_id,
            moved,
            delta,
            _error(before, after),
            None if after.updated_at is None else after.updated_at.timestamp(),
        )
    )
    return tuple(changes)


def merged(first: GroupChange, then: GroupChange) -> GroupChange:
    """One change doing what ``first`` then ``then`` do to the same group."""
    jobs = Counter(first.jobs)
    jobs.update(then.jobs)
    moments = [at for at in (first.at, then.at) if at is not None]
    return GroupChange(
        first.group_id,
        {state: n for state, n in jobs.items() if n},
        first.running + then.running,
        first.error or then.error,
        max(moments) if moments else None,
    )


def group_gone(gone: Member) -> GroupChange:
    """What deleting (pruning) a record that counted as ``gone`` does to its group."""
    return GroupChange(gone.group_id, {gone.state: -1}, -gone.running)


@dataclass(slots=True)
class _Group:
    jobs: Counter[State] = field(default_factory=Counter)
    running: float = 0.0
    error: JobError | None = None
    at: float | None = None


class GroupCounters:
    """The groups' counters in memory: what the memory store keeps (not thread-safe)."""

    def __init__(self) -> None:
        self._groups: dict[str, _Group] = {}

    def add(self, changes: tuple[GroupChange, ...]) -> None:
        """Apply one write's changes; a group whose members are all gone is forgotten."""
        for done in changes:
            group = self._groups.setdefault(done.group_id, _Group())
            group.jobs.update(done.jobs)
            group.running += done.running
            if group.error is None:
                group.error = done.error
            if done.at is not None and (group.at is None or done.at > group.at):
                group.at = done.at
            if not any(group.jobs.values()):
                del self._groups[done.group_id]

    def status(self, group_id: str) -> GroupStatus | None:
        """The group's answer, or ``None`` when no member of it is stored."""
        group = self._groups.get(group_id)
        if group is None:
            return None
        return answer(group_id, group.jobs, group.running, group.error, group.at)


def answer(
    group_id: str,
    jobs: Mapping[State, int],
    running_sum: float,
    error: JobError | None,
    at: float | None,
) -> GroupStatus | None:
    """The :class:`GroupStatus` a store's counters give (``None``: no member stored)."""
    status = GroupStatus.of(
        group_id,
        jobs,
        running=running_sum,
        first_error=error,
        updated_at=None if at is None else datetime.fromtimestamp(at, UTC),
    )
    return status if status.total else None


def answer_of(group_id: str, row: Mapping[Any, Any]) -> GroupStatus | None:
    """The answer of a group's stored row or hash (the columns of :meth:`GroupChange.row`).

    Values may be numbers or their text; a missing count, sum or time reads as none.
    """
    jobs = {state: int(row.get(state.value) or 0) for state in MEMBER_STATES}
    error_type, at = row.get("error_type"), row.get("updated_at")
    error = None
    if error_type is not None:
        error = JobError(type=error_type, message=row.get("error_message") or "")
    running_sum = float(row.get("running") or 0.0)
    return answer(group_id, jobs, running_sum, error, None if at is None else float(at))
