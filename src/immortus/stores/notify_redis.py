"""Redis push: every record write publishes its change number on ``{prefix}changes``.

The store's write (:meth:`RedisStore.record <immortus.stores.redis.RedisStore.record>`, and
:meth:`~immortus.stores.redis.RedisStore.reap_lost`) numbers the change and ``PUBLISH`` sends the
number in the same script of its ``MULTI``, so a notice arrives only once the write can be read.
:class:`RedisSource` answers ``changes_since`` from the store's own change numbers and wakes its
watchers through one :class:`RedisListener` (one pub/sub connection) per store and process.
``PUBLISH`` names no key, so it works unchanged on Redis Cluster, where it reaches every node.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from immortus.stores.notify import Listener, Notice, _Watch
from immortus.strategy import Changes, ChangeSource

if TYPE_CHECKING:
    import redis
    from redis.client import PubSub

    from immortus.stores.base import Store

__all__ = ["RedisListener", "RedisSource"]

#: Most messages one :meth:`RedisListener._receive` takes off the connection at once.
_DRAIN: Final = 1000


class RedisListener(Listener["PubSub"]):
    """Subscribes to ``channel`` with ``client.pubsub()``; every message is a write."""

    def __init__(self, client: redis.Redis, channel: str, name: str) -> None:
        self._client = client
        self.channel = channel
        super().__init__(name)

    def _subscribe(self) -> PubSub:
        pubsub: PubSub = self._client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(self.channel)  # confirmed by a "subscribe" message
        except BaseException:
            pubsub.close()
            raise
        return pubsub

    def _receive(self, connection: PubSub, timeout: float) -> Sequence[Notice]:
        notices: list[Notice] = []
        message = connection.get_message(timeout=timeout)
        while message is not None and len(notices) < _DRAIN:
            kind = message.get("type")
            if kind == "subscribe":  # also after redis-py reconnected by itself
                notices.append(None)
            elif kind == "message":
                notices.append("")
            message = connection.get_message(timeout=0.0)
        return notices

    def _release(self, connection: PubSub) -> None:
        with contextlib.suppress(Exception):  # closing a broken connection may fail too
            connection.close()


class RedisSource(ChangeSource):
    """A Redis store's changes: its change numbers, pushed by ``PUBLISH`` at each write."""

    names_changes = True
    #: The change numbers are the store's own: they name the writes whether or not anyone
    #: listens, so a feed may let go of the push while it ticks anyway (:mod:`immortus.web.feed`).
    names_changes_unwatched = True

    def __init__(self, store: Store, listener: RedisListener) -> None:
        self.store = store
        self.listener = listener

    def __repr__(self) -> str:
        return f"<RedisSource {self.listener.channel!r} live={self.listener.live}>"

    def changes_since(self, cursor: int | None) -> Changes:
        """Ask the store's change numbers (one script call); see ``Store.changes_since``."""
        return self.store.changes_since(cursor)

    def watch(self, wake: Callable[[], None]) -> _Watch:
        """Wake ``wake`` at each write; subscribes this process if it is the first watch."""
        return self.listener.watch(wake)
