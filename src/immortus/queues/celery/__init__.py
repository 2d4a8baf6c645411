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
``task_retry``              worker            ``job_retrying`` with the error and
                                              ``retry_at`` (the retry's eta or countdown)
``task_success``            worker            ``job_finished``
``task_failure``            worker            ``job_failed`` with the error; ``job_lost`` for
                                              a ``WorkerLostError`` (a pool child died)
``task_revoked``            worker (main)     ``job_cancelled``
``task_postrun``            worker            ends an attempt no other signal ended
``immortus.JobCancelled``   worker            ``job_cancelled``; REVOKED in the result
raised by a tracked task                      backend, and Celery's ``Ignore`` (no retry)
==========================  ================  ===========================================

Every hook logs what goes wrong on the ``immortus`` logger and never raises: tracking never
breaks a task or an enqueue. :class:`CeleryStrategy` merges immortus's store with the result
backend (``docs/queues/celery.md`` has the state mapping table).

One concern per module: :mod:`.hooks` (the signals, ``install``), :mod:`.names` (which tasks
are tracked, and :func:`identify`), :mod:`.strategy` (:class:`CeleryStrategy` and the state
mapping), :mod:`.cancel` (:func:`revoke`, the canceller of :func:`immortus.cancel`),
:mod:`.errors` (Celery's stored exceptions read as immortus's errors). Needs the
``immortus[celery]`` extra.
"""

from __future__ import annotations

from immortus.exceptions import MissingDependency

try:
    import celery  # type: ignore[import-untyped]  # noqa: F401  # the extra is installed
    import kombu  # noqa: F401
except ImportError as exc:
    raise MissingDependency("celery", "celery") from exc

from immortus.queues.celery.cancel import QUEUE, revoke
from immortus.queues.celery.hooks import install, installed, uninstall
from immortus.queues.celery.names import PUBLISHED_KEPT, identify
from immortus.queues.celery.strategy import STATES, CeleryStrategy

__all__ = [
    "PUBLISHED_KEPT",
    "QUEUE",
    "STATES",
    "CeleryStrategy",
    "identify",
    "install",
    "installed",
    "revoke",
    "uninstall",
]
