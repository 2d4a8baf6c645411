"""Groups: one answer for a set of tracked jobs, from any queue, whatever its size.

Jobs enqueued inside ``with immortus.group() as batch:`` (the same thread or asyncio task) join
``batch.group_id``: their first recorded event carries it, and a job never changes group. A job
enqueued elsewhere joins with :func:`add_to_group`. The store keeps each group's counters in the
same atomic write as each member's record, so :func:`group_status` reads one key or one row,
never the members:

- ``jobs``: members by state, as stored (a member whose worker's lease ran out counts
  ``started`` until ``immortus prune`` writes it ``lost``);
- ``total`` and ``completed``: members recorded, and those in a completed state;
- ``progress``: each member counts 1 when completed, its progress fraction while ``started``
  (``current / total``; 0 without a total), 0 otherwise, over ``total``;
- ``first_error``: the error of the first member that reached ``failed`` or ``lost``
  (type and message; the traceback stays with the member's record).

A group's state, from its members: ``unknown`` with none; ``created`` while all are created;
``started`` while any is not completed (and one has started or ended); once every member is
completed, ``failed`` if any failed or was lost, ``cancelled`` if every member that did not
finish was cancelled, else ``finished``. A pruned member leaves its group's counts.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Self

from immortus.exceptions import ConfigurationError
from immortus.status import JobError, State, isoformat
from immortus.validation import check_group_id, check_job_class, check_job_id

__all__ = [
    "GroupStatus",
    "add_to_group",
    "agroup_status",
    "current_group",
    "group",
    "group_status",
]

if TYPE_CHECKING:
    from immortus.stores.base import Store

_current: ContextVar[str | None] = ContextVar("immortus_group", default=None)

_ENDED_BADLY: Final = (State.FAILED, State.LOST)


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupStatus:
    """A group's aggregate answer: what its members add up to now.

    Build one from a store's counters with :meth:`of`; :meth:`to_dict` is its wire body.
    """

    group_id: str
    #: Members by state (states with none may be absent).
    jobs: Mapping[State, int] = field(default_factory=dict)
    #: Members recorded so far.
    total: int = 0
    #: Members in a completed state (finished, failed, cancelled, lost).
    completed: int = 0
    #: The combined fraction, 0 to 1; ``None`` without members.
    progress: float | None = None
    #: The error of the first member that failed or was lost (type and message only).
    first_error: JobError | None = None
    updated_at: datetime | None = None

    @classmethod
    def of(
        cls,
        group_id: str,
        jobs: Mapping[State, int],
        *,
        running: float = 0.0,
        first_error: JobError | None = None,
        updated_at: datetime | None = None,
    ) -> GroupStatus:
        """The answer from a store's counters: ``jobs`` by state and the ``running`` sum.

        ``running`` is the sum of the progress fractions of the members now ``started``.
        """
        kept = {state: n for state, n in jobs.items() if n > 0}
        total = sum(kept.values())
        completed = sum(n for state, n in kept.items() if state.completed)
        progress: float | None = None
        if total:
            progress = 1.0 if completed == total else (completed + max(running, 0.0)) / total
            progress = min(max(progress, completed / total), 1.0)
        return cls(
            group_id=group_id,
            jobs=kept,
            total=total,
            completed=completed,
            progress=progress,
            first_error=first_error,
            updated_at=updated_at,
        )

    @classmethod
    def unknown(cls, group_id: str) -> GroupStatus:
        """The answer for a group nobody recorded a member of."""
        return cls(group_id=group_id)

    @property
    def state(self) -> State:
        """The group's state, by the rule in this module's docstring."""
        if not self.total:
            return State.UNKNOWN
        jobs = self.jobs
        if self.completed < self.total:
            return State.CREATED if jobs.get(State.CREATED, 0) == self.total else State.STARTED
        if any(jobs.get(state, 0) for state in _ENDED_BADLY):
            return State.FAILED
        if jobs.get(State.CANCELLED, 0) and not jobs.get(State.FINISHED, 0):
            return State.CANCELLED
        return State.FINISHED

    def to_dict(self) -> dict[str, Any]:
        """Return the wire body.

        ``{"group_id", "status", "total", "completed", "progress", "jobs", "error",
        "updated_at"}``: ``status`` is the group's state; ``completed`` counts completed members;
        ``progress`` is ``{"fraction", "percent"}`` (``null`` without members); ``jobs`` maps
        each state with members to their number; ``error`` is the first error's
        ``{"type", "message"}`` or ``null``.
        """
        progress = self.progress
        return {
            "group_id": self.group_id,
            "status": self.state.value,
            "total": self.total,
            "completed": self.completed,
            "progress": None
            if progress is None
            else {"fraction": progress, "percent": round(progress * 100, 2)},
            "jobs": {state.value: n for state, n in self.jobs.items() if n},
            "error": None if self.first_error is None else self.first_error.to_dict(),
            "updated_at": isoformat(self.updated_at),
        }


class group:  # noqa: N801 - used as a function: ``with immortus.group():``
    """Put every tracked job enqueued inside the block in one group.

    ``group_id`` ``None`` makes a fresh random id (32 hex characters). The group follows the
    block's thread or asyncio task (a :class:`~contextvars.ContextVar`); groups nest, and the
    innermost wins. Entering and leaving never do I/O: the id travels on each member's first
    event.

    Raises:
        InvalidInput: ``group_id`` is malformed (same rules as a job id).
    """

    def __init__(self, group_id: str | None = None) -> None:
        self.group_id: str = uuid.uuid4().hex if group_id is None else check_group_id(group_id)
        self._token: Token[str | None] | None = None

    def __enter__(self) -> Self:
        self._token = _current.set(self.group_id)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None

    def __repr__(self) -> str:
        return f"immortus.group({self.group_id!r})"


def current_group() -> str | None:
    """The id of the group the jobs enqueued here now join, or ``None`` outside a group."""
    return _current.get()


def _store() -> Store:
    """The store of the strategy that answers for jobs of no class (where groups are kept).

    Raises:
        ConfigurationError: that strategy keeps no store, or its store keeps no groups.
    """
    from immortus.finder import find_strategy  # noqa: PLC0415 - finder imports the queues' world
    from immortus.store_strategy import StoreStrategy  # noqa: PLC0415

    target = find_strategy(None).hook_target
    if not isinstance(target, StoreStrategy):
        raise ConfigurationError(
            "groups are kept by the store of the store strategy; the configured strategy "
            f"{type(target).__qualname__} keeps no store"
        )
    store = target.store
    if not store.supports_groups:
        raise ConfigurationError(f"{type(store).__qualname__} keeps no groups")
    return store


def group_status(group_id: str) -> GroupStatus:
    """Return the group's aggregate answer from the configured store (one read, any size).

    A group with no recorded member reads ``total`` 0 and state ``unknown``.

    Raises:
        InvalidInput: ``group_id`` is malformed (checked before any I/O).
        ConfigurationError: the configured strategy keeps no store (store tracking is off, or
            a global strategy of its own answers for jobs), or its store keeps no groups.
        StoreUnavailable: the store cannot be reached.
    """
    check_group_id(group_id)
    return _store().group(group_id) or GroupStatus.unknown(group_id)


async def agroup_status(group_id: str) -> GroupStatus:
    """Async twin of :func:`group_status` (asks the store in a worker thread)."""
    check_group_id(group_id)
    return await asyncio.to_thread(group_status, group_id)


def add_to_group(group_id: str, job_id: str, job_class: str | None = None) -> None:
    """Put a job enqueued elsewhere in ``group_id``; record it in the configured store.

    A job that already belongs to a group stays in it. A job the store has no record of yet is
    recorded ``created``.

    Raises:
        InvalidInput: a name is malformed (checked before any I/O).
        ConfigurationError: as :func:`group_status`.
        StoreUnavailable: the store cannot be reached; nothing was recorded.
    """
    from immortus.transitions import Event, EventKind  # noqa: PLC0415 - light, but keep order

    check_group_id(group_id)
    check_job_id(job_id)
    if job_class is not None:
        check_job_class(job_class)
    # An empty meta event changes nothing but the group: no time is claimed for the job.
    event = Event(
        kind=EventKind.META, job_id=job_id, job_class=job_class, meta={}, group_id=group_id
    )
    _store().record(event)
