"""Django's task signals, turned into immortus's lifecycle events.

:func:`install` connects receivers to the signals of every task library present
(:mod:`immortus.queues.django_tasks._library`), and, when ``django-tasks-db`` is installed,
to the deletion of its rows:

===================================  =====================================  ======================
signal                               when                                   immortus event
===================================  =====================================  ======================
``task_enqueued``                    in the enqueuing process, before       ``job_enqueued``
                                     ``enqueue()`` returns
``task_started``                     in the worker, in the thread that      ``job_started``; the
                                     then runs the task                     job becomes current
``task_finished`` (SUCCESSFUL)       in the worker, after the task          ``job_finished``
``task_finished`` (FAILED)           in the worker, while handling the      ``job_failed`` with
                                     exception                              the exception
``task_finished`` (FAILED by         the worker was stopped mid-task        ``job_cancelled``
``SystemExit``/``KeyboardInterrupt``)
``post_delete`` of a READY row       the task was deleted before a worker   ``job_cancelled``
                                     took it (the admin, :func:`cancel`)
===================================  =====================================  ======================

Only tracked jobs (``@immortus.track`` under ``@task``) are reported; the others cost a dict
lookup. A receiver never raises: Django sends these signals with ``send()``, so an exception
would fail the enqueue or the task. Everything is logged on the ``immortus`` logger instead.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Final

from django.apps import apps
from django.db import transaction
from django.db.models.signals import post_delete

from immortus import lifecycle, runtime
from immortus.jobs import Attempt, start_attempt
from immortus.queues._kit import AttemptBook
from immortus.queues.django_tasks._library import LIBRARIES
from immortus.queues.django_tasks.names import job_class_of_path, tracked_job_class
from immortus.queues.django_tasks.results import error_of, is_interruption
from immortus.status import JobError

__all__ = ["install", "installed", "uninstall"]

logger = logging.getLogger("immortus")

#: The model of ``django-tasks-db``'s task rows, as a lazy reference.
DATABASE_MODEL: Final = "django_tasks_database.DBTaskResult"
_DATABASE_APP: Final = "django_tasks_db"
_UID: Final = "immortus.queues.django_tasks"


class DjangoTasksState(runtime.LockedPart):
    """Whether the receivers are connected, and the attempts running: a runtime part.

    A reset forgets the attempts in flight; the install stays (:func:`uninstall` undoes it).
    """

    def __init__(self) -> None:
        super().__init__()
        self.installed = False
        #: The attempts running in this process, by task result id: begun by ``task_started``,
        #: ended by ``task_finished`` (both are sent in the thread that runs the task).
        self.attempts: AttemptBook[str, Attempt] = AttemptBook()

    def reset(self) -> None:
        self.attempts.clear()


_state: Final = runtime.part(DjangoTasksState)


def on_task_enqueued(sender: object, task_result: Any = None, **kwargs: object) -> None:
    """Called in the enqueuing process once the task is enqueued: report ``enqueued``.

    Never raises (see the module docstring).
    """
    try:
        job_class = tracked_job_class(task_result.task)
        if job_class is not None:
            lifecycle.job_enqueued(str(task_result.id), job_class)
    except Exception:
        logger.exception("immortus: cannot track the enqueue of Django task %r", task_result)


def on_task_started(sender: object, task_result: Any = None, **kwargs: object) -> None:
    """Called in the worker just before the task runs: report ``started`` with the attempt.

    The attempt's number is the count of workers that took the task. The job becomes the
    current job of this thread, so ``immortus.progress()`` works in the task. Never raises.
    """
    try:
        job_class = tracked_job_class(task_result.task)
        if job_class is None:
            return
        job_id = str(task_result.id)
        attempt = start_attempt(job_id, job_class, attempt=len(task_result.worker_ids) or None)
        _state.attempts.put(job_id, attempt)
    except Exception:
        logger.exception("immortus: cannot track the start of Django task %r", task_result)


def on_task_finished(sender: object, task_result: Any = None, **kwargs: object) -> None:
    """Called in the worker once the task ended: report ``finished``, ``failed`` or ``cancelled``.

    A failure's error is the exception being handled (Django sends this signal from its
    ``except`` block), or else the one the result recorded. Never raises.
    """
    try:
        job_id = str(task_result.id)
        attempt = _state.attempts.take(job_id)
        if attempt is None:  # started elsewhere, or before install(): report without context
            job_class = tracked_job_class(task_result.task)
            if job_class is None:
                return
            attempt = start_attempt(job_id, job_class, attempt=len(task_result.worker_ids) or None)
        _end(attempt, task_result)
    except Exception:
        logger.exception("immortus: cannot track the end of Django task %r", task_result)


def _end(attempt: Attempt, task_result: Any) -> None:
    if str(task_result.status) != "FAILED":
        attempt.finish()
        return
    handled = sys.exc_info()[1]
    if handled is not None and is_interruption(type(handled)):
        attempt.cancel()
        return
    errors = list(task_result.errors)
    recorded = errors[-1] if errors else None
    if handled is None and recorded is not None and is_interruption(recorded.exception_class_path):
        attempt.cancel()
        return
    error = handled if handled is not None else error_of(recorded)
    attempt.fail(error or JobError(type="Error", message="the task failed; no error was recorded"))


def on_row_deleted(
    sender: object, instance: Any = None, using: str | None = None, **kwargs: object
) -> None:
    """Called when a ``django-tasks-db`` row is deleted: a READY one is reported ``cancelled``.

    Deleting a task no worker has taken yet is how that backend drops a queued task (the
    admin does it; so does :func:`immortus.queues.django_tasks.cancel`). Never raises.
    """
    try:
        if str(instance.status) != "READY":
            return
        job_class = job_class_of_path(instance.task_path)
        if job_class is not None:
            job_id = str(instance.id)
            # Once the deletion is committed: a rolled-back one cancelled nothing.
            transaction.on_commit(lambda: lifecycle.job_cancelled(job_id, job_class), using=using)
    except Exception:
        logger.exception("immortus: cannot track the deletion of Django task %r", instance)


def install() -> None:
    """Connect immortus's receivers to Django's task signals; calling it again does nothing.

    ``"immortus.queues.django_tasks"`` in ``INSTALLED_APPS`` calls it when Django starts; call
    it yourself from an ``AppConfig.ready()`` otherwise. Called once the app registry is
    ready, it also tracks the deletion of ``django-tasks-db`` rows (see :func:`on_row_deleted`).
    """
    with _state.lock:
        if _state.installed:
            return
        _state.installed = True
    for library in LIBRARIES:
        library.task_enqueued.connect(on_task_enqueued, dispatch_uid=f"{_UID}.enqueued")
        library.task_started.connect(on_task_started, dispatch_uid=f"{_UID}.started")
        library.task_finished.connect(on_task_finished, dispatch_uid=f"{_UID}.finished")
    if apps.apps_ready and apps.is_installed(_DATABASE_APP):
        post_delete.connect(on_row_deleted, sender=DATABASE_MODEL, dispatch_uid=f"{_UID}.deleted")


def uninstall() -> None:
    """Disconnect what :func:`install` connected (for tests, and to pause tracking)."""
    with _state.lock:
        _state.installed = False
        _state.attempts.clear()
    for library in LIBRARIES:
        library.task_enqueued.disconnect(dispatch_uid=f"{_UID}.enqueued")
        library.task_started.disconnect(dispatch_uid=f"{_UID}.started")
        library.task_finished.disconnect(dispatch_uid=f"{_UID}.finished")
    if apps.apps_ready and apps.is_installed(_DATABASE_APP):
        post_delete.disconnect(sender=DATABASE_MODEL, dispatch_uid=f"{_UID}.deleted")


def installed() -> bool:
    """Tell whether :func:`install` connected the receivers in this process."""
    return _state.installed
