"""Queue integrations: one module per queue, each imported only when used.

Each module holds what its queue needs: the hooks that turn the queue's own events (signals,
middleware, callbacks) into immortus's lifecycle events, a one-line ``install``, and, where the
queue keeps state of its own, a backend-native strategy built on
:class:`~immortus.queues.native.QueueStrategy`. Importing :mod:`immortus.queues` imports no
queue library.

==================  ===========================  ============================================
module              extra                        strategy inferred for its jobs
==================  ===========================  ============================================
``celery``          ``immortus[celery]``         ``CeleryStrategy``: the store, then the
                                                 result backend
``rq``              ``immortus[rq]``             ``RQStrategy``: the store, then the job hash
``huey``            ``immortus[huey]``           the store strategy (Huey keeps no status)
``dramatiq``        ``immortus[dramatiq]``       the store strategy (Dramatiq keeps none)
``django_tasks``    ``immortus[django]``         ``DjangoTaskStrategy``: the store, then the
                                                 backend's ``get_result``
``delayed_job``     ``immortus[sql]``            ``DelayedJobStrategy``: the ``delayed_jobs``
                                                 table (as the Ruby gem immortus reads it)
``sidekiq``         ``immortus[redis]``          ``SidekiqStrategy``: Sidekiq's Redis keys
==================  ===========================  ============================================

The Python queues' modules have one shape (:class:`immortus.queues._kit.QueueIntegration`):
``install``, ``uninstall``, ``installed``, ``identify`` (the job id and job class of the
queue's job object), and a way to cancel where the queue has one. :func:`identify` finds the
module that knows a job object.
"""

from __future__ import annotations

import importlib
import logging
from typing import Final

__all__ = ["identify"]

logger = logging.getLogger("immortus")

#: The queue library a job object's class comes from (the first part of its module's name),
#: and the module of ours that knows its job objects.
_INTEGRATIONS: Final = {
    "celery": "celery",
    "rq": "rq",
    "huey": "huey",
    "dramatiq": "dramatiq",
    "django": "django_tasks",
    "django_tasks": "django_tasks",
}


def identify(job: object) -> tuple[str | None, str | None]:
    """Return the ``(job_id, job_class)`` of a queue's own job object.

    ``job`` is what enqueuing returned: a Celery ``AsyncResult``, an RQ ``Job``, a Huey
    ``Result`` (or task), a Dramatiq ``Message``, a Django ``TaskResult``, or an object of a
    class derived from one of them. The job class is the tracked one (what ``@immortus.track``
    registered), or ``None`` when the job is not tracked or its queue cannot tell; ``(None,
    None)`` when ``job`` is none of these. The queue's library is never imported here: an
    object of it exists only once it is loaded. Never raises: a failure is logged.
    """
    for kind in type(job).__mro__:
        package = kind.__module__.partition(".")[0]
        name = _INTEGRATIONS.get(package)
        if name is None or (package == "django" and not kind.__module__.startswith("django.tasks")):
            continue
        try:
            integration = importlib.import_module(f"{__name__}.{name}")
            found: tuple[str | None, str | None] | None = integration.identify(job)
        except Exception:
            logger.exception("immortus: cannot identify the %s job %r", name, job)
            return None, None
        if found is not None:
            return found
    return None, None
