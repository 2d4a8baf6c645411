"""Celery: lifecycle hooks from Celery's signals, and a strategy that reads the result backend.

    app = Celery("reports", broker=..., backend=...)
    immortus.queues.celery.install(app)          # the hooks, in every process that uses the app

    @app.task
    @immortus.track(queue="celery")              # opts the task in; CeleryStrategy is inferred
    def build_report(): ...

A job's ``job_id`` is the Celery task id and its ``job_class`` the Celery task name, which for a
function task is ``module.name``: the name ``@immortus.track`` gives too. Only tasks whose name
is tracked are reported; the hooks return at once for any other task.

==========================  ================  ===========================================
Celery signal               process           immortus event
==========================  ================  ===========================================
``after_task_publish``      the enqueuer      ``job_enqueued`` (not for a retry's re-publish)
``task_received``           worker (main)     none: a job revoked while no worker was
                                              listening is dropped (see :func:`revoke`)
``task_prerun``             worker            ``job_started``, attempt ``retries + 1``; for a
                                              redelivered message, ``job_lost`` (the delivery
                                              before it was lost) and a new attempt
``task_retry``              worker            ``job_retrying`` with the error
``task_success``            worker            ``job_finished``
``task_failure``            worker            ``job_failed`` with the error; ``job_lost`` for
                                              a ``WorkerLostError`` (a pool child died)
``task_revoked``            worker (main)     ``job_cancelled``
``task_postrun``            worker            ends an attempt no other signal ended
==========================  ================  ===========================================

Every hook logs what goes wrong on the ``immortus`` logger and never raises: tracking never
breaks a task or an enqueue. :class:`CeleryStrategy` merges immortus's store with the result
backend (``docs/queues/celery.md`` has the state mapping table).
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from immortus import config, lifecycle, registry
from immortus.exceptions import ImmortusError, InvalidProgress, MissingDependency, StoreUnavailable
from immortus.jobs import JOB_CLASS_ATTRIBUTE, Attempt, start_attempt
from immortus.queues.native import QueueStrategy
from immortus.status import (
    MAX_ERROR_MESSAGE_LENGTH,
    MAX_ERROR_TYPE_LENGTH,
    JobError,
    JobStatus,
    Progress,
    State,
)
from immortus.stores.base import Store

try:
    from celery import Celery, current_app, signals, states  # type: ignore[import-untyped]
    from celery.backends.base import (  # type: ignore[import-untyped]
        BaseKeyValueStoreBackend,
        DisabledBackend,
    )
    from celery.exceptions import WorkerLostError  # type: ignore[import-untyped]
    from celery.worker import state as worker_state  # type: ignore[import-untyped]
    from kombu.exceptions import OperationalError
except ImportError as exc:
    raise MissingDependency("celery", "celery") from exc

__all__ = ["STATES", "CeleryStrategy", "install", "installed", "revoke", "uninstall"]

logger = logging.getLogger("immortus")

#: Celery's states and ours. PENDING, REJECTED and IGNORED are absent: the backend stores
#: nothing for them (PENDING is also what it says of an id it never saw), so they tell nothing.
STATES: Final[Mapping[str, State]] = {
    states.RECEIVED: State.CREATED,
    states.STARTED: State.STARTED,
    states.RETRY: State.RETRYING,
    states.SUCCESS: State.FINISHED,
    states.FAILURE: State.FAILED,
    states.REVOKED: State.CANCELLED,
}
#: States that carry no answer; any other state a task sets itself (``update_state``) is
#: ``started``: only a running task can set one.
_SILENT: Final = frozenset({states.PENDING, states.REJECTED, states.IGNORED})
#: Backend states of a job no worker runs at the moment: :func:`revoke` can make them stick.
_WAITING: Final = frozenset({states.PENDING, states.RECEIVED, states.RETRY})
#: The error type of a task whose pool child died mid-task (billiard's ``WorkerLostError``):
#: a FAILURE with it reads ``lost``.
_WORKER_LOST: Final = f"{WorkerLostError.__module__}.{WorkerLostError.__qualname__}"
#: What ended the delivery before a redelivered message's: it was never acknowledged.
_REDELIVERED: Final = JobError(
    type="celery.Redelivered",
    message="the worker running the task stopped before acknowledging it; it runs again",
)

_lock = threading.Lock()
_apps: list[Any] = []  # installed apps, the latest last: the one CeleryStrategy reads by default
_attempts: dict[tuple[str, int | None], Attempt] = {}  # running attempts in this process
_warned: set[str] = set()


# -- installing ------------------------------------------------------------------------------


def install(app: Celery) -> None:
    """Connect immortus's hooks to Celery's signals, for ``app``: one line, in every process.

    Call it where the app is created, so that the web process (the enqueuer) and the worker
    both run it. Installing again is harmless. Celery's signals are process-wide: once
    installed, the hooks see the tasks of every app, and report those whose name is tracked.
    ``app`` becomes the app :class:`CeleryStrategy` reads when given none.
    """
    with _lock:
        if app not in _apps:
            _apps.append(app)
    for signal, receiver in _RECEIVERS:
        signal.connect(receiver, weak=False, dispatch_uid=f"immortus.{signal.name}")


def uninstall(app: Celery) -> None:
    """Undo :func:`install` for ``app``; the hooks are disconnected once no app is installed."""
    with _lock:
        if app in _apps:
            _apps.remove(app)
        remaining = bool(_apps)
    if not remaining:
        for signal, receiver in _RECEIVERS:
            signal.disconnect(receiver, dispatch_uid=f"immortus.{signal.name}")


def installed() -> Celery | None:
    """Return the app installed last (the default of :class:`CeleryStrategy`), or ``None``."""
    with _lock:
        return _apps[-1] if _apps else None


def _the_app(app: Celery | None) -> Celery:
    return app if app is not None else installed() or current_app


def _job_class(name: object, task: object = None) -> str | None:
    """Return the task's job class when it is tracked, else ``None`` (the cheap early return)."""
    if isinstance(name, str) and registry.lookup(name) is not None:
        return name
    declared = getattr(getattr(task, "run", None), JOB_CLASS_ATTRIBUTE, None)
    if isinstance(declared, str) and isinstance(name, str) and name not in _warned:
        _warned.add(name)
        logger.warning(
            "immortus: Celery task %r is tracked as %r, so its hooks cannot find it; "
            "give it the task's name: @immortus.track(name=%r, queue='celery')",
            name,
            declared,
            name,
        )
    return None


# -- the hooks -------------------------------------------------------------------------------


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
        job_class = _job_class(message.get("task", sender))
        if job_class is None or (message.get("retries") or 0) > 0:
            return
        lifecycle.job_enqueued(str(message["id"]), job_class)
    except Exception:
        logger.exception("immortus: the Celery publish hook failed; the task was sent")


def _on_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    """When the worker receives a tracked task whose result says REVOKED: drop it unrun.

    Celery keeps revokes in each worker's memory, so a revoke sent while no worker listened is
    lost; :func:`revoke` also writes REVOKED to the result backend, which this reads.
    """
    try:
        backend = request.task.backend
        if _job_class(request.name) is None or isinstance(backend, DisabledBackend):
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
        job_class = _job_class(task.name, task)
        if job_class is None or task_id is None:
            return
        number = _attempt_number(task.request)
        if number is None:
            lifecycle.job_lost(task_id, _REDELIVERED, job_class)
        attempt = start_attempt(task_id, job_class, attempt=number)
        with _lock:
            _attempts[(task_id, number)] = attempt
    except Exception:
        logger.exception("immortus: the Celery prerun hook failed; the task runs untracked")


def _take(task_id: object, request: Any) -> Attempt | None:
    """Remove and return this process's running attempt of the task, if it has one."""
    with _lock:
        return _attempts.pop((str(task_id), _attempt_number(request)), None)


def _on_success(sender: Any = None, **_: Any) -> None:
    """After a tracked task returned (and its result was stored): ``job_finished``."""
    try:
        attempt = _take(sender.request.id, sender.request)
        if attempt is not None:
            attempt.finish()
    except Exception:
        logger.exception("immortus: the Celery success hook failed")


def _on_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    """After a tracked task asked for a retry: ``job_retrying`` with the error that caused it."""
    try:
        error = _failure(getattr(reason, "exc", None) or reason)
        attempt = _take(request.id, request)
        if attempt is not None:
            attempt.fail(error, final_attempt=False)
        elif _job_class(sender.name) is not None:
            lifecycle.job_retrying(request.id, error, sender.name)
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
            attempt.fail(_failure(exception))
        elif task_id is not None and _job_class(sender.name) is not None:
            lost = isinstance(exception, WorkerLostError)  # the pool child running it died
            report = lifecycle.job_lost if lost else lifecycle.job_failed
            report(task_id, _failure(exception), sender.name)
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
        elif _job_class(sender.name) is not None:
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


# -- cancelling ------------------------------------------------------------------------------


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
    app = _the_app(app)
    app.control.revoke(job_id, terminate=terminate, signal=signal)
    if isinstance(app.backend, DisabledBackend) or app.AsyncResult(job_id).state not in _WAITING:
        return
    recorded = _recorded(job_id)
    if recorded is not None and recorded.state not in (State.CREATED, State.RETRYING):
        return  # started (the backend shows STARTED only with task_track_started=True)
    app.backend.mark_as_revoked(job_id, reason="revoked")
    lifecycle.job_cancelled(job_id, None if recorded is None else recorded.job_class)


def _recorded(job_id: str) -> JobStatus | None:
    try:
        store = config.get_store()
        return None if store is None else store.get(job_id)
    except ImmortusError:
        logger.exception("immortus: cannot read job %r from the store; revoking anyway", job_id)
        return None


# -- the strategy ----------------------------------------------------------------------------


class CeleryStrategy(QueueStrategy):
    """The store's record of a job, corrected by what Celery's result backend keeps.

    ``app`` defaults to the one installed last (:func:`install`), else Celery's current app.
    With a key-value backend (Redis, Memcached...) :meth:`native_status_many` reads every job in
    one ``mget``. A backend that says PENDING tells nothing (Celery says it of ids it never
    saw), so the answer is then the store's: ``created`` if immortus saw the enqueue, else
    ``unknown``.
    """

    def __init__(self, app: Celery | None = None, store: Store | None = None) -> None:
        super().__init__(store)
        self._app = app

    @property
    def app(self) -> Celery:
        """The Celery app whose result backend is read."""
        return _the_app(self._app)

    def native_status(self, job_id: str) -> JobStatus | None:
        """Return what the result backend keeps about the job, or ``None`` if nothing.

        Raises:
            StoreUnavailable: the result backend cannot be reached.
        """
        return self.native_status_many([job_id]).get(job_id)

    def native_status_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Return the backend's statuses of the jobs it knows, in one round trip when it can.

        Raises:
            StoreUnavailable: the result backend cannot be reached.
        """
        backend = self.app.backend
        if isinstance(backend, DisabledBackend):
            return {}
        ids = list(dict.fromkeys(job_ids))
        errors = (OSError, OperationalError, *getattr(backend, "connection_errors", ()))
        try:
            metas = _read(backend, ids)
        except errors as exc:
            raise StoreUnavailable(
                f"Celery's result backend cannot be reached: {type(exc).__name__}"
            ) from exc
        found = {job_id: _status(job_id, meta) for job_id, meta in zip(ids, metas, strict=True)}
        return {job_id: status for job_id, status in found.items() if status is not None}


def _read(backend: Any, job_ids: list[str]) -> list[Mapping[str, Any] | None]:
    """Return each job's stored meta, undecoded exceptions kept as the dicts they are stored as."""
    if isinstance(backend, BaseKeyValueStoreBackend):
        if len(job_ids) == 1:  # a verify request's: a GET costs less than an MGET of one key
            raw = backend.get(backend.get_key_for_task(job_ids[0]))
            return [backend.decode(raw) if raw else None]
        try:
            raws = backend.mget([backend.get_key_for_task(job_id) for job_id in job_ids])
        except NotImplementedError:  # a key-value backend without get_many
            raws = [backend.get(backend.get_key_for_task(job_id)) for job_id in job_ids]
        if isinstance(raws, Mapping):
            raws = [raws.get(backend.get_key_for_task(job_id)) for job_id in job_ids]
        return [backend.decode(raw) if raw else None for raw in raws]
    return [backend.get_task_meta(job_id) for job_id in job_ids]


def _status(job_id: str, meta: Mapping[str, Any] | None) -> JobStatus | None:
    """Translate one stored meta into a status (the docs' state mapping table)."""
    if not isinstance(meta, Mapping):
        return None
    celery_state = meta.get("status")
    if not isinstance(celery_state, str) or celery_state in _SILENT:
        return None
    state = STATES.get(celery_state, State.STARTED)
    result = meta.get("result")
    retries = meta.get("retries")  # stored with result_extended=True
    name = meta.get("name")
    error = _error(result) if state in (State.FAILED, State.RETRYING) else None
    if state is State.FAILED and error is not None and error.type == _WORKER_LOST:
        state = State.LOST  # the pool child running it died
    return JobStatus(
        job_id=job_id,
        job_class=name if isinstance(name, str) else None,
        state=state,
        progress=_progress(result) if celery_state not in STATES else None,
        error=error,
        attempts=retries + 1 if isinstance(retries, int) and retries >= 0 else 1,
        finished_at=_when(meta.get("date_done")) if state.completed else None,
    )


def _failure(error: object) -> BaseException | JobError:
    """Return what a hook reports as a job's error: the exception itself when it is one."""
    if isinstance(error, BaseException):
        return error  # JobError.from_exception keeps its traceback, server-side
    return _error(error) or JobError(type="UnknownError", message=str(error))


def _error(stored: object) -> JobError | None:
    """Turn an exception, or the dict a JSON backend stores for one, into a ``JobError``.

    The traceback is never read from the backend: it stays there, on the server side.
    """
    module: object
    if isinstance(stored, BaseException):
        kind = type(stored)
        module, name, message = kind.__module__, kind.__qualname__, str(stored)
    elif isinstance(stored, Mapping) and isinstance(stored.get("exc_type"), str):
        module, name = stored.get("exc_module"), str(stored["exc_type"])
        message = _message(stored.get("exc_message", ()), module, name)
    else:
        return None
    if isinstance(module, str) and module not in ("builtins", "__main__"):
        name = f"{module}.{name}"
    return JobError(
        type=_shorten(name, MAX_ERROR_TYPE_LENGTH),
        message=_shorten(message, MAX_ERROR_MESSAGE_LENGTH),
    )


def _message(arguments: object, module: object = None, name: str = "") -> str:
    """Return what ``str()`` says of the exception made with these stored arguments.

    Only a built-in exception is rebuilt to ask it (``KeyError`` quotes its key); any other
    type is never imported on the strength of what the backend says.
    """
    if not isinstance(arguments, list | tuple):
        return str(arguments)
    builtin = getattr(builtins, name, None) if module == "builtins" else None
    if isinstance(builtin, type) and issubclass(builtin, Exception):
        with contextlib.suppress(Exception):
            return str(builtin(*arguments))
    if len(arguments) == 1:
        return str(arguments[0])
    return str(tuple(arguments)) if arguments else ""


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _progress(result: object) -> Progress | None:
    """Read ``{"current": n, "total": m}`` as a task's custom state meta (celery-progress's)."""
    if not isinstance(result, Mapping) or "current" not in result:
        return None
    try:
        return Progress(current=result["current"], total=result.get("total"), allow_overshoot=True)
    except InvalidProgress:
        return None


def _when(value: object) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
