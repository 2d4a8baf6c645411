"""Huey: track Huey tasks with one line per Huey instance and one line per task.

::

    huey = RedisHuey("reports")
    install(huey)                       # the hooks, in every process that creates this Huey

    @huey.task(retries=1)
    @immortus.track(queue="huey")       # opt the task in: its job class is Huey's own name
    def build_report(rows): ...

Needs the ``immortus[huey]`` extra. Huey keeps no status of its own, so the strategy inferred for
these jobs is the store strategy: what the hooks below record is all immortus knows (see
``docs/queues/huey.md``). A job's id is Huey's task id, and its job class is Huey's name for the
task, ``module.name`` (:func:`job_class`), which is what ``@immortus.track`` names a function
at a module's top level.

How Huey's events become immortus's, in the process where each happens:

==============================  =========  ===================================================
Huey event                      process    immortus
==============================  =========  ===================================================
signal ``enqueued``             enqueuing  ``created`` (before the task reaches the queue)
signal ``executing``            worker     ``started``, attempt = declared retries - retries
                                           left + 1; the job is current (``progress()``)
post-execute, no exception      worker     ``finished``
post-execute, an exception      worker     ``retrying`` while retries are left, with
                                           ``retry_at`` (Huey's ``retry_delay``, or the
                                           ``RetryTask``'s eta or delay), else ``failed``
                                           (its type and message)
signal ``canceled``             worker     ``cancelled`` (``retrying`` if Huey retries it);
                                           a tracked task's ``immortus.JobCancelled`` becomes
                                           ``CancelExecution(retry=False)``
signal ``interrupted``          worker     ``cancelled`` (Huey does not run it again)
``revoked``, ``expired``        worker     ``cancelled``, never started
==============================  =========  ===================================================

A hook never breaks the task or the enqueue: whatever goes wrong is logged on the ``immortus``
logger (and :mod:`immortus.lifecycle` already logs a store that fails).

:func:`immortus.cancel` revokes the task on every Huey installed in the process
(``revoke_by_id``): a consumer skips a waiting task, and a running one stops at its next
:func:`check_cancelled` or, where the store carries cancel requests, its next
``immortus.progress()``. Huey cannot stop a running task from outside.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from immortus import lifecycle, runtime
from immortus.cancel_requests import JobCancelled
from immortus.cancelling import register_canceller
from immortus.exceptions import MissingDependency, NotCancellable, NotInJob
from immortus.jobs import Attempt, current_job, start_attempt
from immortus.queues._kit import AttemptBook, retry_time, tracked_name
from immortus.status import JobError

try:
    from huey.api import Huey, Result, Task, TaskWrapper
    from huey.exceptions import CancelExecution, RateLimitExceeded, RetryTask
    from huey.signals import (
        SIGNAL_CANCELED,
        SIGNAL_ENQUEUED,
        SIGNAL_EXECUTING,
        SIGNAL_EXPIRED,
        SIGNAL_INTERRUPTED,
        SIGNAL_REVOKED,
    )
except ImportError as exc:
    raise MissingDependency("huey", "huey") from exc

__all__ = [
    "QUEUE",
    "check_cancelled",
    "identify",
    "install",
    "installed",
    "job_class",
    "uninstall",
]

logger = logging.getLogger("immortus")

#: The queue name Huey's jobs declare (``@immortus.track(queue="huey")``).
QUEUE: Final = "huey"

#: The Huey signals the hooks receive; the ends of a task's run come from a post-execute hook,
#: which alone sees every exception (a timeout, ``RetryTask``) with its traceback.
SIGNALS: Final = (
    SIGNAL_ENQUEUED,
    SIGNAL_EXECUTING,
    SIGNAL_CANCELED,
    SIGNAL_INTERRUPTED,
    SIGNAL_REVOKED,
    SIGNAL_EXPIRED,
)
#: The name of immortus's post-execute hook on a Huey instance.
POST_EXECUTE_HOOK: Final = "immortus"
#: The attribute of a Huey instance that holds its hooks once installed.
_HOOKS_ATTRIBUTE: Final = "_immortus_hooks"


@dataclass(frozen=True, slots=True)
class _Run:
    """A tracked task running in this process, and the attempt its hooks began."""

    huey: Any
    task: Any
    attempt: Attempt


class HueyState(runtime.LockedPart):
    """The Huey instances installed here and the tasks they run: an :mod:`immortus.runtime` part.

    A reset forgets the runs in flight; the installs stay (:func:`uninstall` undoes them).
    """

    def __init__(self) -> None:
        super().__init__()
        #: task id -> its run, from ``executing`` to its end.
        self.runs: AttemptBook[str, _Run] = AttemptBook()
        #: The installed Huey instances, which the canceller revokes on.
        self.installed: list[Any] = []

    def reset(self) -> None:
        self.runs.clear()


_state: Final = runtime.part(HueyState)


def job_class(task: Any) -> str:
    """Return the job class of a Huey task: Huey's own name for it, ``module.name``.

    ``task`` is a task (``build_report.s()``, or the ``task`` a ``context=True`` task gets), its
    class, or the decorated function (``build_report``).
    """
    if isinstance(task, TaskWrapper):
        task = task.task_class
    kind = task if isinstance(task, type) else type(task)
    return f"{kind.__module__}.{kind.__name__}"


def _tracked_class(task: Any) -> str | None:
    """Return the task's job class if it opted in with ``@immortus.track``, else ``None``."""
    return tracked_name(job_class(task))


def identify(job: object) -> tuple[str | None, str | None] | None:
    """Return the ``(job_id, job_class)`` of a Huey ``Result`` or task; ``None`` for anything else.

    The job class is ``None`` when the task is not tracked.
    """
    task = job.task if isinstance(job, Result) else job
    if not isinstance(task, Task):
        return None
    return task.id, _tracked_class(task)


def _attempt_number(task: Any) -> int | None:
    """Return which attempt this run is (from 1), from the retries left and those declared.

    ``None`` (the store then counts starts) when more are left than declared, as with retries
    given per call (``.s(retries=3)``). Retries Huey adds back (``RetryTask``, rate limits)
    repeat a number: Huey's message carries no attempt count.
    """
    declared = getattr(type(task), "default_retries", 0) or 0
    left = task.retries or 0
    return declared - left + 1 if 0 <= left <= declared else None


class _Hooks:
    """The receivers immortus connects to one Huey instance."""

    def __init__(self, huey: Any) -> None:
        self.huey = huey

    def connect(self) -> None:
        self.huey.signal(*SIGNALS)(self.on_signal)
        self.huey.post_execute(POST_EXECUTE_HOOK)(self.on_post_execute)

    def disconnect(self) -> None:
        self.huey.disconnect_signal(self.on_signal, *SIGNALS)
        self.huey.unregister_post_execute(POST_EXECUTE_HOOK)

    def on_signal(self, signal: str, task: Any, *args: object) -> None:
        """Called by Huey for each signal in :data:`SIGNALS`; logs whatever goes wrong."""
        try:
            name = _tracked_class(task)
            if name is None:
                return
            if signal == SIGNAL_ENQUEUED:
                lifecycle.job_enqueued(task.id, name)
            elif signal == SIGNAL_EXECUTING:
                self._begin(task, name)
            elif signal == SIGNAL_CANCELED:
                _cancelled(task, name)
            else:  # interrupted, revoked, expired: the task will not run (again)
                _end_cancelled(task, name)
        except Exception:
            logger.exception("immortus: Huey's %r hook failed for task %r", signal, task)

    def on_post_execute(self, task: Any, value: object, exception: BaseException | None) -> None:
        """Called by Huey after a task's body ran, with its exception; logs what goes wrong."""
        try:
            run = _pop_run(task.id)
            if run is None:  # not tracked, or already ended by the ``canceled`` signal
                return
            if exception is None:
                run.attempt.finish()
            elif task.retries:
                retry_at = _retry_at(self.huey, task, exception)
                run.attempt.fail(exception, final_attempt=False, retry_at=retry_at)
            else:
                run.attempt.fail(exception)
        except Exception:
            logger.exception("immortus: the post-execute hook failed for Huey task %r", task)

    def _begin(self, task: Any, name: str) -> None:
        attempt = start_attempt(task.id, name, attempt=_attempt_number(task))
        _state.runs.put(task.id, _Run(self.huey, task, attempt))
        task.execute = _stopping(task.execute)  # this run only: Huey builds a task per message


def _stopping(execute: Callable[[], Any]) -> Callable[[], Any]:
    """Make ``immortus.JobCancelled`` stop a task's run the way Huey stops one.

    It becomes ``CancelExecution(retry=False)``: not retried, and the ``canceled`` signal
    ends the attempt ``cancelled``.
    """

    @functools.wraps(execute)
    def execute_tracked() -> Any:
        try:
            return execute()
        except JobCancelled as exc:
            raise CancelExecution(retry=False) from exc

    return execute_tracked


def _retry_at(huey: Any, task: Any, exception: BaseException) -> datetime:
    """Return when Huey runs the task again, as its ``_execute`` and ``_requeue_task`` decide."""
    if isinstance(exception, RetryTask) and (exception.eta or exception.delay is not None):
        return retry_time(exception.delay, _aware(huey, exception.eta))
    if isinstance(exception, RateLimitExceeded):
        return retry_time(task.retry_delay or exception.delay)
    return retry_time(task.retry_delay)


def _aware(huey: Any, eta: datetime | None) -> datetime | None:
    """Return Huey's ``eta`` as an aware time: naive ones are UTC, or local with ``utc=False``."""
    if eta is None or eta.tzinfo is not None:
        return eta
    return eta.astimezone() if not huey.utc else retry_time(eta=eta)


def _pop_run(task_id: str) -> _Run | None:
    return _state.runs.take(task_id)


def _cancelled(task: Any, name: str) -> None:
    """The task raised ``CancelExecution``: cancelled, or retrying when Huey runs it again."""
    if not task.retries:
        _end_cancelled(task, name)
        return
    error = JobError(
        type=f"{CancelExecution.__module__}.{CancelExecution.__qualname__}",
        message="the attempt was cancelled; Huey runs it again",
    )
    run = _pop_run(task.id)
    if run is None:
        lifecycle.job_retrying(task.id, error, name, attempt=_attempt_number(task))
    else:
        run.attempt.fail(error, final_attempt=False)


def _end_cancelled(task: Any, name: str) -> None:
    """End the task's run as cancelled, or report it cancelled if it never started."""
    run = _pop_run(task.id)
    if run is not None:
        run.attempt.cancel()
    else:
        lifecycle.job_cancelled(task.id, name)


def install(huey: Any) -> None:
    """Track the opted-in tasks of ``huey``: connect immortus's hooks to it. Idempotent.

    Call it where the Huey instance is created, so that it runs in every process using it: the
    enqueuing side reports each task ``created`` before ``enqueue`` returns, and the consumer
    reports the rest. Tasks not opted in with ``@immortus.track`` cost one dictionary look-up.

    Raises:
        TypeError: ``huey`` is not a Huey instance.
    """
    if not isinstance(huey, Huey):
        raise TypeError(f"install() takes a Huey instance, not {type(huey).__name__}")
    with _state.lock:
        if getattr(huey, _HOOKS_ATTRIBUTE, None) is not None:
            return
        hooks = _Hooks(huey)
        setattr(huey, _HOOKS_ATTRIBUTE, hooks)
        _state.installed.append(huey)
    hooks.connect()


def uninstall(huey: Any) -> None:
    """Disconnect immortus's hooks from ``huey``; its tasks are no longer tracked."""
    with _state.lock:
        hooks: _Hooks | None = getattr(huey, _HOOKS_ATTRIBUTE, None)
        if hooks is None:
            return
        setattr(huey, _HOOKS_ATTRIBUTE, None)
        _state.installed.remove(huey)
    hooks.disconnect()


def installed(huey: Any) -> bool:
    """Tell whether immortus's hooks are installed on ``huey``."""
    return getattr(huey, _HOOKS_ATTRIBUTE, None) is not None


def check_cancelled(task: Any = None) -> None:
    """Stop the running task here if it has been revoked; call it between two steps.

    Huey cannot stop a running task from outside: ``huey.revoke_by_id(job_id)`` (or
    ``task.revoke()``) only marks it, and the task looks at the mark here. ``task`` is the
    tracked task running in this process; without it, the tracked job current in this thread.
    A revocation that cannot be read (the queue's storage is down) is logged and ignored.

    Raises:
        CancelExecution: the task was revoked. Let it propagate: Huey then does not retry it
            (its result store keeps the exception), and immortus reports the job ``cancelled``.
        NotInJob: there is no such tracked task running under an installed Huey.
    """
    job_id = task.id if task is not None else getattr(current_job(), "job_id", None)
    run = _state.runs.get(job_id) if job_id is not None else None
    if run is None:
        raise NotInJob(
            "check_cancelled() needs a tracked Huey task running in this process: call it from "
            "the task's own code, with install(huey) done and the task under @immortus.track"
        )
    try:
        revoked = run.huey.is_revoked(run.task)
    except Exception:
        logger.exception("immortus: cannot read whether Huey task %r was revoked", job_id)
        return
    if revoked:
        raise CancelExecution(retry=False)


def _cancel(job_id: str, job_class: str) -> None:
    """The canceller of :func:`immortus.cancel`: revoke the task on every installed Huey.

    ``revoke_once``: a consumer that skips the waiting task consumes the mark; a running task
    sees it at its next :func:`check_cancelled` (Huey clears it when the run ends).

    Raises:
        NotCancellable: no Huey is installed in this process to revoke it on.
    """
    with _state.lock:
        hueys = list(_state.installed)
    if not hueys:
        raise NotCancellable(
            f"job {job_id!r} ({job_class}) cannot be revoked: no Huey is installed in this "
            "process; call immortus.queues.huey.install(huey) where the Huey is created"
        )
    for huey in hueys:
        huey.revoke_by_id(job_id, revoke_once=True)


register_canceller(QUEUE, _cancel)
