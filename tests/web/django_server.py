"""Django's threaded development server, quiet, for the tests that serve a Django project.

Import it only where Django's settings are configured (the module imports Django).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

from tests.services.base import HOST
from tests.web.servers import serve_wsgi

__all__ = ["serve_django"]


class QuietHandler(WSGIRequestHandler):
    """Django's development request handler, without its access log."""

    def log_message(self, format: str, *args: Any) -> None:  # the base's name
        pass


class QuietServer(ThreadedWSGIServer):
    """Django's threaded WSGI server; a client leaving mid-stream is not worth a log line."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def serve_django(app: Callable[..., Iterable[bytes]]) -> AbstractContextManager[str]:
    """Serve the WSGI ``app`` with Django's threaded server in a thread; yield its base URL."""
    server = QuietServer((HOST, 0), QuietHandler)
    server.set_app(app)
    return serve_wsgi(server)
