"""What a group is: its aggregate answer (:class:`GroupStatus`), and the block jobs join it in.

A tracked job enqueued inside ``with immortus.group() as batch:`` (the same thread or asyncio
task) joins ``batch.group_id``: its first recorded event carries the id (read with
:func:`current_group` by the store strategy's ``job_enqueued``), and a job never changes group.
The stores build a :class:`GroupStatus` from the counters they keep; reading one, and joining a
job enqueued elsewhere, are :mod:`immortus.groups`'s, which asks the configured store.

A group's state, from its members: ``unknown`` with none; ``created`` while all are created;
``started`` while any is not completed (and one has started or ended); once every member is
completed, ``failed`` if any failed or was lost, ``cancelled`` if every member that did not
finish was cancelled, else ``finished``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Self

from immortus.status import JobError, State, isoformat, read_only
from immortus.validation import check_group_id

__all__ = ["GroupStatus", "current_group", "group"]

_current: ContextVar[str | None] = ContextVar("immortus_group", default=None)

_ENDED_BADLY: Final = (State.FAILED, State.LOST)


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupStatus:
    """A group's aggregate answer: what its members add up to now.

    Build one from a store's counters with :meth:`of`; :meth:`to_dict` is its wire body.
    ``jobs`` is read-only (a :class:`~immortus.status.ReadOnlyDict`).
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "jobs", read_only(self.jobs))  # frozen: set this way

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
