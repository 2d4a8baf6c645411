"""Every immortus route, to include under a prefix of the project's URLconf in one line.

    urlpatterns = [path("immortus/", include("immortus.web.django.urls")), ...]

The routes are those of :data:`immortus.web.routes.ROUTES`, named ``immortus:verify``,
``immortus:verify_class``, ``immortus:batch``, ``immortus:stream``, ``immortus:stream_class``,
``immortus:stream_jobs``, ``immortus:cancel``, ``immortus:cancel_class``, ``immortus:group``,
``immortus:script``
(``immortus.js``) and ``immortus:module`` (``immortus.mjs``) for ``reverse()`` and
``{% url %}``. The last pattern
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
from immortus.web.routes import ROUTES, Route

app_name = "immortus"

#: The view of each operation of the route table.
_VIEWS: dict[str, views.View] = {
    "verify": views.verify,
    "batch": views.batch,
    "stream": views.stream,
    "stream_jobs": views.stream_jobs,
    "cancel": views.cancel,
    "group": views.group,
    "script": views.script,
}


def _pattern(route: Route) -> URLPattern:
    """The URL pattern of ``route``; a script route passes its file name to the view."""
    rule = route.path_with(lambda name: f"<str:{name}>").lstrip("/")
    extra = {"name": rule} if route.operation == "script" else {}
    return path(rule, _VIEWS[route.operation], extra, name=route.name)


urlpatterns: list[URLPattern] = [
    *(_pattern(route) for route in ROUTES),
    CheckedURLPattern(RegexPattern(r"^(?P<path>(?s:.*))$", is_endpoint=True), views.no_route),
]
