"""Settings of the task project; the database comes from ``IMMORTUS_DJANGO_TASKS_DB``.

That variable holds an SQLite file's path or a ``postgresql://`` URL. immortus's own store
comes from ``IMMORTUS_STORE``, as in any worker process.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

SECRET_KEY = "django-insecure-immortus-task-tests-only"  # noqa: S105  # never deployed
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django_tasks_db", "immortus.queues.django_tasks"]

_DATABASE = os.environ["IMMORTUS_DJANGO_TASKS_DB"]
if _DATABASE.startswith("postgresql://"):
    _url = urlsplit(_DATABASE)
    DATABASES: dict[str, dict[str, object]] = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _url.path.lstrip("/"),
            "USER": _url.username or "",
            "HOST": _url.hostname or "",
            "PORT": _url.port or "",
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _DATABASE,
            "OPTIONS": {"timeout": 30},
        }
    }

TASKS = {
    # The database backend, which db_worker runs: results in the database, get_result works.
    "default": {"BACKEND": "django_tasks_db.DatabaseBackend"},
    # Two backends without results (supports_get_result is False).
    "immediate": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"},
    "dummy": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"},
}
