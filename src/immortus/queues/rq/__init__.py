"""RQ: report tracked jobs' lives to immortus, and read RQ's own job hash.

Install the hooks with RQ's own extension point, its job class, on both sides::

    queue = install(Queue(connection=Redis()))              # where jobs are enqueued
    $ rq worker --job-class immortus.queues.rq.TrackedJob   # where they run

and opt a job in with ``@immortus.track(queue="rq")``. :class:`TrackedJob` is RQ's ``Job``
with these hooks; each returns at once for a job that is not tracked:

==========================  ===================================  ==========================
immortus event              RQ moment                            process
==========================  ===================================  ==========================
``enqueued``                ``Job.create``, inside ``enqueue*``  the enqueuing one
``started``, progress       ``Job.perform`` begins               the work horse
``finished``                ``Job.perform`` returns              the work horse
``retrying`` / ``failed``   ``Job.perform`` raises (or returns   the work horse
                            ``Retry``); retrying, with
                            ``retry_at`` from RQ's interval,
                            while RQ has retries left
``cancelled``               the stopped callback after           the worker
                            ``send_stop_job_command``;
                            ``Job.cancel()``;                    the cancelling one
                            ``immortus.JobCancelled`` raised     the work horse
                            in the job (never retried)
``lost``                    RQ fails a job whose work horse      the worker; the one that
                            died (``Job.send_webhooks``), or     cleans RQ's started
                            finds it abandoned                   registry
``retrying``                RQ retries a job whose work horse    the same
                            died (``Job.retry``)
==========================  ===================================  ==========================

Every hook logs a tracking failure (a store that is down, say) and never breaks the job or
the enqueue (see :mod:`immortus.lifecycle`).

:class:`RQStrategy`, inferred for jobs tracked with ``queue="rq"``, answers from immortus's
store, completed by RQ's job hash (:data:`STATES` maps RQ's states to immortus's): it answers
for jobs enqueued before the hooks were installed, and ends a job whose work horse died. A job
RQ failed because the process running it died (a killed work horse, an abandoned job) reads
``lost``, from the hooks and from the hash alike.

:func:`immortus.cancel` stops RQ jobs through :func:`cancel` (registered when this package is
imported): ``Job.cancel`` for a waiting job, RQ's stop command for a running one.

One concern per module: :mod:`.job` (:class:`TrackedJob`, the hooks), :mod:`.hooks`
(``install``, :func:`identify`), :mod:`.strategy` (:class:`RQStrategy` and the state mapping),
:mod:`.errors` (RQ's failure texts read as immortus's errors), :mod:`.canceller` (:func:`cancel`).
"""

from __future__ import annotations

from immortus.exceptions import MissingDependency

try:
    import redis  # noqa: F401
    import rq  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without rq
    raise MissingDependency("rq", "rq") from exc

from immortus.queues.rq.canceller import QUEUE, cancel
from immortus.queues.rq.errors import (
    ABANDONED,
    CANCELLED_ERROR,
    HORSE_DIED,
    LOST_ERRORS,
    error_from_traceback,
)
from immortus.queues.rq.hooks import identify, install, installed, uninstall
from immortus.queues.rq.job import HORSE_FLUSH_SECONDS, TrackedJob, tracked_job_class
from immortus.queues.rq.strategy import PROGRESS_META_KEY, STATES, RQStrategy

__all__ = [
    "ABANDONED",
    "CANCELLED_ERROR",
    "HORSE_DIED",
    "HORSE_FLUSH_SECONDS",
    "LOST_ERRORS",
    "PROGRESS_META_KEY",
    "QUEUE",
    "STATES",
    "RQStrategy",
    "TrackedJob",
    "cancel",
    "error_from_traceback",
    "identify",
    "install",
    "installed",
    "tracked_job_class",
    "uninstall",
]
