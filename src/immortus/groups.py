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

A group's state follows the rule of :mod:`immortus.grouping`, where :class:`GroupStatus` and
:class:`group` live (re-exported here). A pruned member leaves its group's counts.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from immortus.exceptions import ConfigurationError
from immortus.grouping import GroupStatus, current_group, group
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
