"""Change sources: how the web learns that a store wrote, without polling where it can.

Every store answers :meth:`Store.change_source <immortus.stores.base.Store.change_source>`
with the same :class:`~immortus.strategy.ChangeSource` at every call (:func:`shared`):

- :class:`PollingSource` (the default: memory, SQLite, MySQL, a third party's store) asks the
  store's ``changes_since`` when asked, and cannot push: followers ask it at every tick.
- A push source (Redis: :mod:`immortus.stores.notify_redis`; PostgreSQL with psycopg 3:
  :mod:`immortus.stores.notify_postgres`) is woken by the server at each write through a
  :class:`Listener`: one connection and one thread per store and process, subscribed while
  anyone watches.

A :class:`Listener` subscribes when its first watch is made and lets its connection go once
the last watch is closed, so a process that follows no job holds no subscription. Its watches
read ``live`` only while the subscription is confirmed; when the connection breaks they read
``live=False`` (watchers fall back to polling) and the listener subscribes again, pausing twice
as long after each failure, up to :data:`MAX_RETRY`. Each confirmed subscription wakes every
watcher, who then asks what changed since its cursor: a write made while the connection was
down is read then. After ``os.fork()`` the child's listeners start afresh: no thread, no
connection, until the child watches.
"""

from __future__ import annotations

import logging
import threading
import weakref
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Final, Generic, Protocol, TypeVar, cast

from immortus import runtime
from immortus.backoff import backoff
from immortus.strategy import MAX_CHANGES, Changes, ChangeSource

__all__ = [
    "COALESCE",
    "LISTEN_SLICE",
    "MAX_RETRY",
    "Listener",
    "Notice",
    "PollingSource",
    "TellsChanges",
    "shared",
]

logger = logging.getLogger("immortus.stores")

#: Most seconds a listener waits for a notice before it looks whether anyone still watches.
LISTEN_SLICE: Final = 1.0
#: Seconds a listener lets notices gather after waking its watchers: a burst of writes costs a
#: wake-up per this, not one per write (below the feeds' tick, so it delays no read).
COALESCE: Final = 0.02
#: First pause, in seconds, before subscribing again after a failure; it doubles after each.
FIRST_RETRY: Final = 0.05
#: Longest pause between two tries to subscribe while the server is away.
MAX_RETRY: Final = 5.0

#: What a listener hears: the id of a job written, ``""`` for a write of an unnamed job, or
#: ``None`` when the subscription was (re)confirmed (anything may have been written meanwhile).
Notice = str | None


class TellsChanges(Protocol):
    """What a :class:`PollingSource` asks of a store (every :class:`~.base.Store` has it)."""

    @property
    def tracks_changes(self) -> bool:
        """Whether :meth:`changes_since` names the records written."""

    def changes_since(self, cursor: int | None) -> Changes:
        """The new cursor and the ids written after ``cursor`` (see ``Store.changes_since``)."""


_S = TypeVar("_S", bound=ChangeSource)
_T = TypeVar("_T")
_C = TypeVar("_C")


class Listeners:
    """This process's notice listeners: a :mod:`runtime <immortus.runtime>` part.

    A listener lives with its store, so a reset keeps them; in a forked child every listener
    starts afresh, since the parent's threads and connections are not the child's.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()  # guards the sources kept on stores (:func:`shared`)
        self.every: weakref.WeakSet[Listener[Any]] = weakref.WeakSet()

    def reset(self) -> None:
        """Keep the listeners: they belong to their stores."""

    def after_fork(self) -> None:
        self.lock = threading.Lock()  # the parent's may have been held at the fork
        for listener in list(self.every):
            listener._start_afresh()


_state: Final = runtime.part(Listeners)
#: The attribute of a store that keeps its source (it goes with the store).
_ATTRIBUTE: Final = "_immortus_change_source"


def shared(store: _T, make: Callable[[_T], _S]) -> _S:
    """Return the source ``make(store)`` made for ``store`` the first time, at every call.

    A store without a ``__dict__`` (``__slots__`` only) gets a new source at each call: its
    followers then read all of its jobs at every tick.
    """
    if not hasattr(store, "__dict__"):
        return make(store)
    with _state.lock:
        kept = vars(store)
        source = kept.get(_ATTRIBUTE)
        if source is None:
            source = kept[_ATTRIBUTE] = make(store)
    return cast(_S, source)  # made by this ``make`` for this store


class PollingSource(ChangeSource):
    """Asks the store's ``changes_since`` when asked; cannot push (followers poll it)."""

    def __init__(self, store: TellsChanges) -> None:
        self.store = store
        self.names_changes = store.tracks_changes

    def __repr__(self) -> str:
        return f"<PollingSource {self.store!r}>"

    def changes_since(self, cursor: int | None) -> Changes:
        """Ask the store (see :meth:`Store.changes_since`)."""
        return self.store.changes_since(cursor)


class _Watch:
    """One watcher's hold on a :class:`Listener` (see :class:`~immortus.strategy.Watch`)."""

    __slots__ = ("_listener", "closed", "wake")

    def __init__(self, listener: Listener[Any], wake: Callable[[], None]) -> None:
        self._listener = listener
        self.wake = wake
        self.closed = False

    @property
    def live(self) -> bool:
        return not self.closed and self._listener.live

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._listener._leave(self)


class Listener(ABC, Generic[_C]):
    """One subscription to a server's write notices, shared by every watcher of a process.

    Subclasses open and read the connection (:meth:`_subscribe`, :meth:`_receive`,
    :meth:`_release`); this class runs the thread, the watches, the retries and the fork
    reset. It also numbers what it heard (:meth:`changes_since`), for a server whose store
    keeps no change numbers of its own (PostgreSQL). See the module docstring.
    """

    #: Whether a subscription is confirmed when :meth:`_subscribe` returns (False: when
    #: :meth:`_receive` hears ``None``).
    confirms_on_subscribe = False

    def __init__(self, name: str) -> None:
        self.name = name
        self._start_afresh()
        _state.every.add(self)

    def _start_afresh(self) -> None:
        """No watch, no thread, no connection: a new listener, or one a forked child inherited."""
        self._lock = threading.Lock()
        self._watches: set[_Watch] = set()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.live = False
        #: How many subscriptions were confirmed so far (for tests and benchmarks).
        self.subscriptions = 0
        self._seq = 0  # notices heard
        self._floor = 0  # a cursor below it may have missed a notice
        self._written: OrderedDict[str, int] = OrderedDict()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} live={self.live} watches={len(self._watches)}>"

    @property
    def running(self) -> bool:
        """Whether the listener's thread is alive (it is while anyone watches)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def watch(self, wake: Callable[[], None]) -> _Watch:
        """Call ``wake()`` at each notice until the watch is closed; subscribe if need be."""
        watch = _Watch(self, wake)
        with self._lock:
            self._watches.add(watch)
            self._stopping.clear()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"immortus-listen {self.name}", daemon=True
                )
                self._thread.start()
        return watch

    def _leave(self, watch: _Watch) -> None:
        with self._lock:
            self._watches.discard(watch)
            if not self._watches:
                self._stopping.set()

    def changes_since(self, cursor: int | None) -> Changes:
        """Name the jobs heard of after ``cursor`` (``None`` ids unless live throughout).

        Costs no I/O: a cursor counts notices. While not live, or past what it remembers
        (:data:`~immortus.stores.base.MAX_CHANGES` jobs), it answers ``None``.
        """
        with self._lock:
            seq = self._seq
            if cursor is None:
                return seq, frozenset()
            if not self.live or cursor < self._floor or cursor > seq:
                return seq, None
            changed: list[str] = []
            for job_id in reversed(self._written):
                if self._written[job_id] <= cursor:
                    break
                changed.append(job_id)
            return seq, frozenset(changed)

    def _note(self, notices: Sequence[Notice], live: bool | None = None) -> None:
        """Count ``notices`` (and a change of ``live``), then wake every watcher."""
        with self._lock:
            for notice in notices:
                self._seq += 1
                if notice:
                    self._written[notice] = self._seq
                    self._written.move_to_end(notice)
                    if len(self._written) > MAX_CHANGES:
                        _, lost = self._written.popitem(last=False)
                        self._floor = max(self._floor, lost)
                else:
                    self._floor = self._seq
                    if notice is None:
                        self.live = True
                        self.subscriptions += 1
            if live is not None:
                self._seq += 1
                self._floor = self._seq
                self.live = live
            watches = list(self._watches)
        for watch in watches:
            try:
                watch.wake()
            except Exception:  # a watcher's bug must not stop the others' wakes
                logger.exception("immortus: waking a watcher of %s failed", self.name)

    def _idle(self) -> bool:
        """Whether nobody watches; if so, the thread is done (decided under the lock)."""
        with self._lock:
            if self._watches:
                return False
            self._thread = None
            return True

    def _run(self) -> None:
        """The listener's thread: subscribe, hear, wake; retry; end once nobody watches."""
        connection: _C | None = None
        failures = 0
        try:
            while not self._idle():
                if connection is None:
                    try:
                        connection = self._subscribe()
                    except Exception as exc:  # noqa: BLE001  # the server is away: retry
                        failures += 1
                        logger.debug("immortus: cannot subscribe to %s: %s", self.name, exc)
                        self._stopping.wait(backoff(FIRST_RETRY, failures, MAX_RETRY))
                        continue
                    if self.confirms_on_subscribe:
                        self._note([None])
                try:
                    notices = self._receive(connection, LISTEN_SLICE)
                except Exception as exc:  # noqa: BLE001  # the connection broke: poll, retry
                    logger.debug("immortus: the subscription to %s broke: %s", self.name, exc)
                    self._release(connection)
                    connection = None
                    self._note([], live=False)
                    continue
                if notices:
                    failures = 0
                    self._note(notices)
                    self._stopping.wait(COALESCE)
        finally:
            if connection is not None:
                self._release(connection)
            with self._lock:
                self.live = False

    @abstractmethod
    def _subscribe(self) -> _C:
        """Open a connection and subscribe to the notices (on the listener's thread).

        Raises:
            Exception: anything, when the server cannot be reached (the listener retries).
        """

    @abstractmethod
    def _receive(self, connection: _C, timeout: float) -> Sequence[Notice]:
        """Return the notices heard within ``timeout`` seconds (often none).

        Raises:
            Exception: anything, when the connection broke (the listener subscribes again).
        """

    @abstractmethod
    def _release(self, connection: _C) -> None:
        """Close ``connection``; must not raise."""
