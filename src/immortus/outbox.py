"""Events a store could not take yet: held in memory, in order, and written when it is back.

The store strategy hands every lifecycle event to :func:`record`. While the store answers, that
is one call to :meth:`Store.record <immortus.stores.base.Store.record>` and nothing else. When
the store raises :class:`~immortus.exceptions.StoreUnavailable` (its server is down, its SQLite
file stayed locked past the timeout), the event goes to the store's :class:`Outbox` instead and
the job carries on:

- The outbox keeps events in the order they came, for every job of the process. While it holds
  any, new events queue behind them, so nothing written later overtakes what was held.
- A daemon thread, started with the outage, retries the oldest event after 0.05 s, doubling
  the pause up to 2 s while the store stays away. Once the store takes an event, the thread
  writes the rest in order, one ``record`` each, and stops at the first failure to try again
  later. Events carry their own times, so a replayed job shows when things really happened.
- At most ``outbox_limit`` events wait (:func:`immortus.configure`; default 10 000, ``0`` turns
  the outbox off and an event the store refuses is logged and lost, as before). Past it the
  oldest ``progress`` or ``meta`` event is dropped (a later one says as much), and only when
  nothing but state changes is held, the oldest event. Every drop counts in
  :attr:`OutboxStats.dropped`; one WARNING per outage says that dropping began.
- Held events are also appended to a spool file (:mod:`immortus.stores.spool`: private to the
  user, one ``write`` per event, no ``fsync``), deleted once they are all written. A process
  that ends before its store is back (``os._exit``, SIGKILL, the OOM killer, an exit whose last
  flush of up to 2 s failed) leaves the file behind. The next process on the host that uses
  the same store takes it over at its first event for that store (a forked child, such as RQ's
  next work horse, included; any process also looks again whenever one of its outages ends):
  it writes the events the dead process never wrote, in order, through its own outbox, and
  logs a WARNING saying how many and whose.
- Heartbeats (:mod:`immortus.heartbeat`) that fail because the store is away are held too, as
  one "beat again" flag per store: when the store is back, the replay thread first extends the
  leases of every job of this process still running in it (which brings back to ``started`` a
  job read or reaped ``lost`` while its lease could not be renewed), then writes the held
  events, then beats once more (for jobs whose ``started`` event was among them).
- Logged on the ``immortus`` logger: a WARNING when an outage begins, a WARNING at its first
  drop, an INFO when the store is back with how many events were written late and dropped,
  a WARNING at exit for the events still held after a last flush of up to 2 s (left in the
  spool for the next process), an ERROR instead when they could not be spooled (lost).
- One outbox per store object and process. A forked child starts with none: what the parent
  held is the parent's to write. Two store objects of one database keep separate orders.

Reads are never held: a status asked for during an outage raises ``StoreUnavailable``, and the
web layer answers 503.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from immortus import config, runtime
from immortus.exceptions import StoreUnavailable
from immortus.stores import spool
from immortus.stores.base import Store
from immortus.transitions import Event, EventKind

__all__ = [
    "Outbox",
    "OutboxStats",
    "adopt",
    "discard",
    "flush",
    "hold_beat",
    "outbox_for",
    "record",
    "stats",
]

logger = logging.getLogger("immortus")

#: Seconds before the first retry of an outage; each failed retry doubles the pause ...
FIRST_RETRY: Final = 0.05
#: ... up to this many seconds.
LONGEST_RETRY: Final = 2.0
#: Seconds the exit handler waits for the stores to take what is held.
EXIT_FLUSH: Final = 2.0

#: Events that a later one of their kind makes redundant: the first to go past the limit.
_SUPERSEDABLE: Final = frozenset({EventKind.PROGRESS, EventKind.META})


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """What the outboxes of this process did since it started (:func:`stats`)."""

    #: Events held right now, waiting for their store.
    buffered: int
    #: Events given up: past ``outbox_limit``, or refused by the store on replay.
    dropped: int
    #: Events written late, once their store was back.
    replayed: int
    #: Outages begun: times a store refused an event while nothing was held for it.
    outages: int


class _Totals:
    """The process's counters, summed over every outbox."""

    __slots__ = ("dropped", "outages", "replayed")

    def __init__(self) -> None:
        self.dropped = 0
        self.replayed = 0
        self.outages = 0


class _Held:
    """One held event; ``waiting`` turns False once it is written, being written or dropped.

    ``number`` is its number in the outage's spool file (0: not spooled).
    """

    __slots__ = ("event", "number", "waiting")

    def __init__(self, event: Event, number: int) -> None:
        self.event: Event | None = event
        self.number = number
        self.waiting = True


_names = itertools.count(1)  # numbers the threads' names


def _nothing_to_beat(store: Store) -> bool:
    """The beat of a process without a heartbeat: no job of it runs, there is nothing to beat."""
    return True


class Outboxes:
    """The outboxes of this process and their counters: a :mod:`runtime <immortus.runtime>` part.

    Every field is guarded by ``lock`` except ``backlog``'s emptiness, read without it on the
    fast path of :func:`record`. A reset gives up what is held (not written); a forked child
    starts with nothing, since what the parent held is the parent's to write. The ``beater``
    is wiring, set by the heartbeat: it stays.
    """

    def __init__(self) -> None:
        #: How the outbox beats a store that is back (:func:`beat_with`).
        self.beater: Callable[[Store], bool] = _nothing_to_beat
        self._forget_everything()

    def _forget_everything(self) -> None:
        self.lock = threading.Lock()
        #: The outboxes holding events now, by store: record() sends a store's events there.
        self.backlog: dict[Store, Outbox] = {}
        #: Every outbox of this process, by store (held weakly: it lives as long as its store).
        self.outboxes: weakref.WeakKeyDictionary[Store, Outbox] = weakref.WeakKeyDictionary()
        self.totals = _Totals()
        #: The stores this process looked for spool files of ended processes (by id: one set
        #: look-up per event). A forked child looks again.
        self.looked: set[int] = set()
        #: The threads retrying a failed heartbeat, by id of their store (:func:`hold_beat`).
        self.beat_retries: dict[int, threading.Thread] = {}

    def reset(self) -> None:
        """Give up what every outbox holds (its thread ends) and forget every outbox."""
        with self.lock:
            boxes = list(self.backlog.values())
        for box in boxes:
            box.discard()
        with self.lock:
            self.backlog.clear()
            self.outboxes = weakref.WeakKeyDictionary()
            self.totals = _Totals()
            self.looked = set()
            self.beat_retries = {}

    def after_fork(self) -> None:
        """No outbox, no thread: what the parent held stays the parent's."""
        self._forget_everything()


_state: Final = runtime.part(Outboxes)


class Outbox:
    """The events one store refused, in order, and the thread that writes them when it is back.

    Made by :func:`outbox_for` (one per store object and process); :func:`record` fills it.
    The counters cover this store since the process started, ``buffered`` the present.
    """

    def __init__(self, store: Store) -> None:
        self._store = weakref.ref(store)
        self._waiting: deque[_Held] = deque()  # every held event, oldest first (and tombstones)
        self._supersedable: deque[_Held] = deque()  # the progress and meta ones among them
        self._count = 0  # how many in _waiting still wait
        self._writing = False  # the replay thread is writing the oldest event
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()  # cuts the replay thread's pause short (flush)
        self._drained = threading.Event()  # set while nothing is held
        self._drained.set()
        self._discarding = False  # discard() asked the replay thread to end quietly
        self._spool: spool.Spool | None = None  # this outage's file, if it could be made
        self._outage_dropped = 0
        self._outage_replayed = 0
        #: Events of this store given up (see :attr:`OutboxStats.dropped`).
        self.dropped = 0
        #: Events of this store written late.
        self.replayed = 0
        #: Outages of this store.
        self.outages = 0

    def __repr__(self) -> str:
        return f"<Outbox of {_name(self._store())}: {self._count + self._writing} held>"

    @property
    def store(self) -> Store | None:
        """The store the events are for (``None`` once it is garbage)."""
        return self._store()

    @property
    def buffered(self) -> int:
        """How many events wait now, counting one being written."""
        with _state.lock:
            return self._count + self._writing

    def flush(self, timeout: float = EXIT_FLUSH) -> bool:
        """Write what is held now, waiting up to ``timeout`` seconds; return whether all went.

        Cuts the replay thread's pause short; the thread writes, in order. Never raises.
        """
        deadline = time.monotonic() + timeout
        while not self._drained.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._wake.set()
            self._drained.wait(min(FIRST_RETRY, remaining))
        return True

    def discard(self) -> int:
        """Give up every event held for this store; return how many.

        For a store that will not come back (decommissioned, replaced by
        :func:`immortus.configure`): the events count as dropped, a WARNING says how many, and
        the replay thread ends at once instead of retrying for the life of the process. An event
        being written at that moment still goes. Never raises.
        """
        with _state.lock:
            given_up = 0
            for held in self._waiting:
                if held.waiting:
                    self._give_up(held)
                    given_up += 1
            self._waiting.clear()
            self._supersedable.clear()
            self._discarding = True
        self._wake.set()
        if given_up:
            logger.warning(
                "immortus: discarded %d tracking events held for the store %s",
                given_up,
                _name(self._store()),
            )
        return given_up

    # -- filled by record(), under _lock ------------------------------------------------------

    def _begin_outage(self, store: Store) -> None:
        self.outages += 1
        _state.totals.outages += 1
        self._outage_dropped = self._outage_replayed = 0
        self._drained.clear()
        _state.backlog[store] = self
        if self._spool is None:
            self._spool = spool.Spool.create(store)
        self._start_thread(store)

    def _start_thread(self, store: Store) -> None:
        self._thread = threading.Thread(
            target=self._replay,
            args=(store,),
            name=f"immortus-outbox-{next(_names)}",
            daemon=True,
        )
        self._thread.start()

    def _hold(self, event: Event, limit: int) -> bool:
        """Queue ``event`` last; return whether this began the outage's dropping."""
        held = _Held(event, 0 if self._spool is None else self._spool.append(event))
        self._waiting.append(held)
        if event.kind in _SUPERSEDABLE:
            self._supersedable.append(held)
        self._count += 1
        if self._thread is None:  # its thread died of something unforeseen: a new one
            store = self._store()
            if store is not None:
                self._start_thread(store)
        return self._keep_within(limit)

    def _keep_within(self, limit: int) -> bool:
        """Drop events past ``limit``; return whether these are the outage's first drops."""
        first = self._outage_dropped == 0
        while self._count > limit:
            self._drop_one()
        if len(self._waiting) > 2 * self._count + 64:  # mostly tombstones: compact
            self._waiting = deque(held for held in self._waiting if held.waiting)
            self._supersedable = deque(held for held in self._supersedable if held.waiting)
        return first and self._outage_dropped > 0

    def _drop_one(self) -> None:
        for queue in (self._supersedable, self._waiting):
            while queue:
                held = queue.popleft()
                if held.waiting:
                    self._give_up(held)
                    return

    def _give_up(self, held: _Held) -> None:
        held.waiting, held.event = False, None
        self._acknowledge(held)
        self._count -= 1
        self.dropped += 1
        self._outage_dropped += 1
        _state.totals.dropped += 1

    # -- the replay thread --------------------------------------------------------------------

    def _acknowledge(self, held: _Held) -> None:
        """Mark ``held`` done in the spool file: written, or given up."""
        if self._spool is not None and held.number:
            self._spool.acknowledge(held.number)

    def _replay(self, store: Store) -> None:
        """Retry with back-off until everything held is written; then end the outage.

        Each try beats the store first (the jobs of this process still running in it), then
        writes the held events; once they are all written it beats again and takes over the
        spool files that dead processes left for the store.
        """
        try:
            pause = FIRST_RETRY
            while True:
                self._wake.wait(pause)
                self._wake.clear()
                beaten = _rebeat(store)  # the running jobs' leases first, then their history
                written, finished = self._write_held(store)
                if finished:
                    if beaten:
                        _rebeat(store)  # the jobs whose started event was just written
                    adopt(store)
                    return
                pause = FIRST_RETRY if written else min(pause * 2, LONGEST_RETRY)
        except BaseException:
            with _state.lock:  # the next event held starts a new thread
                if self._thread is threading.current_thread():
                    self._thread = None
            raise

    def _write_held(self, store: Store) -> tuple[int, bool]:
        """Write held events in order until none is left (True) or the store refuses one."""
        written = 0
        while (held := self._next(store)) is not None:
            event = held.event
            assert event is not None  # noqa: S101 - only waiting events are taken
            try:
                store.record(event)
            except StoreUnavailable:
                with _state.lock:
                    began_dropping = self._put_back(held)
                if began_dropping:
                    _warn_dropping(store)
                return written, False
            except Exception:
                logger.exception(
                    "immortus: the store %s refused a held %s event of job %r; it is dropped",
                    _name(store),
                    event.kind.value,
                    event.job_id,
                )
                with _state.lock:
                    self._writing = False
                    self._count += 1  # _give_up counts it out again
                    self._give_up(held)
                continue
            written += 1
            with _state.lock:
                self._writing = False
                self._acknowledge(held)
                self.replayed += 1
                self._outage_replayed += 1
                _state.totals.replayed += 1
        return written, True

    def _next(self, store: Store) -> _Held | None:
        """Take the oldest waiting event, or end the outage when there is none."""
        with _state.lock:
            while self._waiting:
                held = self._waiting.popleft()
                if held.waiting:
                    held.waiting = False  # being written: no longer a candidate to drop
                    self._count -= 1
                    self._writing = True
                    while self._supersedable and not self._supersedable[0].waiting:
                        self._supersedable.popleft()
                    return held
            self._supersedable.clear()
            if _state.backlog.get(store) is self:
                del _state.backlog[store]
            self._thread = None
            replayed, dropped = self._outage_replayed, self._outage_dropped
            discarded, self._discarding = self._discarding, False
            finished_spool, self._spool = self._spool, None
        if finished_spool is not None:  # everything in it was written or given up
            finished_spool.remove()
        if not discarded:
            logger.info(
                "immortus: the store %s is back: wrote %d held tracking events in order "
                "(%d dropped during the outage)",
                _name(store),
                replayed,
                dropped,
            )
        with _state.lock:  # flush() returns once the outage is told over (unless a new one began)
            if _state.backlog.get(store) is not self:
                self._drained.set()
        return None

    def _put_back(self, held: _Held) -> bool:
        """Return an event the store refused to the front, where it still belongs.

        Returns whether this began the outage's dropping (the limit may have been lowered).
        """
        held.waiting = True
        self._writing = False
        self._waiting.appendleft(held)
        if held.event is not None and held.event.kind in _SUPERSEDABLE:
            self._supersedable.appendleft(held)
        self._count += 1
        return self._keep_within(_limit())


def _warn_outage(store: Store, error: StoreUnavailable, limit: int) -> None:
    logger.warning(
        "immortus: the store %s is unreachable (%s); holding its tracking events in memory "
        "(up to outbox_limit=%d) and retrying until it is back",
        _name(store),
        error,
        limit,
    )


def _warn_dropping(store: Store) -> None:
    logger.warning(
        "immortus: the store %s has been away long enough to fill its outbox (outbox_limit=%d): "
        "dropping the oldest progress and meta events first; immortus.outbox.stats().dropped "
        "counts the losses",
        _name(store),
        _limit(),
    )


def _name(store: Store | None) -> str:
    """The store as logs show it: its own repr, or its class when it has none of its own."""
    return repr(store) if type(store).__repr__ is not object.__repr__ else type(store).__name__


def _limit() -> int:
    return config.get_config().outbox_limit


def outbox_for(store: Store) -> Outbox:
    """Return this process's outbox for ``store``, making it on first use."""
    with _state.lock:
        return _outbox_for(store)


def _outbox_for(store: Store) -> Outbox:
    box = _state.outboxes.get(store)
    if box is None:
        box = _state.outboxes[store] = Outbox(store)
    return box


def record(store: Store, event: Event) -> None:
    """Write ``event`` to ``store``, or hold it for later if the store is away.

    The store strategy's one way of writing. While nothing is held for any store, this is one
    check and ``store.record(event)``.

    Raises:
        StoreUnavailable: the store refused the event and ``outbox_limit`` is 0 (nothing held).
        CorruptRecord, InvalidInput: as :meth:`Store.record` (these are not outages).
    """
    if id(store) not in _state.looked:  # did an ended process leave events for this store?
        _adopt_soon(store)
    if _state.backlog:  # some store is away: this one's events may have to queue behind its own
        with _state.lock:
            box = _state.backlog.get(store)
            began_dropping = box is not None and box._hold(event, _limit())
        if began_dropping:
            _warn_dropping(store)
        if box is not None:
            return
    try:
        store.record(event)
    except StoreUnavailable as exc:
        if not _begin_holding(store, event, exc):
            raise


def _begin_holding(store: Store, event: Event, error: StoreUnavailable) -> bool:
    """Hold ``event`` for ``store`` (starting an outage); False when the outbox is off."""
    limit = _limit()
    with _state.lock:
        box = _state.backlog.get(store)
        began_outage = box is None
        if box is None:
            if limit == 0:
                return False
            box = _outbox_for(store)
            box._begin_outage(store)
        began_dropping = box._hold(event, limit)
    if began_outage:
        # Registered now rather than at import, so that it runs before the exit handlers
        # registered earlier (SQLite's connection finalizers among them).
        runtime.at_exit(_flush_at_exit)
        _warn_outage(store, error, limit)
    if began_dropping:
        _warn_dropping(store)
    return True


def hold_beat(store: Store) -> None:
    """Beat ``store`` again as soon as it is back: a heartbeat to it failed, it is away.

    Called by the heartbeat (:mod:`immortus.heartbeat`), which logs the failure. While events
    are held for ``store``, its replay thread already beats before it writes them. Otherwise a
    daemon thread retries the beat with the replay's back-off (0.05 s doubling to 2 s) until
    the store takes it, or until an outage of events takes over. With the outbox off
    (``outbox_limit=0``) nothing is held: the heartbeat's next tick tries again. Never raises.
    """
    key = id(store)
    with _state.lock:
        if store in _state.backlog or key in _state.beat_retries or _limit() == 0:
            return
        thread = threading.Thread(
            target=_retry_beat,
            args=(store,),
            name=f"immortus-outbox-beat-{next(_names)}",
            daemon=True,
        )
        _state.beat_retries[key] = thread
    thread.start()


def _retry_beat(store: Store) -> None:
    """Retry a held beat until ``store`` takes it (or its replay thread takes over)."""
    pause = FIRST_RETRY
    try:
        while True:
            time.sleep(pause)
            with _state.lock:
                replaying = store in _state.backlog
            if replaying or _rebeat(store):
                return
            pause = min(pause * 2, LONGEST_RETRY)
    finally:
        with _state.lock:
            _state.beat_retries.pop(id(store), None)


def beat_with(beater: Callable[[Store], bool]) -> None:
    """Beat a store that is back with ``beater``: the process heartbeat's ``beat_store``.

    Called once by :mod:`immortus.heartbeat` when it makes the process's heartbeat. ``beater``
    extends the leases of this process's jobs running in the store and returns False while
    the store is still away. Until then there is no job to beat.
    """
    _state.beater = beater


def _rebeat(store: Store) -> bool:
    """Beat the jobs of this process running in ``store``; False while it is still away."""
    return _state.beater(store)


def _adopt_soon(store: Store) -> None:
    """Look for spool files ended processes left for ``store``; adopt them in a thread."""
    _state.looked.add(id(store))
    try:
        if next(spool.candidates(store), None) is None:
            return
        threading.Thread(
            target=adopt, args=(store,), name=f"immortus-adopt-{next(_names)}", daemon=True
        ).start()
    except Exception:  # tracking never breaks the job: the next outage's thread looks again
        logger.exception("immortus: cannot look for held events left by ended processes")


def adopt(store: Store) -> int:
    """Take over the events that ended processes held for ``store``; return how many.

    Reads the spool files of the host's processes that ended before ``store`` came back, and
    records their unwritten events in order through this process's outbox (written now, or
    held if the store is away again). Each file is deleted once its events are taken, and a
    WARNING names the process and the count. Runs by itself at a process's first event for
    a store (in every process, a forked child included) and after each of its outages; call it
    to take over at once. Never raises.
    """
    return spool.take_over(store, functools.partial(record, store))


def stats() -> OutboxStats:
    """Return the counters of every outbox in this process (the numbers to monitor)."""
    with _state.lock:
        buffered = sum(box._count + box._writing for box in _state.backlog.values())
        return OutboxStats(
            buffered=buffered,
            dropped=_state.totals.dropped,
            replayed=_state.totals.replayed,
            outages=_state.totals.outages,
        )


def flush(timeout: float = EXIT_FLUSH) -> bool:
    """Write what every outbox holds, waiting up to ``timeout`` seconds in all.

    Returns whether nothing is held any more. Never raises. While nothing is held (the common
    case: RQ's work horse calls it after every job) it is one check, as :func:`record`'s.
    """
    if not _state.backlog:
        return True
    deadline = time.monotonic() + timeout
    with _state.lock:
        boxes = list(_state.backlog.values())
    flushed = [box.flush(max(0.0, deadline - time.monotonic())) for box in boxes]
    return all(flushed)  # every outbox had its turn, even after one timed out


def discard(store: Store | None = None) -> int:
    """Give up the events held for ``store`` (default: every store); return how many.

    See :meth:`Outbox.discard`. Never raises.
    """
    with _state.lock:
        boxes = [
            box for held_for, box in _state.backlog.items() if store is None or held_for is store
        ]
    return sum(box.discard() for box in boxes)


def _flush_at_exit() -> None:
    """At interpreter exit: a last flush, then say what is left to the next process, or lost."""
    flush(EXIT_FLUSH)
    with _state.lock:
        left = [(box, box._count + box._writing, box._spool) for box in _state.backlog.values()]
    for box, count, kept in left:
        if not count:
            continue
        if kept is not None:
            logger.warning(
                "immortus: the store %s is still unreachable at exit: %d tracking events are "
                "left in %s; the next process on this host that uses the store writes them",
                _name(box.store),
                count,
                kept.path,
            )
        else:
            logger.error(
                "immortus: the store %s is still unreachable at exit: %d tracking events held "
                "in memory are lost",
                _name(box.store),
                count,
            )
