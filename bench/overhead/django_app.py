"""The Django tasks of the tracking overhead benchmark, and :class:`DjangoBench`.

Django runs configured by this module (no settings module): the ``django-tasks-db`` database
backend on the SQLite file :data:`~bench.overhead.worker.QUEUE_URL_ENV` names, in WAL mode with
``synchronous=NORMAL``, as a tuned SQLite runs. Each kind of task has its own queue and its
own long-lived ``db_worker``, started through :func:`main`; the benchmark enqueues from its own
process, importing this module. A tracked worker has ``immortus.queues.django_tasks`` in
``INSTALLED_APPS``, the one line of ``docs/queues/django_tasks.md``, and counts its store
calls, reported at exit; an untracked one is Django as it comes.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import uuid
from collections.abc import Sequence
from typing import Any, Final

import django
from django.conf import settings

import immortus
from bench.common import BenchError
from bench.overhead.worker import (
    QUEUE_URL_ENV,
    JobClock,
    in_worker,
    queue_name,
    tracked_worker,
    watch_store_calls,
)

#: What a worker runs: ``python -c <this> db_worker ...``.
WORKER_ENTRY: Final = f"from {__name__} import main; main()"

if not settings.configured:
    track = not in_worker() or tracked_worker()  # the benchmark's process enqueues both kinds
    settings.configure(
        SECRET_KEY="immortus-bench-only",  # noqa: S106 - never served
        USE_TZ=True,
        INSTALLED_APPS=["django_tasks_db", *(["immortus.queues.django_tasks"] if track else [])],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.environ[QUEUE_URL_ENV],
                "OPTIONS": {
                    "timeout": 30,
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
                },
            }
        },
        TASKS={
            "default": {
                "BACKEND": "django_tasks_db.DatabaseBackend",
                "QUEUES": [queue_name(tracked=False), queue_name(tracked=True)],
            }
        },
    )
    django.setup()

from django.tasks import task  # noqa: E402 - needs the settings above

clock = JobClock.from_environment()


@task(queue_name=queue_name(tracked=False))
def gate(jobs: int, batch: int, release: str) -> None:
    """Hold the worker until the benchmark has enqueued the batch behind this task."""
    clock.gate(jobs, batch, release)


@task(queue_name=queue_name(tracked=False))
def untracked_noop() -> None:
    """A task that does nothing but tick the clock: no immortus anywhere near it."""
    clock.tick()


@task(queue_name=queue_name(tracked=True))
@immortus.track(queue="django_tasks")
def tracked_noop() -> None:
    """The same task, opted in to tracking."""
    clock.tick()


if tracked_worker():
    atexit.register(watch_store_calls().write)  # db_worker exits normally on SIGTERM


def main() -> None:
    """Run the Django command of ``sys.argv[1:]`` (``db_worker ...``) in this configuration."""
    from django.core.management import execute_from_command_line

    execute_from_command_line(["django", *sys.argv[1:]])


class DjangoBench:
    """Django tasks as the benchmark drives them: enqueue, the workers, the check."""

    name = "Django tasks"
    uses_redis = False
    counts_store_calls = True
    stop_signal = signal.SIGTERM  # db_worker ends its running task, then exits
    worker = "db_worker, django-tasks-db on SQLite (WAL)"

    def __init__(self) -> None:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)

    def reset(self) -> None:
        """Delete every task row before the workers start."""
        from django_tasks_db.models import DBTaskResult

        DBTaskResult.objects.all()._raw_delete(DBTaskResult.objects.db)

    def worker_command(self, *, tracked: bool) -> list[str]:
        """``db_worker`` on the queue of one kind of task, polling twice a second when idle."""
        return [
            sys.executable, "-c", WORKER_ENTRY, "db_worker",
            "--queue-name", queue_name(tracked=tracked), "--interval", "0.5",
            "--no-startup-delay", "--no-reload", "--worker-id", f"bench-{uuid.uuid4().hex[:12]}",
        ]  # fmt: skip

    def enqueue_gate(self, jobs: int, batch: int, release: str, *, tracked: bool) -> None:
        """Enqueue the gate task in front of a batch."""
        gate.using(queue_name=queue_name(tracked=tracked)).enqueue(jobs, batch, release)

    def enqueue(self, count: int, *, tracked: bool) -> list[str]:
        """Enqueue ``count`` tasks, with immortus's hooks in this process (tracked) or none."""
        from immortus.queues.django_tasks.hooks import install, uninstall

        if tracked:
            install()
        else:
            uninstall()  # Django as it comes
        chosen: Any = tracked_noop if tracked else untracked_noop
        return [str(chosen.enqueue().id) for _ in range(count)]

    def check(self, ids: Sequence[str], *, tracked: bool) -> None:
        """Check the worker ran every task: each row ``SUCCESSFUL``.

        Raises:
            BenchError: a task row is missing or did not succeed.
        """
        from django.tasks import TaskResultStatus
        from django_tasks_db.models import DBTaskResult

        succeeded = DBTaskResult.objects.filter(id__in=ids, status=TaskResultStatus.SUCCESSFUL)
        done = succeeded.count()
        if done != len(ids):
            raise BenchError(f"{len(ids) - done} of {len(ids)} Django tasks have not succeeded")

    def close(self) -> None:
        """Close Django's database connections."""
        from django.db import connections

        connections.close_all()
