"""The SQLAlchemy engine of a URL, how to name it, and how to tell its errors.

Shared by the SQL store (:mod:`immortus.stores.sql`) and the Delayed::Job reader
(:mod:`immortus.queues.delayed_job`), which reads a Rails app's table through the same kind of
URL. Needs the ``immortus[sql]`` extra (SQLAlchemy); importing it without raises
:class:`~immortus.exceptions.MissingDependency`.
"""

from __future__ import annotations

from typing import Any, Final

from immortus.exceptions import InvalidStoreURL, MissingDependency
from immortus.stores.urls import redact_url

try:
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.engine import URL, Engine
except ImportError as exc:
    raise MissingDependency("SQLAlchemy", "sql") from exc

__all__ = ["CONNECT_TIMEOUT", "create_engine", "engine_of", "reason", "unreachable", "where"]

#: Seconds to wait for a new PostgreSQL connection unless the URL sets ``connect_timeout``.
CONNECT_TIMEOUT: Final = 10
# The ``dialect+driver`` pairs an immortus extra installs; other drivers come from the user.
_EXTRAS: Final = {
    ("postgresql", "psycopg"): "postgresql",
    ("mysql", "pymysql"): "mysql",
    ("mariadb", "pymysql"): "mysql",
}
_UNREACHABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # no connection free in the pool
)


def create_engine(url: str | URL) -> Engine:
    """Build an engine for ``url``; a driverless PostgreSQL URL gets psycopg 3.

    Raises:
        InvalidStoreURL: the URL is malformed, or SQLAlchemy cannot use it (the password is
            hidden in the message).
        MissingDependency: the URL's driver is not installed (the message names the extra).
    """
    try:
        parsed = sa.make_url(url)
    except (sa_exc.ArgumentError, ValueError) as exc:
        shown = redact_url(str(url))
        detail = str(exc).replace(str(url), shown)
        raise InvalidStoreURL(f"malformed SQL store URL {shown!r}: {detail}") from None
    parsed = parsed.set(drivername=parsed.drivername.lower())  # schemes ignore case
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgres", "postgresql"):
        parsed = parsed.set(drivername=f"postgresql+{driver or 'psycopg'}")
    options: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    try:
        return sa.create_engine(parsed, **options)
    except ImportError as exc:
        pair = (parsed.get_backend_name(), parsed.get_driver_name())
        raise MissingDependency(exc.name or pair[1], _EXTRAS.get(pair, "sql")) from exc
    except sa_exc.ArgumentError as exc:
        where = parsed.render_as_string(hide_password=True)
        raise InvalidStoreURL(f"SQLAlchemy cannot use {where}: {exc}") from None


def engine_of(engine_or_url: Engine | URL | str) -> tuple[Engine, bool]:
    """Return the engine to use and whether it was made here (its owner disposes of it).

    Raises what :func:`create_engine` raises.
    """
    if isinstance(engine_or_url, Engine):
        return engine_or_url, False
    return create_engine(engine_or_url), True


def where(url: URL) -> str:
    """The URL as text fit for messages: every password hidden, the query's included."""
    return redact_url(url.render_as_string(hide_password=False))


def reason(exc: sa_exc.SQLAlchemyError, url: URL) -> str:
    """The first line of the driver's message for ``exc``, with ``url``'s passwords hidden."""
    cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    lines = str(cause).strip().splitlines()
    text = lines[0] if lines else type(cause).__name__
    for secret in (url.password, url.query.get("password")):  # libpq also takes ?password=
        if isinstance(secret, str) and secret:
            text = text.replace(secret, "***")
    return text


def unreachable(exc: sa_exc.SQLAlchemyError) -> bool:
    """Whether ``exc`` means the database cannot be reached (or is locked) right now."""
    if not isinstance(exc, _UNREACHABLE):
        return False
    # sqlite3 reports a missing table as an OperationalError too: its code is plain SQLITE_ERROR.
    code = getattr(getattr(exc, "orig", None), "sqlite_errorcode", None)
    return not isinstance(code, int) or code & 0xFF != 1
