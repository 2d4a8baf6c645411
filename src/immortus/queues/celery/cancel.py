"""Cancelling a Celery task: Celery's ``revoke``, made to hold for a task no worker runs yet.

:func:`immortus.cancel` revokes Celery's tracked tasks through :func:`revoke`, registered as
the canceller of the queue ``"celery"`` when this package is imported: a waiting task is
dropped, and a running one is terminated where the pool can (see :func:`install`'s
``terminate``), else stopped at its next ``immortus.progress()``.
"""

from __future__ import annotations

from typing import Final

from celery import Celery, states  # type: ignore[import-untyped]
from celery.backends.base import DisabledBackend  # type: ignore[import-untyped]
from kombu.exceptions import OperationalError

from immortus import lifecycle
from immortus.cancelling import register_canceller
from immortus.exceptions import StoreUnavailable
from immortus.queues.celery.hooks import terminates, the_app
from immortus.queues.celery.names import recorded
from immortus.status import State

__all__ = ["QUEUE", "revoke"]

#: The queue name Celery's jobs declare (``@immortus.track(queue="celery")``).
QUEUE: Final = "celery"

#: Backend states of a job no worker runs at the moment: :func:`revoke` can make them stick.
_WAITING: Final = frozenset({states.PENDING, states.RECEIVED, states.RETRY})


def revoke(
    job_id: str, app: Celery | None = None, *, terminate: bool = False, signal: str = "SIGTERM"
) -> None:
    """Cancel a job: Celery's ``revoke``, made to hold for a job that no worker runs yet.

    Sends ``app.control.revoke(job_id, terminate=..., signal=...)``. Celery keeps revokes in
    each worker's memory, so a revoke sent while no worker listens is lost and the job runs
    later; when the job is waiting (the backend says PENDING, RECEIVED or RETRY and immortus's
    store has not seen it start), this also stores REVOKED in the result backend and records
    ``cancelled``, and the hooks make a worker that receives the job later drop it unrun.

    ``terminate=True`` stops a running job, with the prefork pool only (Celery's threads and
    solo pools cannot kill a task); the worker then reports it revoked. Without a result
    backend, this is Celery's revoke alone.

    Raises:
        kombu.exceptions.OperationalError: the broker cannot be reached (Celery's error; the
            result backend's own errors pass through too).
    """
    app = the_app(app)
    app.control.revoke(job_id, terminate=terminate, signal=signal)
    if isinstance(app.backend, DisabledBackend) or app.AsyncResult(job_id).state not in _WAITING:
        return
    found = recorded(job_id)
    if found is not None and found.state not in (State.CREATED, State.RETRYING):
        return  # started (the backend shows STARTED only with task_track_started=True)
    app.backend.mark_as_revoked(job_id, reason="revoked")
    lifecycle.job_cancelled(job_id, None if found is None else found.job_class)


def _cancel(job_id: str, job_class: str) -> None:
    """The canceller of :func:`immortus.cancel`: :func:`revoke`, terminating as installed.

    Raises:
        StoreUnavailable: the broker or the result backend cannot be reached.
    """
    app = the_app(None)
    try:
        revoke(job_id, app, terminate=terminates(app))
    except (OSError, OperationalError) as exc:
        raise StoreUnavailable(
            f"Celery's broker or result backend cannot be reached: {type(exc).__name__}"
        ) from exc


register_canceller(QUEUE, _cancel)
