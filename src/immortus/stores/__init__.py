"""Stores persist what callback-driven tracking learns about jobs.

==========================  ===========================================  ===================
URL                         store                                        extra
==========================  ===========================================  ===================
``memory://``               :class:`~immortus.stores.memory.MemoryStore`  none
``sqlite:///path/to.db``    :class:`~immortus.stores.sqlite.SQLiteStore`  none (the default)
``redis://host:port/db``    :class:`~immortus.stores.redis.RedisStore`    ``immortus[redis]``
``redis+cluster://h:port``  :class:`~immortus.stores.redis.RedisStore`    ``immortus[redis]``
``postgresql://…``          :class:`~immortus.stores.sql.SQLStore`        ``immortus[postgresql]``
``mysql+pymysql://…``       :class:`~immortus.stores.sql.SQLStore`        ``immortus[sql]``
==========================  ===========================================  ===================

Store classes are imported only when used, so importing this package loads no driver.

A store of another package plugs in without any change here: the package names its class under
the entry-point group ``immortus.stores``, keyed by its URL scheme (in its ``pyproject.toml``:
``[project.entry-points."immortus.stores"] mystore = "mypkg.stores:MyStore"``), and
``mystore://…`` URLs then open it. A store object can also be given to
``immortus.configure(store=...)`` directly.
"""

from __future__ import annotations

import importlib
from datetime import timedelta
from importlib.metadata import entry_points
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
    "ENTRY_POINT_GROUP",
    "JobPage",
    "MemoryStore",
    "RedisStore",
    "SQLStore",
    "SQLiteStore",
    "Store",
    "open_store",
    "redact_url",
]

#: The entry-point group under which other packages offer stores, keyed by URL scheme.
ENTRY_POINT_GROUP: Final = "immortus.stores"

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
    store_class: type[Store] = _plugged_in(base, url) if name is None else __getattr__(name)
    return store_class.from_url(url, ttl=ttl)


def _plugged_in(scheme: str, url: str) -> type[Store]:
    """Return the store class another package offers for ``scheme://`` URLs.

    Raises:
        InvalidStoreURL: no installed package offers one, or what it offers cannot be loaded
            or is not a :class:`Store`.
    """
    for point in entry_points(group=ENTRY_POINT_GROUP, name=scheme):
        try:
            found = point.load()
        except ImportError as exc:
            raise InvalidStoreURL(
                f"the store for {scheme}:// URLs ({point.value!r}, entry point of "
                f"{ENTRY_POINT_GROUP!r}) cannot be imported: {exc}"
            ) from exc
        if not (isinstance(found, type) and issubclass(found, Store)):
            raise InvalidStoreURL(
                f"the entry point {point.value!r} of {ENTRY_POINT_GROUP!r} for {scheme}:// "
                "URLs is not a Store subclass"
            )
        return found
    known = ", ".join(f"{known}://" for known in _SCHEMES)
    raise InvalidStoreURL(
        f"no store handles {scheme}:// URLs ({redact_url(url)!r}); known schemes: {known}, "
        f"and those installed packages offer under the entry-point group {ENTRY_POINT_GROUP!r}"
    )
