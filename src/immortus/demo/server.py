"""Run the web demo: a temporary folder, the store, the queue, the app, and uvicorn to serve it.

:class:`DemoSite` sets everything up and takes it down again; :func:`run_web_demo` serves it
until Ctrl-C (``immortus demo``), and :mod:`immortus.demo.smoke` drives it over HTTP
(``immortus demo --smoke``). Stopping is done in this order: the server (open event streams
end at once), the queue (running jobs end ``cancelled`` at their next
step), then the settings are restored and the temporary folder is removed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import secrets
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Final

import immortus
from immortus.demo.hints import cli_hint, shown_store
from immortus.demo.queue import DemoQueue, Pace
from immortus.demo.samples import RETRY_DELAY
from immortus.demo.shutdown import DemoServer, EndOnShutdown
from immortus.demo.web import create_app
from immortus.exceptions import ConfigurationError, MissingDependency

try:
    import uvicorn
    from starlette.applications import Starlette
except ImportError as exc:  # the modules above have already named a missing Huey or Starlette
    raise MissingDependency((exc.name or "uvicorn").partition(".")[0], "demo") from exc

__all__ = ["GRACE", "DemoSite", "listen", "make_server", "run_web_demo"]

#: Seconds the server waits, when stopping, for the requests in flight to end before cancelling
#: them (open event streams end at once: see :mod:`immortus.demo.shutdown`).
GRACE: Final = 5
#: Least time between two progress writes of a demo job (the page's bar moves this often).
PROGRESS_INTERVAL: Final = 0.1


def listen(host: str, port: int) -> socket.socket:
    """Return a socket listening on ``host``:``port`` (port 0: a free one), for uvicorn.

    Raises:
        ConfigurationError: the port is in use or out of range, or the address is not allowed
            or not this machine's.
    """
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"cannot listen on port {port}: a port is from 0 to 65535")
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = info[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            message = (
                f"cannot listen on {host}:{port}: the port is in use; pick another with --port"
            )
        else:
            message = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        raise ConfigurationError(message) from exc
    return sock


def make_server(app: Starlette, sock: socket.socket) -> uvicorn.Server:
    """Return a uvicorn server for ``app`` on ``sock``: quiet, and quick to stop.

    When it stops, the open event streams end at once (:mod:`immortus.demo.shutdown`).
    """
    host, port = sock.getsockname()[:2]
    ending = EndOnShutdown(app)
    config = uvicorn.Config(
        ending, host=host, port=port, log_level="warning", timeout_graceful_shutdown=GRACE
    )
    return DemoServer(config, ending)


class DemoSite:
    """Everything the web demo runs on; a context manager that sets it up and takes it down.

    On entry: a temporary folder; immortus configured with ``store`` (default: an SQLite file
    in that folder) and a new random secret key, so every job needs its token; a Huey queue in
    the folder with its worker threads started; the app. On exit, all of it is undone. Enter
    it in the main thread (Huey's consumer touches signal handlers).

    Raises:
        InvalidStoreURL, StoreUnavailable: the store cannot be opened (on entry).
    """

    def __init__(
        self,
        *,
        store: str | None = None,
        pace: Pace | None = None,
        retry_delay: float = RETRY_DELAY,
    ) -> None:
        self.store = store
        self.temporary_store = store is None
        self._pace = pace
        self._retry_delay = retry_delay
        self._stack = contextlib.ExitStack()
        self.folder: Path | None = None
        self.queue: DemoQueue | None = None
        self.app: Starlette | None = None

    def __enter__(self) -> DemoSite:
        with self._stack as stack:
            self.folder = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="immortus-demo-"))
            )
            if self.store is None:
                self.store = f"sqlite:///{(self.folder / 'jobs.sqlite3').as_posix()}"
            previous = immortus.get_config()
            stack.callback(
                immortus.configure,
                store=previous.store,
                secret_key=previous.secret_key,
                progress_interval=previous.progress_interval,
            )
            immortus.configure(
                store=self.store,
                secret_key=secrets.token_urlsafe(32),
                progress_interval=PROGRESS_INTERVAL,
            )
            immortus.get_store()  # open it now: a bad URL fails before anything runs
            _quiet_huey_log(stack)
            self.queue = DemoQueue(self.folder, pace=self._pace, retry_delay=self._retry_delay)
            self.app = create_app(self.queue)
            stack.enter_context(self.queue)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()


def _quiet_huey_log(stack: contextlib.ExitStack) -> None:
    """Keep Huey's log of the samples' failures off the terminal: the page shows them.

    Huey logs a task's exception with its traceback; the failing samples do that on purpose.
    """
    huey = logging.getLogger("huey")
    handler = logging.NullHandler()
    propagate = huey.propagate
    huey.addHandler(handler)
    huey.propagate = False
    stack.callback(setattr, huey, "propagate", propagate)
    stack.callback(huey.removeHandler, handler)


def run_web_demo(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    store: str | None = None,
    speed: float = 1.0,
    stream: IO[str] | None = None,
) -> int:
    """Serve the demo on ``host``:``port`` until Ctrl-C, then stop cleanly; return 0.

    ``speed`` divides the samples' paces and retry delay; ``store`` is a store URL (default:
    a new SQLite file in the temporary folder, deleted at the end).

    Raises:
        ConfigurationError: the port cannot be listened on (before anything else starts).
        InvalidStoreURL, StoreUnavailable: the store cannot be opened.
    """
    from immortus.demo.queue import at_speed  # noqa: PLC0415 - beside its use

    out = stream or sys.stdout
    sock = listen(host, port)
    with contextlib.closing(sock), _terminate_like_interrupt():
        site = DemoSite(store=store, pace=at_speed(speed), retry_delay=RETRY_DELAY / speed)
        with site:
            assert site.app is not None  # noqa: S101 - set on entry
            server = make_server(site.app, sock)
            _greet(out, _url(sock), site)
            with contextlib.suppress(KeyboardInterrupt):
                server.run(sockets=[sock])  # until Ctrl-C (or SIGTERM)
            print("stopping: the server, then the queue (running jobs end cancelled)", file=out)
    print("demo stopped", file=out, flush=True)
    return 0


@contextlib.contextmanager
def _terminate_like_interrupt() -> Iterator[None]:
    """Make SIGTERM stop the demo as Ctrl-C does, so it cleans up rather than dies.

    uvicorn handles SIGTERM while it serves, then raises it again with the handler it found;
    the default handler would end the process before the queue stops and the folder goes.
    """

    def interrupt(number: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _greet(out: IO[str], url: str, site: DemoSite) -> None:
    where = " (temporary: deleted when the demo stops)" if site.temporary_store else ""
    lines = [
        f"immortus demo: open {url}  (Ctrl-C stops it)",
        "Start sample jobs on the page: they run on a Huey queue (SQLite, worker threads in this "
        "process), are tracked in immortus's store, and the page follows each one live over "
        "Server-Sent Events.",
        f"store: {shown_store(site.store)}{where}",
        f"folder: {site.folder}",
        f"from another terminal: {cli_hint(site.store, 'jobs')}",
    ]
    print("\n".join(lines), file=out, flush=True)
