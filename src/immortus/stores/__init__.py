"""Stores persist what callback-driven tracking learns about jobs.

==========================  ===========================================  ===================
URL                         store                                        extra
==========================  ===========================================  ===================
``memory://``               :class:`~immortus.stores.memory.MemoryStore`  none
``sqlite:///path/to.db``    :class:`~immortus.stores.sqlite.SQLiteStore`  none (the default)
``redis://host:port/db``    :class:`~immortus.stores.redis.RedisStore`    ``immortus[redis]``
``postgresql://…``          :class:`~immortus.stores.sql.SQLStore`        ``immortus[postgresql]``
``mysql+pymysql://…``       :class:`~immortus.stores.sql.SQLStore`        ``immortus[sql]``
==========================  ===========================================  ===================

Store classes are imported only when used, so importing this package loads no driver.
"""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from immortus.exceptions import InvalidStoreURL
from immortus.stores.base import DEFAULT_TTL, JobPage, Store, lower_scheme
from immortus.stores.urls import redact_url

if TYPE_CHECKING:
    from immortus.stores.memory import MemoryStore
    from immortus.stores.redis import RedisStore
    from immortus.stores.sql import SQLStore
    from immortus.stores.sqlite import SQLiteStore

__all__ = [
    "DEFAULT_TTL",
    "JobPage",
    "MemoryStore",
    "RedisStore",
    "SQLStore",
    "SQLiteStore",
    "Store",
    "open_store",
    "redact_url",
]

_CLASSES: Final = {
    "MemoryStore": "immortus.stores.memory",
    "SQLiteStore": "immortus.stores.sqlite",
    "RedisStore": "immortus.stores.redis",
    "SQLStore": "immortus.stores.sql",
}

# URL scheme (before any "+driver") -> store class name.
_SCHEMES: Final = {
    "memory": "MemoryStore",
    "sqlite": "SQLiteStore",
    "redis": "RedisStore",
    "rediss": "RedisStore",
    "unix": "RedisStore",
    "postgresql": "SQLStore",
    "postgres": "SQLStore",
    "mysql": "SQLStore",
    "mariadb": "SQLStore",
}


def __getattr__(name: str) -> Any:
    module = _CLASSES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def open_store(url: str, *, ttl: float | timedelta | None = DEFAULT_TTL) -> Store:
    """Open the store ``url`` names (see the table above).

    ``sqlite:`` URLs with the ``sqlite+driver:`` form of SQLAlchemy go to the SQL store; plain
    ``sqlite:///`` uses the built-in SQLite store, which needs no extra. Schemes ignore case
    (``REDIS://`` is ``redis://``). Error messages never show the URL's password.

    Raises:
        InvalidStoreURL: the URL is malformed or names no known store.
        MissingDependency: the store's extra is not installed (the message has the pip command).
    """
    if "://" not in url:
        raise InvalidStoreURL(
            f"store URL {redact_url(url)!r} has no scheme; expected e.g. "
            "'sqlite:///immortus.sqlite3', "
            "'redis://localhost:6379/0' or 'postgresql://user@host/db'"
        )
    url = lower_scheme(url)
    scheme = url.partition("://")[0]
    base, _, driver = scheme.partition("+")
    name = "SQLStore" if base == "sqlite" and driver else _SCHEMES.get(base)
    if name is None:
        known = ", ".join(f"{known}://" for known in _SCHEMES)
        raise InvalidStoreURL(
            f"no store handles {scheme}:// URLs ({redact_url(url)!r}); known schemes: {known}"
        )
    store_class: type[Store] = __getattr__(name)
    return store_class.from_url(url, ttl=ttl)
