"""A Django project serving the dashboard, in a process of its own, for the live test.

Run as ``python -m tests.dashboard.django_site DIRECTORY PREFIX`` with ``IMMORTUS_STORE`` and
the variables of :mod:`tests.dashboard.live_app` set. It makes a staff user and logs it in,
writes ``{"port": PORT, "session": SESSION_KEY}`` to ``DIRECTORY/site.json``, then serves the
dashboard at ``/PREFIX/`` on 127.0.0.1:PORT (Django's threaded server, Django's sessions, auth
and CSRF middleware) until SIGTERM. Never import it: it configures Django's settings.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import FrameType

import django
from django.conf import settings

from tests.dashboard.django_parts import DASHBOARD_APPS, DASHBOARD_MIDDLEWARE

DIRECTORY, PREFIX = Path(sys.argv[1]), sys.argv[2]

settings.configure(
    DEBUG=False,
    SECRET_KEY="dashboard-live-tests",  # noqa: S106 - a test's key
    ALLOWED_HOSTS=["127.0.0.1"],
    ROOT_URLCONF=__name__,
    USE_TZ=True,
    INSTALLED_APPS=DASHBOARD_APPS,
    MIDDLEWARE=DASHBOARD_MIDDLEWARE,
    DATABASES={
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(DIRECTORY / "site.db")}
    },
    LOGIN_URL="/login/",
)
django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import include, path  # noqa: E402

from tests.dashboard import live_app  # noqa: E402
from tests.services.base import HOST  # noqa: E402
from tests.web.django_server import QuietHandler, QuietServer  # noqa: E402

urlpatterns = [path(f"{PREFIX}/", include("immortus.web.dashboard.django.urls"))]


def _stop(number: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main() -> None:
    """Set up the database and the staff user's session, then serve until SIGTERM."""
    live_app.setup()
    call_command("migrate", verbosity=0)
    client = Client()
    client.force_login(User.objects.create_user("staff", is_staff=True))
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    server = QuietServer((HOST, 0), QuietHandler)
    server.set_app(get_wsgi_application())
    signal.signal(signal.SIGTERM, _stop)
    written = DIRECTORY / "site.json.partial"
    written.write_text(json.dumps({"port": server.server_address[1], "session": session}))
    written.replace(DIRECTORY / "site.json")
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
