"""What both test servers share: errors, ports, waiting, and the external-URL mode.

A missing binary or a server that does not come up is an error, never a skip: ``make test``
installs both servers (``scripts/install-system-deps.sh``).
"""

from __future__ import annotations

import atexit
import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

HOST = "127.0.0.1"
APT_HINT = "apt-get update && apt-get install -y --no-install-recommends {package}"


class ServiceError(RuntimeError):
    """A test service is not installed, or did not start or stop in time."""


class ManagedServerRequiredError(ServiceError):
    """A test controls the server's life, but the server is an external one from the env."""


def install_hint(package: str) -> str:
    return (
        f"`make test` installs it (scripts/install-system-deps.sh); "
        f"or install it yourself as root: {APT_HINT.format(package=package)}"
    )


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def pid_alive(pid: int) -> bool:
    """Tell whether process ``pid`` exists and is not a zombie."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        # No /proc: fall back to a signal probe (which counts zombies as alive).
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # The state follows the parenthesised command name, which may itself contain spaces.
    return stat_line.rpartition(")")[2].split()[0] != "Z"


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class Server(ABC):
    """What both servers share: external-URL mode, context manager, cleanup at exit."""

    env_var: ClassVar[str]
    name: ClassVar[str]

    def __init__(self) -> None:
        self.external_url: str | None = os.environ.get(self.env_var) or None
        self._closed = False
        if self.external_url is None:
            atexit.register(self.close)

    @property
    def managed(self) -> bool:
        """True when this object runs the server itself (no env override)."""
        return self.external_url is None

    def _require_managed(self, action: str) -> None:
        if not self.managed:
            raise ManagedServerRequiredError(
                f"cannot {action} the {self.name} server from {self.env_var}: this test "
                f"controls the server's life and needs one the test suite starts itself; "
                f"unset {self.env_var} to run it"
            )
        if self._closed:
            raise ServiceError(f"this {self.name} server was closed; make a new one")

    @property
    @abstractmethod
    def running(self) -> bool:
        """Whether the managed server process is up (always True for an external server)."""

    @abstractmethod
    def start(self) -> None:
        """Start the server, or restart it on the same port after stop() or kill()."""

    @abstractmethod
    def stop(self) -> None:
        """Shut the server down gracefully; start() brings it back on the same port."""

    @abstractmethod
    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would; start() brings it back."""

    @abstractmethod
    def _remove_files(self) -> None:
        """Delete the managed server's directories."""

    def ensure_running(self) -> None:
        """Start the managed server if a test left it stopped; no-op for an external one."""
        if self.managed and not self.running:
            self.start()

    def close(self) -> None:
        """Stop the server for good and delete its files; safe to call more than once."""
        if not self.managed or self._closed:
            return
        try:
            if self.running:
                try:
                    self.stop()
                except ServiceError:
                    self.kill()
        finally:
            self._closed = True
            self._remove_files()
            atexit.unregister(self.close)

    def __enter__(self) -> Self:
        if self.managed:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
