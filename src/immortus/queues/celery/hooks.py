"""Celery's signals, turned into immortus's lifecycle events (the package docstring's table)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from celery import Celery, current_app, signals, states  # type: ignore[import-untyped]
from celery.backends.base import DisabledBackend  # type: ignore[import-untyped]
from celery.exceptions import Ignore, WorkerLostError  # type: ignore[import-untyped]
from celery.worker import state as worker_state  # type: ignore[import-untyped]

from immortus import lifecycle, runtime
from immortus.cancel_requests import JobCancelled
from immortus.jobs import Attempt, start_attempt
from immortus.queues._kit import AttemptBook, retry_time
from immortus.queues.celery.errors import failure
from immortus.queues.celery.names import job_class as class_of
from immortus.queues.celery.names import remember
from immortus.status import JobError

__all__ = ["install", "installed", "terminates", "the_app", "uninstall"]

logger = logging.getLogger("immortus")

#: What ended the delivery before a redelivered message's: it was never acknowledged.
_REDELIVERED: Final = JobError(
    type="celery.Redelivered",
    message="the worker running the task stopped before acknowledging it; it runs again",
)

#: The attribute marking a task class whose ``__call__`` :func:`install` wrapped.
_STOPS_MARK: Final = "__immortus_stops__"


class CeleryState(runtime.LockedPart):
    """The Celery apps installed here and the attempts running: an :mod:`immortus.runtime` part.

    A reset forgets the attempts in flight; the installs stay (:func:`uninstall` undoes them).
    """

    def __init__(self) -> None:
        super().__init__()
        #: The installed apps, oldest first. The last answers :func:`installed`: the app the
        #: Celery strategy reads by default, so the latest new ``install()`` wins.
        self.installed: list[Any] = []
        #: id of an installed app -> whether cancel terminates its running tasks.
        self.terminating: dict[int, bool] = {}
        self.attempts: AttemptBook[tuple[str, int | None], Attempt] = AttemptBook()

    def reset(self) -> None:
        self.attempts.clear()


_state: Final = runtime.part(CeleryState)


def install(app: Celery, *, terminate: bool = True) -> None:
    """Connect immortus's hooks to Celery's signals, for ``app``: one line, in every process.

    Call it where the app is created, so that the web process (the enqueuer) and the worker
    both run it. Installing again is harmless. Celery's signals are process-wide: once
    installed, the hooks see the tasks of every app, and report those whose name is tracked.
    ``app`` becomes the app :class:`CeleryStrategy` reads when given none.

    ``terminate``: whether :func:`immortus.cancel` terminates a running task (Celery's revoke
    with ``terminate=True``, which the prefork, gevent and eventlet pools honour). Pass
    ``False`` for the threads and solo pools, which cannot: their running tasks stop at their
    next ``immortus.progress()``. Either way, each tracked task's ``immortus.JobCancelled``
    ends it ``cancelled`` (REVOKED in the result backend) instead of failing it.
    """
    with _state.lock:
        if app not in _state.installed:
            _state.installed.append(app)
        _state.terminating[id(app)] = terminate
    for signal, receiver in _RECEIVERS:
        signal.connect(receiver, weak=False, dispatch_uid=f"immortus.{signal.name}")
    app.on_after_finalize.connect(_wrap_tracked_tasks, weak=False)
    if app.finalized:
        _wrap_tracked_tasks(app)


def terminates(app: Celery) -> bool:
    """Tell whether :func:`immortus.cancel` terminates ``app``'s running tasks (see install)."""
    return _state.terminating.get(id(app), True)


def _wrap_tracked_tasks(sender: Any = None, **_: Any) -> None:
    """Once the app has its tasks: each tracked one stops on ``JobCancelled`` (:func:`_stopping`).

    Celery's own way to wrap a task's method (``Task.add_around``, what task annotations use),
    done before a worker builds its tracers, so that they call the wrapped ``__call__``.
    """
    try:
        for name, task in list(sender.tasks.items()):
            kind = type(task)
            if class_of(name, task) is not None and not kind.__dict__.get(_STOPS_MARK):
                kind.add_around("__call__", _stopping)
                setattr(kind, _STOPS_MARK, True)
    except Exception:
        logger.exception("immortus: cannot make Celery's tracked tasks stop on a cancel request")


def _stopping(call: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a task's ``__call__``: ``immortus.JobCancelled`` stops it the way Celery stops one.

    The attempt ends ``cancelled``, the result backend says REVOKED, and Celery's ``Ignore``
    ends the run: the message is acknowledged, nothing retries it, the worker goes on.
    """

    @functools.wraps(call)
    def call_tracked(task: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(task, *args, **kwargs)
        except JobCancelled as exc:
            _stopped(task)
            raise Ignore() from exc

    return call_tracked


def _stopped(task: Any) -> None:
    """Report a task stopped by ``JobCancelled`` ``cancelled``, here and in the result backend."""
    try:
        request = task.request
        attempt = _take(request.id, request)
        if attempt is not None:
            attempt.cancel()
        if not task.ignore_result and not isinstance(task.backend, DisabledBackend):
            task.backend.mark_as_revoked(request.id, reason="cancelled", request=request)
    except Exception:
        logger.exception("immortus: cannot record the cancelled Celery task %r", task)


def uninstall(app: Celery) -> None:
    """Undo :func:`install` for ``app``; the hooks are disconnected once no app is installed."""
    with _state.lock:
        if app in _state.installed:
            _state.installed.remove(app)
        remaining = bool(_state.installed)
    if not remaining:
        for signal, receiver in _RECEIVERS:
            signal.disconnect(receiver, dispatch_uid=f"immortus.{signal.name}")


def installed() -> Celery | None:
    """Return the app installed last (the default of :class:`CeleryStrategy`), or ``None``."""
    with _state.lock:
        return _state.installed[-1] if _state.installed else None


def the_app(app: Celery | None) -> Celery:
    """Return ``app``, else the app installed last, else Celery's current app."""
    return app if app is not None else installed() or current_app


def _on_published(
    sender: object = None, headers: Mapping[str, Any] | None = None, body: Any = None, **_: Any
) -> None:
    """After a task message left the enqueuing process: ``job_enqueued``.

    The task name and id are in the headers (message protocol 2) or the body (protocol 1). A
    retry re-publishes the message from the worker with ``retries`` above 0: not an enqueue.
    """
    try:
        message = headers if headers and "task" in headers else body
        if not isinstance(message, Mapping):
            return
        job_class = class_of(message.get("task", sender))
        if job_class is None or (message.get("retries") or 0) > 0:
            return
        job_id = str(message["id"])
        remember(job_id, job_class)
        lifecycle.job_enqueued(job_id, job_class)
    except Exception:
        logger.exception("immortus: the Celery publish hook failed; the task was sent")


def _on_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    """When the worker receives a tracked task whose result says REVOKED: drop it unrun.

    Celery keeps revokes in each worker's memory, so a revoke sent while no worker listened is
    lost; :func:`revoke` also writes REVOKED to the result backend, which this reads.
    """
    try:
        backend = request.task.backend
        if class_of(request.name) is None or isinstance(backend, DisabledBackend):
            return
        if backend.get_task_meta(request.id)["status"] == states.REVOKED:
            worker_state.revoked.add(request.id)  # the worker then skips it, as Celery does
    except Exception:
        logger.exception("immortus: the Celery receive hook failed; the task runs")


def _redelivered(request: Any) -> bool:
    """Whether the broker delivers the task's message again (it was never acknowledged)."""
    delivery_info = getattr(request, "delivery_info", None)
    return isinstance(delivery_info, Mapping) and delivery_info.get("redelivered") is True


def _attempt_number(request: Any) -> int | None:
    """Return the attempt's number: ``retries + 1``; ``None`` for a redelivered message.

    Celery counts retries, not redeliveries: a message requeued after its worker was lost
    (``acks_late`` with ``reject_on_worker_lost``) comes back with the same ``retries``. Its
    attempt goes unnumbered, and the store counts it as one more start.
    """
    if _redelivered(request):
        return None
    retries = getattr(request, "retries", None)
    return retries + 1 if isinstance(retries, int) and retries >= 0 else 1


def _on_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """Before a tracked task runs: ``job_started``, and the task becomes the current job.

    A redelivered message first reports ``job_lost``: the broker hands a message out again
    only when the worker that had it never acknowledged it (it died, or lost its connection).
    Only a job recorded ``started`` becomes lost, so the new start counts one more attempt;
    a message requeued before any worker started it just starts.
    """
    try:
        job_class = class_of(task.name, task)
        if job_class is None or task_id is None:
            return
        number = _attempt_number(task.request)
        if number is None:
            lifecycle.job_lost(task_id, _REDELIVERED, job_class)
        _state.attempts.put((task_id, number), start_attempt(task_id, job_class, attempt=number))
    except Exception:
        logger.exception("immortus: the Celery prerun hook failed; the task runs untracked")


def _take(task_id: object, request: Any) -> Attempt | None:
    """Remove and return this process's running attempt of the task, if it has one."""
    return _state.attempts.take((str(task_id), _attempt_number(request)))


def _retry_at(when: object) -> datetime | None:
    """Return when a retry runs, from Celery's ``Retry.when``: an eta, a countdown, or neither."""
    if isinstance(when, datetime):
        return retry_time(eta=when)
    if isinstance(when, int | float) and not isinstance(when, bool):
        return retry_time(when)
    return None


def _on_success(sender: Any = None, **_: Any) -> None:
    """After a tracked task returned (and its result was stored): ``job_finished``."""
    try:
        attempt = _take(sender.request.id, sender.request)
        if attempt is not None:
            attempt.finish()
    except Exception:
        logger.exception("immortus: the Celery success hook failed")


def _on_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    """After a tracked task asked for a retry: ``job_retrying`` with the error that caused it.

    ``retry_at`` is the retry's eta, or now plus its countdown (Celery's ``Retry.when``).
    """
    try:
        error = failure(getattr(reason, "exc", None) or reason)
        retry_at = _retry_at(getattr(reason, "when", None))
        attempt = _take(request.id, request)
        if attempt is not None:
            attempt.fail(error, final_attempt=False, retry_at=retry_at)
        elif class_of(sender.name) is not None:
            lifecycle.job_retrying(request.id, error, sender.name, retry_at=retry_at)
    except Exception:
        logger.exception("immortus: the Celery retry hook failed")


def _on_failure(
    sender: Any = None, task_id: str | None = None, exception: Any = None, **_: Any
) -> None:
    """After a tracked task failed for good: ``job_failed`` with the error.

    The worker's main process sends it too, for a child killed by a hard time limit
    (``failed``) or lost mid-task (``WorkerLostError``: ``lost``, no retry is coming). A child
    lost with ``acks_late`` and ``reject_on_worker_lost`` sends nothing: its message is
    requeued, and the redelivery's start reports the loss (see :func:`_on_prerun`).
    """
    try:
        attempt = _take(task_id, sender.request)
        if attempt is not None:
            attempt.fail(failure(exception))
        elif task_id is not None and class_of(sender.name) is not None:
            lost = isinstance(exception, WorkerLostError)  # the pool child running it died
            report = lifecycle.job_lost if lost else lifecycle.job_failed
            report(task_id, failure(exception), sender.name)
    except Exception:
        logger.exception("immortus: the Celery failure hook failed")


def _on_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
    """After a tracked task was revoked, expired, or terminated while running: ``job_cancelled``.

    Sent by the worker's main process: the killed child cannot report.
    """
    try:
        attempt = _take(request.id, request)
        if attempt is not None:
            attempt.cancel()
        elif class_of(sender.name) is not None:
            lifecycle.job_cancelled(request.id, sender.name)
    except Exception:
        logger.exception("immortus: the Celery revoke hook failed")


def _on_postrun(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    """After any task ran: end a tracked attempt no outcome signal ended.

    Left are tasks that raised ``Reject`` or ``Ignore`` (``Task.replace`` does), whose outcome
    Celery reports elsewhere or not at all: the attempt ends without an event.
    """
    try:
        attempt = _take(task_id, task.request)
        if attempt is not None:
            logger.debug("immortus: Celery task %s ended in state %s", task_id, state)
            attempt.leave()  # no outcome to claim: the job was handed on
    except Exception:
        logger.exception("immortus: the Celery postrun hook failed")


_RECEIVERS: Final = (
    (signals.after_task_publish, _on_published),
    (signals.task_received, _on_received),
    (signals.task_prerun, _on_prerun),
    (signals.task_retry, _on_retry),
    (signals.task_success, _on_success),
    (signals.task_failure, _on_failure),
    (signals.task_revoked, _on_revoked),
    (signals.task_postrun, _on_postrun),
)
