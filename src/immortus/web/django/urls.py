"""Every immortus route, to include under a prefix of the project's URLconf in one line.

    urlpatterns = [path("immortus/", include("immortus.web.django.urls")), ...]

The routes are named ``immortus:verify``, ``immortus:verify_class``, ``immortus:batch``,
``immortus:stream``, ``immortus:stream_class``, ``immortus:script`` (``immortus.js``) and
``immortus:module`` (``immortus.mjs``) for ``reverse()`` and ``{% url %}``. The last pattern
answers every other path under the prefix with a JSON 404 (and keeps ``APPEND_SLASH`` from
redirecting them); it also carries the system checks that report a missing app
(:mod:`.checks`). A job id or job class holding ``/`` (even
percent-encoded) cannot be named in a path: servers decode ``%2F`` before routing; ask for
such a job with the batch route.
"""

from __future__ import annotations

from django.urls import URLPattern, path
from django.urls.resolvers import RegexPattern

from immortus.web.django import views
from immortus.web.django.checks import CheckedURLPattern
from immortus.web.script import SCRIPTS

app_name = "immortus"

urlpatterns: list[URLPattern] = [
    path("verify", views.batch, name="batch"),
    path("verify/<str:job_id>", views.verify, name="verify"),
    path("verify/<str:job_id>/<str:job_class>", views.verify, name="verify_class"),
    path("stream/<str:job_id>", views.stream, name="stream"),
    path("stream/<str:job_id>/<str:job_class>", views.stream, name="stream_class"),
    *(path(file, views.script, {"name": file}, name=kind) for kind, file in SCRIPTS.items()),
    CheckedURLPattern(RegexPattern(r"^(?P<path>(?s:.*))$", is_endpoint=True), views.no_route),
]
