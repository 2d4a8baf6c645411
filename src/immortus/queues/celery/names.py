"""Which Celery tasks are tracked, and under which job class (an ``AsyncResult``'s too)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Final

from celery.result import AsyncResult  # type: ignore[import-untyped]

from immortus import config, runtime
from immortus.exceptions import ImmortusError
from immortus.jobs import JOB_CLASS_ATTRIBUTE
from immortus.queues._kit import tracked_name
from immortus.status import JobStatus

__all__ = ["PUBLISHED_KEPT", "identify", "job_class", "recorded", "remember"]

logger = logging.getLogger("immortus")

#: How many task ids this process remembers the job class of, from their enqueue (for
#: :func:`identify`: Celery's ``AsyncResult`` knows its task's name only from the backend).
PUBLISHED_KEPT: Final = 4096


class Published(runtime.LockedPart):
    """The job classes of the tasks enqueued here: an :mod:`immortus.runtime` part.

    Also the task names already warned about. A reset forgets both.
    """

    def __init__(self) -> None:
        super().__init__()
        self.job_classes: OrderedDict[str, str] = OrderedDict()  # task id -> job class, latest last
        self.warned: set[str] = set()

    def reset(self) -> None:
        with self.lock:
            self.job_classes.clear()
            self.warned.clear()


_state: Final = runtime.part(Published)


def job_class(name: object, task: object = None) -> str | None:
    """Return the task's job class when it is tracked, else ``None`` (the cheap early return)."""
    found = tracked_name(name)
    if found is not None:
        return found
    declared = getattr(getattr(task, "run", None), JOB_CLASS_ATTRIBUTE, None)
    if isinstance(declared, str) and isinstance(name, str) and name not in _state.warned:
        _state.warned.add(name)
        logger.warning(
            "immortus: Celery task %r is tracked as %r, so its hooks cannot find it; "
            "give it the task's name: @immortus.track(name=%r, queue='celery')",
            name,
            declared,
            name,
        )
    return None


def remember(job_id: str, job_class: str) -> None:
    """Remember the job class of a task enqueued here (the :data:`PUBLISHED_KEPT` latest)."""
    with _state.lock:
        _state.job_classes[job_id] = job_class
        _state.job_classes.move_to_end(job_id)
        while len(_state.job_classes) > PUBLISHED_KEPT:
            _state.job_classes.popitem(last=False)


def identify(job: object) -> tuple[str | None, str | None] | None:
    """Return the ``(job_id, job_class)`` of a Celery ``AsyncResult``; ``None`` for anything else.

    ``delay()`` and ``apply_async()`` return an ``AsyncResult`` that knows its task's name only
    from the result backend (and only with ``result_extended``). The job class is taken, in
    order, from the enqueue this process saw (the hooks remember the latest ones), from the
    meta the result already holds, then from immortus's store; ``None`` when none of them
    knows it, or the task is not tracked. Never reads the result backend.
    """
    if not isinstance(job, AsyncResult):
        return None
    job_id = job.id if isinstance(job.id, str) else None
    if job_id is None:
        return None, None
    with _state.lock:
        job_class = _state.job_classes.get(job_id)
    if job_class is None:
        cached = getattr(job, "_cache", None)
        name = cached.get("name") if isinstance(cached, Mapping) else getattr(job, "_name", None)
        job_class = tracked_name(name)
    if job_class is None:
        found = recorded(job_id)
        job_class = None if found is None else tracked_name(found.job_class)
    return job_id, job_class


def recorded(job_id: str) -> JobStatus | None:
    """Return immortus's record of the job; ``None`` when it has none or cannot be read."""
    try:
        store = config.get_store()
        return None if store is None else store.get(job_id)
    except ImmortusError:
        logger.exception("immortus: cannot read job %r from the store", job_id)
        return None
