"""The SQL store's lookups on a few PostgreSQL connections it keeps: no ping per read.

An engine made with ``pool_pre_ping`` (as the store makes its own) sends ``SELECT 1`` at every
checkout, and SQLAlchemy's execution builds result metadata at every call: together they cost
more than the lookup's own round trip. :class:`KeptReads` checks a connection out of the engine
once (pinged, through the pool's creator and events), detaches it from the pool, sets it to
autocommit and keeps it, up to :data:`KEPT` idle ones per store. psycopg prepares the
lookup on each after a few executions (its ``prepare_threshold``; a connection made with
``prepare_threshold=None``, as behind a transaction-mode PgBouncer, never prepares).

A connection that breaks (a killed backend, a restarted server) is closed with every idle one,
which share its fate, and the lookup runs once more on a fresh connection: a failure costs a
checkout, not an error. When :data:`KEPT` connections are busy, when the engine's pool keeps
no connections (``NullPool``), or when something listens to the engine's statements (tracing,
query logs: they must see every statement), the caller reads through the engine as before.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Mapping
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool, PoolProxiedConnection

__all__ = ["KEPT", "THROUGH_ENGINE", "KeptReads"]

#: How many connections a store keeps for lookups, beside the engine's pool.
KEPT: Final = 4
#: What :meth:`KeptReads.fetch_one` answers when the lookup must go through the engine.
THROUGH_ENGINE: Final[Any] = object()
#: The connections a forked child inherited: never used, closed or dropped there (closing or
#: collecting one would end its parent's session, or warn).
_INHERITED: list[_Kept] = []


class KeptReads:
    """Runs one compiled ``SELECT`` (one row at most) on kept, detached connections.

    Safe from many threads: each lookup takes an idle connection for itself. A forked child
    never touches the connections its parent kept (their sockets are the parent's): it opens
    its own.
    """

    def __init__(self, engine: Engine, query: sa.Select[Any]) -> None:
        self._engine = engine
        self._statement = str(query.compile(dialect=engine.dialect))
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._idle: list[_Kept] = []  # one list for good: the finalizer's
        self._open = 0  # connections out: idle or in use
        self._closed = 0  # bumped by close(): connections opened before it are closed on return
        weakref.finalize(self, _close_idle, self._idle, self._pid)

    @staticmethod
    def fits(engine: Engine) -> bool:
        """Whether lookups on ``engine`` can run here: PostgreSQL through psycopg, pooled."""
        dialect = engine.dialect
        pooled = not isinstance(engine.pool, NullPool)
        return dialect.name == "postgresql" and dialect.driver == "psycopg" and pooled

    def fetch_one(self, params: Mapping[str, Any]) -> Any:
        """Run the query with ``params``; return its row (``None``: no row).

        :data:`THROUGH_ENGINE` when every kept connection is busy, or when the engine has
        statement listeners (``before_cursor_execute``, ``after_cursor_execute``: tracing,
        query logs), which must see every statement: read through the engine instead.

        Raises:
            sqlalchemy.exc.StatementError: the database failed the query twice, or once with an
                error that is not a lost connection; or no connection could be made.
        """
        events = self._engine.dispatch
        if events.before_cursor_execute or events.after_cursor_execute:
            return THROUGH_ENGINE
        for retry in (False, True):
            kept = self._take()
            if kept is None:
                return THROUGH_ENGINE
            try:
                kept.cursor.execute(self._statement, params)
                row: tuple[Any, ...] | None = kept.cursor.fetchone()
            except self._dbapi_error as exc:
                dbapi = kept.connection.dbapi_connection
                lost = self._engine.dialect.is_disconnect(cast(Any, exc), dbapi, kept.cursor)
                if lost:
                    self._drop(kept, every_idle=True)
                    if not retry:
                        continue
                else:
                    self._give(kept)
                raise self._wrapped(exc, params, lost=lost) from exc
            except BaseException:
                self._drop(kept)  # interrupted mid-protocol: never reuse it
                raise
            self._give(kept)
            return row
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the idle connections; busy ones close when their lookup ends."""
        with self._lock:
            idle = self._idle[:]
            self._idle.clear()
            self._open -= len(idle)
            self._closed += 1
        for kept in idle:
            kept.close()

    # -- the kept connections ------------------------------------------------------------------

    def _take(self) -> _Kept | None:
        """An idle connection, else a new one, else ``None``: :data:`KEPT` are busy."""
        with self._lock:
            if self._pid != os.getpid():
                # A forked child: put the parent's connections aside, never to touch them.
                _INHERITED.extend(self._idle)
                self._idle.clear()
                self._pid, self._open = os.getpid(), 0
            if self._idle:
                return self._idle.pop()
            if self._open >= KEPT:
                return None
            self._open += 1
            generation = self._closed
        try:
            return self._connect(generation)
        except BaseException:
            with self._lock:
                self._open -= 1
            raise

    def _wrapped(
        self, exc: Exception, params: Mapping[str, Any] | None, *, lost: bool
    ) -> sa_exc.StatementError:
        """The SQLAlchemy error that wraps a driver's (as the engine raises it)."""
        return sa_exc.DBAPIError.instance(
            self._statement if params is not None else None,
            params,
            exc,
            self._dbapi_error,
            connection_invalidated=lost,
            dialect=self._engine.dialect,
        )

    def _connect(self, generation: int) -> _Kept:
        """A pinged connection from the engine, out of its pool's count, in autocommit.

        Raises:
            sqlalchemy.exc.StatementError: no connection could be made.
        """
        try:
            connection = self._engine.raw_connection()
        except self._dbapi_error as exc:  # raw_connection() leaves the driver's errors bare
            raise self._wrapped(exc, None, lost=True) from exc
        connection.detach()
        dbapi = cast(Any, connection.dbapi_connection)  # set while checked out or detached
        try:
            dbapi.rollback()  # the ping may have opened a transaction
            self._engine.dialect.set_isolation_level(dbapi, "AUTOCOMMIT")
            return _Kept(connection, connection.cursor(), generation)
        except BaseException:
            with contextlib.suppress(Exception):
                connection.close()
            raise

    def _give(self, kept: _Kept) -> None:
        with self._lock:
            if kept.generation == self._closed:
                self._idle.append(kept)
                return
            self._open -= 1
        kept.close()  # opened before close(): not kept

    def _drop(self, kept: _Kept, *, every_idle: bool = False) -> None:
        with self._lock:
            idle = self._idle[:] if every_idle else []
            if every_idle:
                self._idle.clear()
            self._open -= 1 + len(idle)
        for each in (kept, *idle):
            each.close()


class _Kept:
    """A kept connection, its one cursor and the :meth:`KeptReads.close` count it was opened under.

    The cursor is reused: making one costs as much as decoding a row.
    """

    __slots__ = ("connection", "cursor", "generation")

    def __init__(self, connection: PoolProxiedConnection, cursor: Any, generation: int) -> None:
        self.connection = connection
        self.cursor = cursor
        self.generation = generation

    def close(self) -> None:
        """Close the connection, whatever state it is in (a broken one may fail: it is gone)."""
        with contextlib.suppress(Exception):
            self.connection.close()


def _close_idle(idle: list[_Kept], pid: int) -> None:
    """Close what a collected :class:`KeptReads` kept, in the process that opened it."""
    if os.getpid() == pid:
        for kept in idle:
            kept.close()
    else:
        _INHERITED.extend(idle)
    idle.clear()
