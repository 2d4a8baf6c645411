"""Real servers for the adapters' tests: each runs in a thread of this process, on 127.0.0.1.

In-process matters (see :mod:`tests.web.http_contract`): the tests change settings, declare
jobs and drive them from the test thread while the server answers. Both context managers yield
the server's base URL (``http://127.0.0.1:PORT``), stop the server when the block ends and fail
the test if it did not stop.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager

import uvicorn

from tests.services.base import HOST, wait_until

__all__ = ["serve_asgi", "serve_werkzeug", "serve_wsgi"]

#: Generous: the machine may be loaded.
TIMEOUT = 10.0


@contextmanager
def serve_asgi(app: Callable[..., Awaitable[None]]) -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn on a free port in a thread; yield its base URL.

    The socket is bound before uvicorn starts, so the port is known and cannot be taken by
    another process meanwhile. Lifespan events are off; a streaming response still open at the
    end gets 5 s to finish. Fails if uvicorn does not start, or does not stop.
    """
    listener = socket.socket()
    listener.bind((HOST, 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            log_config=None,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), TIMEOUT, interval=0.005)
        assert server.started, "uvicorn did not start"
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        listener.close()
    assert not thread.is_alive(), "uvicorn did not stop"


@contextmanager
def serve_wsgi(server: socketserver.TCPServer) -> Iterator[str]:
    """Run a threaded WSGI ``server`` in a thread until the block ends; yield its base URL.

    ``server`` is already bound to a free port of 127.0.0.1 and has its application: Werkzeug's
    ``make_server(..., threaded=True)`` or Django's ``ThreadedWSGIServer``, for instance. Each
    request is answered in a thread of its own, so a stream does not hold up other requests.
    Fails if the server does not stop.
    """
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)
    assert not thread.is_alive(), "the WSGI server did not stop"


@contextmanager
def serve_werkzeug(app: Callable[..., Iterable[bytes]]) -> Iterator[str]:
    """Serve the WSGI ``app`` (a Flask app) with Werkzeug's threaded server; yield its URL.

    Werkzeug's log line per request is quieted while it serves.
    """
    from werkzeug.serving import make_server

    werkzeug_log = logging.getLogger("werkzeug")
    level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)
    try:
        with serve_wsgi(make_server(HOST, 0, app, threaded=True)) as url:
            yield url
    finally:
        werkzeug_log.setLevel(level)
