"""Django rendering the widget with ``{% load immortus %}`` (run with ``python -m``).

The report page is a template of the locmem loader; ``IMMORTUS_SUBJECT`` binds tokens to the
``user`` cookie, for the immortus views and the template tag alike.
"""

from __future__ import annotations

import django
from django.conf import settings
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.core.wsgi import get_wsgi_application

from tests.browser.sites import done_when, jobs, widget_pages


def main() -> None:
    arguments = jobs.parse_arguments()
    settings.configure(
        DEBUG=False,
        SECRET_KEY="django-insecure-browser-tests",  # noqa: S106  # a test site's key
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF="tests.browser.sites.widget_django_urls",
        INSTALLED_APPS=["immortus.web.django"],
        MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"],
        DATABASES={},
        USE_TZ=True,
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "OPTIONS": {
                    "loaders": [
                        (
                            "django.template.loaders.locmem.Loader",
                            {
                                "report.html": widget_pages.DJANGO_PAGE,
                                "imports.html": done_when.DJANGO_PAGE,
                            },
                        )
                    ]
                },
            }
        ],
        IMMORTUS=jobs.settings(arguments.store),
        IMMORTUS_SUBJECT="tests.browser.sites.widget_pages.django_subject",
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
