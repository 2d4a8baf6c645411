"""Django tasks (``django.tasks``, Django 6) tracked by immortus, with any task backend.

    # settings.py: the one line that installs the hooks
    INSTALLED_APPS = [..., "django_tasks_db", "immortus.queues.django_tasks"]

    # tasks.py: the one line that opts a task in, UNDER @task
    from django.tasks import task
    import immortus

    @task
    @immortus.track(queue="django_tasks")
    def build_report(rows: int) -> None:
        for row in range(rows):
            immortus.progress(row + 1, rows)

Hooks (:mod:`.hooks`) turn Django's task signals into immortus's lifecycle events in the
enqueuing process and in the worker; :class:`DjangoTaskStrategy`, inferred for the tracked
tasks, reads immortus's store and the backend's own results (:mod:`.results` holds the state
mapping). Django tasks are never retried. :func:`immortus.cancel` deletes a task still waiting
in ``django-tasks-db`` (:func:`cancel`), and stops a running one at its next
``immortus.progress()`` (the store's cancel request: ``immortus.JobCancelled`` fails the task,
which reads ``cancelled``). The ``django-tasks`` backport
(Python 3.11) works the same way: its signals are connected too. See
``docs/queues/django_tasks.md``.

Needs the ``immortus[django-tasks]`` extra (Django 6, or the ``django-tasks`` backport before it).
"""

from __future__ import annotations

from immortus.queues.django_tasks.database import QUEUE, cancel
from immortus.queues.django_tasks.hooks import install, installed, uninstall
from immortus.queues.django_tasks.names import identify
from immortus.queues.django_tasks.results import STATES
from immortus.queues.django_tasks.strategy import DjangoTaskStrategy

__all__ = [
    "QUEUE",
    "STATES",
    "DjangoTaskStrategy",
    "cancel",
    "identify",
    "install",
    "installed",
    "uninstall",
]
