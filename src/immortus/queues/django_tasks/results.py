"""A Django ``TaskResult`` read as an immortus :class:`~immortus.status.JobStatus`.

=================================  ===============  =============================================
Django's ``TaskResultStatus``      immortus state   notes
=================================  ===============  =============================================
``READY`` (backport: ``NEW``)      ``created``      enqueued, or deferred with ``run_after``
``RUNNING``                        ``started``      also when its worker died (no heartbeat)
``SUCCESSFUL`` (backport:          ``finished``
``SUCCEEDED``, ``COMPLETE``)
``FAILED``                         ``failed``       the error's type and the last line of its
                                                    traceback; no retry ever follows
``FAILED`` by ``SystemExit`` or    ``cancelled``    the worker was stopped in the middle of it
``KeyboardInterrupt``
``FAILED`` by                      ``cancelled``    it stopped on a cancel request (its
``immortus.JobCancelled``                           ``progress()`` raised it)
=================================  ===============  =============================================
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from immortus.cancel_requests import JobCancelled
from immortus.status import JobError, JobStatus, State

__all__ = ["STATES", "error_of", "is_interruption", "status_from", "status_of"]

#: Django's result statuses (and the backport's older names) → immortus's states.
STATES: Final = {
    "READY": State.CREATED,
    "NEW": State.CREATED,
    "RUNNING": State.STARTED,
    "SUCCESSFUL": State.FINISHED,
    "SUCCEEDED": State.FINISHED,
    "COMPLETE": State.FINISHED,
    "FAILED": State.FAILED,
}

#: What stops a task without it failing: the worker was told to stop (a second Ctrl+C), or
#: the task stopped on a cancel request.
INTERRUPTIONS: Final = frozenset(
    {
        "builtins.SystemExit",
        "builtins.KeyboardInterrupt",
        f"{JobCancelled.__module__}.{JobCancelled.__qualname__}",
    }
)


def is_interruption(exception: type[BaseException] | str) -> bool:
    """Tell whether an exception (a class or its dotted path) stopped the task: ``cancelled``."""
    if isinstance(exception, str):
        return exception in INTERRUPTIONS
    return issubclass(exception, SystemExit | KeyboardInterrupt | JobCancelled)


def error_of(task_error: Any) -> JobError | None:
    """Return a Django ``TaskError`` as a :class:`JobError` (``None`` stays ``None``).

    Django keeps the exception's class path and its formatted traceback, not its message: the
    message is the traceback's last line, after the class name.
    """
    if task_error is None:
        return None
    path = str(task_error.exception_class_path)
    traceback = str(task_error.traceback or "")
    last_line = traceback.rstrip("\n").rpartition("\n")[2]
    name = path.removeprefix("builtins.")
    _, found, message = last_line.partition(": ")
    return JobError(
        type=name,
        message=message if found else "",
        traceback=traceback or None,
    )


def status_of(task_result: Any, job_class: str | None = None) -> JobStatus:
    """Return what a Django ``TaskResult`` says about its job, as a :class:`JobStatus`."""
    return status_from(
        job_id=str(task_result.id),
        job_class=job_class,
        status=str(task_result.status),
        errors=list(task_result.errors or ()),
        attempts=len(task_result.worker_ids or ()),
        enqueued_at=task_result.enqueued_at,
        started_at=task_result.started_at,
        finished_at=task_result.finished_at,
    )


def status_from(
    *,
    job_id: str,
    job_class: str | None,
    status: str,
    errors: Sequence[Any],
    attempts: int,
    enqueued_at: datetime | None,
    started_at: datetime | None,
    finished_at: datetime | None,
) -> JobStatus:
    """Return a task's status from the fields every backend keeps (see the module's table).

    ``errors`` are ``TaskError``-like: an ``exception_class_path`` and a ``traceback``.
    """
    state = STATES.get(status, State.UNKNOWN)
    last = errors[-1] if errors else None
    if state is State.FAILED and last is not None and is_interruption(last.exception_class_path):
        state = State.CANCELLED
    return JobStatus(
        job_id=job_id,
        job_class=job_class,
        state=state,
        error=error_of(last) if state is State.FAILED else None,
        attempts=attempts,
        enqueued_at=enqueued_at,
        started_at=started_at,
        finished_at=finished_at if state.completed else None,
    )
