"""What the verify benchmark's command and its three apps share.

The apps (``bench/verify/starlette_app.py`` for Starlette, ``bench/verify/flask_app.py``,
``bench/verify/django_app.py``) run in server processes of their own: they read the store URL and
the size of the bare body from the environment (:func:`app_settings`), and each serves
immortus's routes beside a bare route ``GET /bare/{job_id}/{job_class}`` answering
:func:`bare_body` with immortus's JSON headers. The routes are secured with :data:`SECRET_KEY`,
as an app deploys them: every verify request carries its job's token (``?token=...``), and the
bare route is asked with the same query string. The Starlette and Flask apps also mount the
routes under :data:`KEPT_PREFIX` with a verifier keeping the statuses it read lately
(``Verifier(answer_staleness=...)``; Django's routes take their verifier from the settings).
"""

from __future__ import annotations

import os
from typing import Final, NamedTuple

import immortus

__all__ = [
    "ANSWER_STALENESS",
    "BODY_SIZE_VARIABLE",
    "JOB_CLASS",
    "KEPT_PREFIX",
    "SECRET_KEY",
    "STORE_VARIABLE",
    "AppSettings",
    "app_settings",
    "bare_body",
    "track_job_class",
]

#: The tracked job class every seeded job belongs to.
JOB_CLASS: Final = "bench.report"
#: The key the apps sign and check job tokens with (a benchmark's, never deployed).
SECRET_KEY: Final = "immortus-bench-verify-key"  # noqa: S105  # a benchmark's, never deployed
#: Where the Starlette and Flask apps mount immortus's routes a second time, with a verifier
#: that answers unchanged jobs from the statuses it read lately (``answer_staleness``).
KEPT_PREFIX: Final = "/kept"
#: The staleness bound of those routes: the streams' change feed's tick.
ANSWER_STALENESS: Final = 0.05
#: The environment variables the command hands its apps.
STORE_VARIABLE: Final = "IMMORTUS_BENCH_STORE"
BODY_SIZE_VARIABLE: Final = "IMMORTUS_BENCH_BODY_SIZE"


class AppSettings(NamedTuple):
    """What an app reads from its environment: the store's URL and the bare route's body."""

    store_url: str
    bare: bytes


def bare_body(size: int) -> bytes:
    """Return a JSON object of exactly ``size`` bytes (at least 26)."""
    head = b'{"job_id":"bare","pad":"'
    tail = b'"}'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


def app_settings() -> AppSettings:
    """Read the app's settings from the environment the command starts the server with.

    Raises:
        KeyError: the app was started by something other than ``bench.verify``.
    """
    return AppSettings(os.environ[STORE_VARIABLE], bare_body(int(os.environ[BODY_SIZE_VARIABLE])))


def track_job_class() -> None:
    """Declare :data:`JOB_CLASS` a tracked job (the seeded jobs' class), as an app does."""

    @immortus.track(name=JOB_CLASS)
    def report() -> None:
        """The job class the seeded jobs belong to (never run here)."""
