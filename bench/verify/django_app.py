"""The Django project that ``bench/verify/`` runs under gunicorn: settings, URLs, app.

One module is the whole project: ``DJANGO_SETTINGS_MODULE`` and ``ROOT_URLCONF`` both name it,
and gunicorn serves ``bench.verify.django_app:application``. ``/immortus/`` includes
``immortus.web.django.urls`` over the SQLite store named by ``IMMORTUS_BENCH_STORE``;
``GET /bare/<job_id>/<job_class>`` answers a fixed JSON body as long as a seeded job's verify
body, with the same headers, and does nothing else.

No middleware, no database: everything both routes share is the server and Django's request
handling, so nothing common to both dilutes the cost of immortus's own work. The endpoints are
secured with the benchmark's key, as in the Starlette and Flask apps: verify checks each
request's token.
"""

from __future__ import annotations

from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, include, path

from bench.verify.common import SECRET_KEY as BENCH_KEY
from bench.verify.common import app_settings, track_job_class
from immortus.web.responses import JSON_HEADERS

SETTINGS = app_settings()

SECRET_KEY = "immortus-bench-only"  # noqa: S105  # a benchmark's key, never deployed
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = __name__
INSTALLED_APPS = ["immortus.web.django"]
MIDDLEWARE: list[str] = []
DATABASES: dict[str, object] = {}
IMMORTUS = {"store": SETTINGS.store_url, "secret_key": BENCH_KEY}

track_job_class()
application = get_wsgi_application()  # django.setup(): reads the settings above


def bare(request: HttpRequest, job_id: str, job_class: str) -> HttpResponse:
    """The baseline: the same path shape, a body of the same size, no work."""
    return HttpResponse(SETTINGS.bare, headers=dict(JSON_HEADERS))


urlpatterns: list[URLPattern | URLResolver] = [
    path("immortus/", include("immortus.web.django.urls")),
    path("bare/<str:job_id>/<str:job_class>", bare),
]
