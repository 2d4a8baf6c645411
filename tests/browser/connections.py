"""A TCP relay in front of a test site that counts the browser's connections to it.

The browser talks to the relay's port as if it were the site (plain HTTP/1.1); each accepted
connection is piped to a new connection to the site. The relay knows how many connections are
open at once and the most that were, whatever the site's framework or server.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

_CHUNK = 65536


class ConnectionCounter:
    """Relays ``127.0.0.1:{port}`` to ``target``, counting the connections open at once."""

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open = 0
        self.most = 0
        self.accepted = 0
        self._closed = False
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    @property
    def url(self) -> str:
        """The site's URL through the relay."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def open(self) -> int:
        """Connections open now."""
        with self._lock:
            return self._open

    def restart_count(self) -> None:
        """Count the most open at once from now on (starting from those open now)."""
        with self._lock:
            self.most = self._open

    def close(self) -> None:
        """Stop accepting; open connections end when either side closes."""
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += 1
                self.accepted += 1
                self.most = max(self.most, self._open)
            pair = _Pair(client, upstream, self._ended)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=pair.pipe, args=(source, sink), daemon=True).start()

    def _ended(self) -> None:
        with self._lock:
            self._open -= 1


class _Pair:
    """A browser connection and its connection to the site: ends when either side closes."""

    def __init__(
        self, client: socket.socket, upstream: socket.socket, ended: Callable[[], None]
    ) -> None:
        self._sockets = (client, upstream)
        self._ended = ended
        self._lock = threading.Lock()
        self._done = False

    def pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(_CHUNK):
                sink.sendall(data)
        self._close()

    def _close(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._ended()


@contextlib.contextmanager
def counting(site_url: str) -> Iterator[ConnectionCounter]:
    """A :class:`ConnectionCounter` in front of the site at ``site_url``, for a ``with`` block."""
    counter = ConnectionCounter(int(site_url.rsplit(":", 1)[1]))
    try:
        yield counter
    finally:
        counter.close()
