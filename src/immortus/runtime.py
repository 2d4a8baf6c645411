"""The process's immortus state, in one place: one runtime made of parts.

Every module that keeps state for the whole process (the settings, the finder's caches, the
outboxes, the heartbeat, the web feeds, a queue's install state...) keeps it in one class of
its own, a *part*, and gets the process's one instance with :func:`part`. The runtime owns the
parts and drives them:

- :func:`reset` brings every part back to the state of a process that imported the same modules
  and made no call since (for tests). What modules declared at import time stays: the jobs
  registered by decorators, the cancellers registered by queue modules.
- In a forked child, one hook (the only ``os.register_at_fork`` of immortus) calls every part's
  ``after_fork()``: the child drops the parent's threads, locks and connections.
- :func:`at_exit` is immortus's one way of running code at interpreter exit.

This module imports nothing from immortus: the modules whose state it holds sit above it.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from typing import Final, Protocol, TypeVar

__all__ = ["RUNTIME", "LockedPart", "Part", "Runtime", "at_exit", "part", "reset"]


class Part(Protocol):
    """A piece of process state: made by calling its class with no argument, at first use.

    A part acts on itself in place (the runtime never replaces a part object, so a module may
    keep the instance in a constant). Its hooks never raise.
    """

    def reset(self) -> None:
        """Go back to a fresh process's state: called by :func:`reset` (tests)."""

    def after_fork(self) -> None:
        """In a forked child, drop the parent's threads, locks and connections."""


class LockedPart:
    """A part whose fields one lock guards: a forked child gets a lock of its own.

    One of the parent's threads may have held the lock at the fork, and no thread of the child
    would ever release it. A subclass calls ``super().__init__()`` and defines ``reset()``.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def after_fork(self) -> None:
        """Give the child a lock no thread holds."""
        self.lock = threading.Lock()


P = TypeVar("P", bound=Part)


class Runtime:
    """The parts of this process, in the order they were made."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # reentrant: a part's constructor may ask for another
        self._parts: dict[type[Part], Part] = {}
        self._at_exit: list[Callable[[], None]] = []

    def part(self, kind: type[P]) -> P:
        """Return the one instance of ``kind`` in this process, making it on first ask."""
        found = self._parts.get(kind)
        if found is None:
            with self._lock:
                found = self._parts.get(kind)
                if found is None:
                    found = self._parts[kind] = kind()
        return found  # type: ignore[return-value]  # the dict maps each kind to its instance

    def reset(self) -> None:
        """Call every part's ``reset()``, the newest part first."""
        with self._lock:
            parts = list(self._parts.values())
        for each in reversed(parts):
            each.reset()

    def at_exit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` at interpreter exit, registering it now (once).

        Exit handlers run newest first, so a callback registered at first need runs before
        those registered earlier (SQLite's connection finalizers among them).
        """
        with self._lock:
            if callback in self._at_exit:
                return
            self._at_exit.append(callback)
        atexit.register(callback)

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock, then every part's ``after_fork()``, oldest first."""
        self._lock = threading.RLock()
        for each in list(self._parts.values()):
            each.after_fork()


#: This process's runtime.
RUNTIME: Final = Runtime()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=RUNTIME._after_fork)


def part(kind: type[P]) -> P:
    """Return this process's one instance of the part ``kind`` (see :meth:`Runtime.part`)."""
    return RUNTIME.part(kind)


def reset() -> None:
    """Bring immortus back to a fresh process's state (see the module docstring). For tests."""
    RUNTIME.reset()


def at_exit(callback: Callable[[], None]) -> None:
    """Run ``callback`` at interpreter exit (see :meth:`Runtime.at_exit`)."""
    RUNTIME.at_exit(callback)
