"""The Django test site, under Django's threaded WSGI server: ``python -m ...sites.django_site``.

The settings are made here with ``settings.configure``; the URLconf is ``django_urls``. The
create view is CSRF-protected (``CsrfViewMiddleware``) and the page carries the token in a
``<meta name="csrf-token">`` tag and in the ``csrftoken`` cookie.
"""

from __future__ import annotations

import django
from django.conf import settings
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.core.wsgi import get_wsgi_application

from tests.browser.sites import jobs


def main() -> None:
    arguments = jobs.parse_arguments()
    settings.configure(
        DEBUG=False,
        SECRET_KEY="django-insecure-browser-tests",  # noqa: S106  # a test site's key
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF="tests.browser.sites.django_urls",
        INSTALLED_APPS=["immortus.web.django"],
        MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"],
        DATABASES={},
        USE_TZ=True,
        IMMORTUS=jobs.settings(arguments.store),
        LOGGING={
            "version": 1,
            "disable_existing_loggers": False,
            "loggers": {"django.server": {"level": "WARNING"}},
        },
    )
    django.setup()
    server = ThreadedWSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
    server.set_app(get_wsgi_application())
    jobs.announce(arguments.port_file, server.server_port)
    server.serve_forever()


if __name__ == "__main__":
    main()
