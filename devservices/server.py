"""What both private servers share: their errors, the external-URL mode, the life cycle.

A missing binary or a server that does not come up is an error, never a skip: ``make test`` and
``make bench`` install both servers (``scripts/install-system-deps.sh``).
"""

from __future__ import annotations

import atexit
import os
from abc import ABC, abstractmethod
from types import TracebackType
from typing import ClassVar, Self

APT_HINT = "apt-get update && apt-get install -y --no-install-recommends {package}"


class ServiceError(RuntimeError):
    """A private server is not installed, or did not start or stop in time."""


class ManagedServerRequiredError(ServiceError):
    """A caller controls the server's life, but the server is an external one from the env."""


def install_hint(package: str) -> str:
    """Say how to install the system ``package`` that holds a missing server binary."""
    return (
        f"`make test` installs it (scripts/install-system-deps.sh); "
        f"or install it yourself as root: {APT_HINT.format(package=package)}"
    )


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
