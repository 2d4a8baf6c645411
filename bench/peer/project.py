"""The Django project and Celery app of ``bench/peer/``: both status views.

One module is the whole project: its Django settings (``DJANGO_SETTINGS_MODULE=
bench.peer.project``), its URLconf (``ROOT_URLCONF`` is this module) and its Celery app with the
seeded tasks. gunicorn serves ``django.core.wsgi:get_wsgi_application()``; the worker is
``celery -A bench.peer.project worker``. One site, two status routes, as a Django+Celery user
would mount them:

- ``GET /celery-progress/<task_id>/``: celery-progress's ``get_progress`` view;
- ``GET /immortus/verify/<job_id>/<job_class>?token=...``: immortus's verify view
  (``immortus.web.django.urls``), with the settings a user gets by default: no ``IMMORTUS``
  setting, so the store comes from ``IMMORTUS_STORE`` (an SQLite file) and job tokens are
  signed with a key derived from ``SECRET_KEY``. The job class selects the strategy inferred
  for ``@immortus.track(queue="celery")``: :class:`~immortus.queues.celery.CeleryStrategy`,
  which reads immortus's store and Celery's result backend.

The environment tells each process where things are:

- ``IMMORTUS_BENCH_PEER_REDIS``: the Redis database, Celery's broker and result backend. When it
  is set (the server and the worker), importing this module points the app at it, makes it
  Celery's current app (celery-progress reads ``AsyncResult(task_id)`` of the current app) and
  installs immortus's hooks, as a project's ``celery.py`` does. The benchmark's own process
  imports the module without it, calls :func:`configure` and installs the hooks only while it
  enqueues, so that importing the module changes nothing in a process that only reads its
  names (a test's).
- ``IMMORTUS_STORE``: immortus's store (read by immortus itself).

Each task reports progress both ways, with celery-progress's ``ProgressRecorder`` (a
``PROGRESS`` state in the result backend) and with :func:`immortus.progress` (the store), then
ends as its name says. :func:`in_progress` raises Celery's ``Ignore``: the result backend keeps
its ``PROGRESS`` state and the store its ``started`` record with progress, exactly what both
hold while a task runs, without holding a worker for the whole benchmark.
"""

from __future__ import annotations

import os
from typing import Final, NoReturn

from celery import Celery, Task  # type: ignore[import-untyped]
from celery.exceptions import Ignore  # type: ignore[import-untyped]
from celery_progress.backend import ProgressRecorder  # type: ignore[import-untyped]
from django.urls import include, path

import immortus
import immortus.queues.celery

#: The environment variable naming the Redis database (broker and result backend).
REDIS_ENV: Final = "IMMORTUS_BENCH_PEER_REDIS"
#: The queue the seeded tasks go to (so a stray ``celery`` queue is never drained).
QUEUE: Final = "immortus-bench-peer"

# -- Django settings ---------------------------------------------------------------------------

SECRET_KEY = "django-insecure-immortus-bench-only"  # noqa: S105  # a bench key, never deployed
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = __name__
INSTALLED_APPS = ["immortus.web.django", "celery_progress"]
#: ``django-admin startproject``'s middleware, less the three that need a database.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
DATABASES: dict[str, object] = {}
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}

# -- URLconf -----------------------------------------------------------------------------------

urlpatterns = [
    path("celery-progress/", include("celery_progress.urls")),
    path("immortus/", include("immortus.web.django.urls")),
]

# -- Celery ------------------------------------------------------------------------------------

app = Celery(__name__, set_as_current=False)
app.conf.update(
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"polling_interval": 0.2},  # a worker stops within 0.2 s
    worker_hijack_root_logger=False,
)


def configure(url: str) -> None:
    """Point the app at the Redis database ``url``: its broker and its result backend."""
    app.conf.update(broker_url=url, result_backend=url)


def _report(task: Task, number: int) -> None:
    """Report progress ``number % 100`` of 100 both ways: celery-progress's and immortus's."""
    row = number % 100
    ProgressRecorder(task).set_progress(row, 100, description=f"row {row}")
    immortus.progress(row, 100, f"row {row}")


@app.task(bind=True)  # type: ignore[untyped-decorator]
@immortus.track(queue="celery")
def finishes(self: Task, number: int) -> dict[str, int]:
    """Report progress, then succeed with a result."""
    _report(self, number)
    return {"rows": number}


@app.task(bind=True)  # type: ignore[untyped-decorator]
@immortus.track(queue="celery")
def fails(self: Task, number: int) -> None:
    """Report progress, then fail with an error."""
    _report(self, number)
    raise ValueError(f"row {number} is malformed")


@app.task(bind=True)  # type: ignore[untyped-decorator]
@immortus.track(queue="celery")
def in_progress(self: Task, number: int) -> NoReturn:
    """Report progress, then leave the task as it is mid-run (see the module docstring)."""
    _report(self, number)
    raise Ignore


if os.environ.get(REDIS_ENV):  # the server and the worker: what a project's celery.py does
    configure(os.environ[REDIS_ENV])
    app.set_current()
    immortus.queues.celery.install(app)
