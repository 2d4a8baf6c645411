"""PostgreSQL push: every record write sends ``NOTIFY`` with the job id, in its transaction.

The SQL store on PostgreSQL calls ``pg_notify('<table>_changes', job_id)`` in the transaction of
every write of a record (:meth:`~immortus.stores.sql.SQLStore.record`, ``reap_lost`` and a
heartbeat that revives a job), so a notice is delivered only once the write is committed.
:class:`PostgresSource` is woken through one :class:`PostgresListener` (one ``LISTEN``
connection, psycopg 3) per store and process, and names the jobs it heard of since a cursor
(:meth:`~immortus.stores.notify.Listener.changes_since`); while not listening it answers
"assume every job changed". With another driver than psycopg the store still notifies, and the
web polls it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from immortus.stores.notify import Listener, Notice, _Watch
from immortus.strategy import Changes, ChangeSource

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import PoolProxiedConnection

__all__ = ["PostgresListener", "PostgresSource"]


class PostgresListener(Listener["psycopg.Connection[Any]"]):
    """Listens to ``channel`` on a connection of its own, taken out of ``engine``'s pool."""

    confirms_on_subscribe = True

    def __init__(self, engine: Engine, channel: str, name: str) -> None:
        self._engine = engine
        self.channel = channel
        super().__init__(name)

    def _subscribe(self) -> psycopg.Connection[Any]:
        from psycopg import sql  # noqa: PLC0415  # only with the postgres extra

        connection = self._engine.raw_connection()
        try:
            driver = _driver(connection)
            connection.detach()  # ours until closed; the pool makes another when it needs one
            driver.rollback()
            driver.autocommit = True
            driver.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except BaseException:
            connection.close()
            raise
        return driver

    def _receive(self, connection: psycopg.Connection[Any], timeout: float) -> Sequence[Notice]:
        # Returns with the first packet of notices, so a watcher is woken at once.
        notices = connection.notifies(timeout=timeout, stop_after=1)
        return [notice.payload for notice in notices]

    def _release(self, connection: psycopg.Connection[Any]) -> None:
        with contextlib.suppress(Exception):  # closing a broken connection may fail too
            connection.close()


def _driver(connection: PoolProxiedConnection) -> psycopg.Connection[Any]:
    """The psycopg connection under SQLAlchemy's (the store's engine uses psycopg 3)."""
    return cast("psycopg.Connection[Any]", connection.driver_connection)


class PostgresSource(ChangeSource):
    """A PostgreSQL store's changes, as its ``LISTEN`` connection heard them."""

    def __init__(self, listener: PostgresListener) -> None:
        self.listener = listener

    def __repr__(self) -> str:
        return f"<PostgresSource {self.listener.channel!r} live={self.listener.live}>"

    def changes_since(self, cursor: int | None) -> Changes:
        """Name the jobs notified after ``cursor`` (no I/O); ``None`` ids while not listening."""
        return self.listener.changes_since(cursor)

    def watch(self, wake: Callable[[], None]) -> _Watch:
        """Wake ``wake`` at each write; listens in this process if it is the first watch."""
        return self.listener.watch(wake)
