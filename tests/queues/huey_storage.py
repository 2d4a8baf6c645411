"""The Huey instance of the Huey tests, chosen by the environment.

The test process and the consumer it starts (a subprocess importing ``tests.queues.huey_app``)
must use one queue: the test hands the consumer these variables, and sets them in its own
environment before it imports the app.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Final, Protocol

from huey import MemoryHuey, RedisHuey, SqliteHuey

#: ``redis``, ``sqlite`` or ``memory`` (in-process, immediate mode).
STORAGE_ENV: Final = "IMMORTUS_TEST_HUEY_STORAGE"
#: The Redis URL or the SQLite file of the queue.
LOCATION_ENV: Final = "IMMORTUS_TEST_HUEY_LOCATION"
#: The queue's name: Huey prefixes its keys with it, so tests never share a queue.
NAME_ENV: Final = "IMMORTUS_TEST_HUEY_NAME"


class TypedHuey(Protocol):
    """The part of a Huey the app declares its tasks with (Huey ships no types)."""

    def task(self, **settings: Any) -> Callable[[Callable[..., Any]], Any]:
        """Return Huey's task decorator."""


def huey_from_environment() -> Any:
    """Return the Huey the environment describes (see the variables above).

    Raises:
        KeyError: the test did not set the variables.
    """
    storage = os.environ[STORAGE_ENV]
    name = os.environ[NAME_ENV]
    if storage == "redis":
        # A short blocking read, so that a consumer stops at once when asked to.
        return RedisHuey(name, url=os.environ[LOCATION_ENV], read_timeout=0.1)
    if storage == "sqlite":
        return SqliteHuey(name, filename=os.environ[LOCATION_ENV])
    if storage == "memory":
        return MemoryHuey(name, immediate=True)
    raise KeyError(f"{STORAGE_ENV}={storage!r}: expected redis, sqlite or memory")
