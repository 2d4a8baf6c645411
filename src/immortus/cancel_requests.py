"""Cooperative cancellation: a request to stop a job, and how the running job sees it.

A job that immortus runs itself (:func:`immortus.running`, a plain thread pool) has no queue to
revoke it, so it is stopped by asking it: :func:`request` records that its cancellation was
requested, and the job sees it at its next :func:`immortus.progress` (which raises
:class:`JobCancelled`) or when it asks :func:`immortus.cancel_requested`. A request is not a
cancellation: the job reads ``cancelled`` only once it has stopped, and a job that never looks
runs on to its end.

Requests are kept in this process (the last :data:`MAX_KEPT` job ids), so every job of the
process sees them at once, without I/O. A store that can carry a request to the process running
the job implements :class:`CancelRequestStore` (every store immortus ships does): the store
strategy writes the request there, and a running job whose store it is asks it at most once per
:data:`POLL_INTERVAL`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final, Protocol, runtime_checkable

from immortus import runtime

__all__ = [
    "MAX_KEPT",
    "POLL_INTERVAL",
    "CancelRequestStore",
    "JobCancelled",
    "forget",
    "is_requested",
    "request",
]

#: How many requested job ids a process remembers; the oldest is forgotten first.
MAX_KEPT: Final = 10_000
#: Seconds between two questions a running job puts to its store, at most.
POLL_INTERVAL: Final = 1.0


class JobCancelled(BaseException):
    """Raised inside a job whose cancellation was requested, to stop it.

    :func:`immortus.progress` raises it (and :func:`immortus.running` on entry, for a job
    cancelled while it waited); :func:`immortus.running` reports the job ``cancelled`` and lets
    it propagate. It is a :class:`BaseException`, like :class:`asyncio.CancelledError`, so that
    an ``except Exception`` in the job's code (a loop that skips bad rows) cannot swallow it and
    keep a cancelled job running. Code that must clean up uses ``finally`` or catches it by name
    and re-raises.
    """

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"cancellation of job {job_id!r} was requested")


@runtime_checkable
class CancelRequestStore(Protocol):
    """A store that carries a cancel request to the process that runs the job.

    Both calls raise what any store operation raises (:mod:`immortus.stores.base`).
    """

    def request_cancel(self, job_id: str) -> bool:
        """Mark the job's live, unended record as asked to stop; return whether one took it.

        Called by the store strategy's ``cancel``, in one atomic write. It never creates a
        record; a repeated request is taken and changes nothing.
        """
        ...

    def cancel_requested(self, job_id: str) -> bool:
        """Tell whether the job's live record carries a cancel request.

        Called in the worker by the running job, at most once per :data:`POLL_INTERVAL`.
        """
        ...


class Requests(runtime.LockedPart):
    """The jobs whose cancellation was requested here: a :mod:`runtime <immortus.runtime>` part."""

    def __init__(self) -> None:
        super().__init__()
        self.requested: OrderedDict[str, None] = OrderedDict()

    def reset(self) -> None:
        with self.lock:
            self.requested.clear()


_requests: Final = runtime.part(Requests)


def request(job_id: str) -> None:
    """Record in this process that ``job_id``'s cancellation was requested."""
    with _requests.lock:
        _requests.requested[job_id] = None
        _requests.requested.move_to_end(job_id)
        if len(_requests.requested) > MAX_KEPT:
            _requests.requested.popitem(last=False)


def is_requested(job_id: str) -> bool:
    """Tell whether ``job_id``'s cancellation was requested in (or delivered to) this process."""
    return job_id in _requests.requested


def forget(job_id: str) -> None:
    """Forget the request of a job that has ended (called when its attempt ends for good)."""
    with _requests.lock:
        _requests.requested.pop(job_id, None)
