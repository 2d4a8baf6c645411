"""The Django adapter: every immortus route under one prefix, included in one line.

    # settings.py
    INSTALLED_APPS = [..., "immortus.web.django"]
    IMMORTUS = {"store": "sqlite:///var/jobs.db", "token_max_age": 3600}

    # urls.py
    urlpatterns = [path("immortus/", include("immortus.web.django.urls")), ...]

    # an enqueue view
    from immortus.web.django import render_job_response, subject_of

    def start_report(request):
        job = build_report.delay(...)
        return render_job_response(job, "reports.build", subject=subject_of(request))

Needs the ``immortus[django]`` extra. ``IMMORTUS`` holds keyword arguments of
:func:`immortus.configure`, applied once when Django starts (see :mod:`.settings`); unless it
names a ``secret_key``, job tokens are signed with a key derived from Django's ``SECRET_KEY``.
The views (:mod:`.views`) answer as the Starlette adapter does; see ``docs/django.md``.
``IMMORTUS_SUBJECT`` (optional) names the function binding tokens to a user or session; see
:mod:`.subject`.
"""

from __future__ import annotations

from immortus.exceptions import MissingDependency

try:
    import django  # noqa: F401  # fail here, with the extra to install, not deep in a view
except ImportError as exc:
    raise MissingDependency("django", "django") from exc

from immortus.web.django.responses import render_job_response
from immortus.web.django.subject import subject_of

__all__ = ["render_job_response", "subject_of"]
