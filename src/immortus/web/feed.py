"""A change feed: one poller per process answers for every open stream at once.

Each open stream (:class:`~immortus.web.stream.StreamResponse`) *subscribes* its job, a
``(job_id, job_class)`` pair, to the feed of its poll interval (:func:`feed_for`). The feed's one
thread then, every ``tick`` seconds, asks :func:`immortus.query.settle_many` about every job
subscribed: the jobs are grouped by strategy and each strategy answers its group with one
:meth:`~immortus.TrackingStrategy.status_many` (one store round trip for the store strategy),
whether 1 stream or 1 000 are open. The feed keeps each job's last answer, and wakes only the
subscribers of a job whose answer changed (a different ``JobStatus``, or another kind of error);
each subscriber then takes the new answer and decides what to send. So the streams cost one
query per tick in all, not one per stream, and nothing per stream while their job is quiet.

- It re-reads what changed. A strategy may name where its answers announce their changes
  (:meth:`~immortus.TrackingStrategy.changes`: the store strategy names its store's
  :class:`~immortus.strategy.ChangeSource`). The jobs are grouped by source; at each tick the
  feed asks each source what was written since its cursor and reads only its followed jobs
  among those records (all of them when the source cannot tell). So a tick costs one cheap
  question per source plus the changed records, not every followed record. Some changes come
  with no write: a lease that lapses (the job reads ``lost``), a record that expires; so every
  :data:`FULL_REREAD` seconds the feed reads all of a source's jobs anyway. A job the feed has
  no status for yet (a new subscriber's) or whose last answer was an error is read at every
  tick. Jobs of a strategy with no source (a queue's, which also asks the queue, or a custom
  one) are read at every tick.
- It waits for a push where the store has one (Redis pub/sub, PostgreSQL ``LISTEN``; see
  :mod:`immortus.stores.notify`). When every job followed is a source's that pushes, and the
  push is live, the feed does not tick: it waits for a write's notice, or for the next full
  re-read, so an idle process asks its store nothing between two full re-reads. A notice is
  only a hint (the cursor still decides what is read), and while the push is down the feed
  ticks as without it, so no write is missed. Many notices still make at most one read per
  tick. While a source writes at every tick the feed lets go of its push (it ticks anyway, and
  reading the notices would cost the listener's thread), and watches it again once it is
  quiet (:data:`BUSY_TICKS`). The feed holds its watches while it runs (the listener's one
  connection per process is shared by every feed), and lets them go when its thread ends.
  ``push=False`` (or ``IMMORTUS_PUSH=off`` in the environment, for the shared feeds) ticks
  always.
- It asks the strategy, not the store: a custom strategy is followed as it is verified.
- Subscribers wait on a ``threading.Event`` (WSGI: the server's thread blocks) or on a future of
  their event loop (ASGI: nothing blocks the loop; the feed wakes each loop once per tick, with
  ``call_soon_threadsafe``, however many of its streams changed). Store I/O happens only on the
  feed's thread.
- The thread starts with the first subscriber and ends once the last one has left, so a
  process that follows no job polls nothing and holds no subscription. A subscriber leaves
  with :meth:`Subscription.close` (streams do when they end, and when their client leaves:
  the server closes their generator).
- When every job read at a tick failed with :class:`~immortus.exceptions.StoreUnavailable`
  (a tick that read nothing is no failure), the next tick waits twice as long, up to
  :data:`MAX_BACKOFF`; any answer, or a new subscriber, brings the pace back to ``tick``.
- After ``os.fork()`` every feed starts afresh in the child: no subscriber, no thread (the
  threads stayed in the parent), new locks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Final, Self

from immortus import query, runtime
from immortus.backoff import backoff
from immortus.exceptions import StoreUnavailable
from immortus.finder import find_strategy
from immortus.status import JobStatus
from immortus.strategy import ChangeSource, Watch

__all__ = [
    "BUSY_TICKS",
    "DEFAULT_TICK",
    "FULL_REREAD",
    "MAX_BACKOFF",
    "PUSH_ENV",
    "ChangeFeed",
    "JobRef",
    "Outcome",
    "Subscription",
    "SubscriptionGroup",
    "change_source",
    "feed_for",
]

logger = logging.getLogger("immortus.web")

#: Seconds between two polls of a feed, unless a stream asks for another interval.
DEFAULT_TICK: Final = 0.05
#: Longest pause between two polls while the store is unreachable.
MAX_BACKOFF: Final = 10.0
#: Seconds between two reads of every job a feed follows through its store's changes: what
#: changes without a write (a lapsed lease, an expired record) shows within this plus a tick.
FULL_REREAD: Final = 1.0
#: Ticks in a row at which a pushing source wrote (or did not) before the feed lets go of its
#: push while it is busy (or watches it again once it is quiet): see ``_Following.pace``.
BUSY_TICKS: Final = 3
#: The environment variable that turns push off for the shared feeds (:func:`feed_for`) with
#: ``off``: they then tick even when their store can push.
PUSH_ENV: Final = "IMMORTUS_PUSH"


#: One job to follow: ``(job_id, job_class or None)``.
JobRef = tuple[str, str | None]
#: What the feed learned about a job: its status, or why it could not be had.
Outcome = JobStatus | BaseException
#: Asks about many jobs at once; answers one outcome per job, in order (``query.settle_many``).
Settle = Callable[[Sequence[JobRef]], Sequence[Outcome]]


def _same(before: Outcome | None, after: Outcome) -> bool:
    """Whether a subscriber can skip ``after``: the same status, or the same kind of failure.

    Stores decode an unchanged record into the very same ``JobStatus``, so identity settles
    most jobs of a tick without comparing their fields.
    """
    if before is after:
        return True
    if isinstance(after, BaseException) or isinstance(before, BaseException):
        return type(before) is type(after)
    return before == after


class _Job:
    """One followed job: its latest outcome with a version counter, and its subscribers."""

    __slots__ = ("latest", "subscribers")

    def __init__(self) -> None:
        #: ``(version, outcome)``, replaced as one value, so a reader never sees them mixed.
        self.latest: tuple[int, Outcome | None] = (0, None)
        self.subscribers: set[Subscription] = set()


#: One followed job with its state, as a tick sees it.
_Item = tuple[JobRef, _Job]


class _Following:
    """One change source whose jobs the feed follows, and the feed's watch on its push."""

    __slots__ = ("busy", "cursor", "due", "source", "streak", "watch", "watched")

    def __init__(self, source: ChangeSource) -> None:
        self.source = source
        self.cursor: int | None = None  # None: not following (yet, or since a failure)
        self.due = 0.0  # when (time.monotonic) every job must be read again
        self.watch: Watch | None = None
        self.watched = False  # whether the source was asked for a watch
        self.busy = False  # whether the source wrote at every tick lately (see ``pace``)
        self.streak = 0  # ticks in a row that disagreed with ``busy``

    def pace(self, wake: Callable[[], None]) -> None:
        """Watch the source's push while it is quiet; let go of it while it is busy.

        A source that wrote at each of :data:`BUSY_TICKS` ticks in a row is busy: the feed
        ticks anyway, so its notices would only cost the listener's thread their reading; the
        watch is let go (the listener unsubscribes once nobody else watches). After as many
        ticks in a row without a write it is quiet again, and watched again. Writes are read
        through the cursor either way: a busy source's at the next tick. Only a source whose
        changes are named without its push (``names_changes_unwatched``: Redis's, numbered by
        the store) is let go; one that names them from its notices (PostgreSQL's) stays watched.
        """
        if not self.busy or not self.source.names_changes_unwatched:
            self.start_watching(wake)
        elif self.watch is not None:
            self.release()
            self.watched = False  # asked again once the source is quiet

    def _count(self, wrote: bool) -> None:
        """Count a tick at which the source ``wrote`` (or not) towards a change of pace."""
        self.streak = self.streak + 1 if wrote != self.busy else 0
        if self.streak >= BUSY_TICKS:
            self.busy, self.streak = wrote, 0

    def start_watching(self, wake: Callable[[], None]) -> None:
        """Ask the source to push (once); a source that cannot, or fails to, is polled."""
        if self.watched:
            return
        self.watched = True
        try:
            self.watch = self.source.watch(wake)
        except Exception:  # a source's bug must not stop the feed: it is polled instead
            logger.exception("immortus: %r could not push its changes", self.source)

    @property
    def pushing(self) -> bool:
        """Whether a write to the source wakes the feed now."""
        return self.watch is not None and self.watch.live

    def release(self) -> None:
        """Stop watching the source (its listener lets its connection go with its last watch)."""
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    def pick(self, items: list[_Item], now: float, period: float) -> list[_Item]:
        """Return the items to read at this tick: the changed ones, or all of them when due.

        Asks the source before anyone reads, so a write landing after the question is named by
        the next one. A source that fails to answer has all its jobs read (their read reports
        the failure as it would without change tracking), and is followed afresh at the next
        tick.
        """
        starting = self.cursor is None
        try:
            self.cursor, changed = self.source.changes_since(self.cursor)
        except Exception as exc:  # a broken source is read in full instead
            if not isinstance(exc, StoreUnavailable):
                logger.debug("immortus: %r could not name its changes", self.source, exc_info=True)
            self.cursor, changed = None, None
        if changed is not None and not starting:
            self._count(bool(changed))
        if starting or changed is None or now >= self.due:
            self.due = now + period
            return items
        return [
            item
            for item in items
            if item[0][0] in changed or not isinstance(item[1].latest[1], JobStatus)
        ]


def change_source(job_class: str | None) -> ChangeSource | None:
    """Where the answers for ``job_class`` announce their changes (``None``: nowhere).

    Asks the class's strategy (:meth:`~immortus.TrackingStrategy.changes`). A class whose
    strategy cannot be found, or fails to answer, has none: its jobs are read at every tick,
    where the read reports why.
    """
    try:
        return find_strategy(job_class).changes()
    except Exception:  # noqa: BLE001  # the tick's read reports it, job by job
        return None


class Subscription:
    """One stream's hold on a job of a :class:`ChangeFeed`: wait for a change, take it, leave.

    Made by :meth:`ChangeFeed.subscribe`. Wait with :meth:`next_change` (blocking) or
    :meth:`anext_change` (on the event loop given to ``subscribe``); then :meth:`take` the
    outcome. Only what the feed learns after the subscription counts (the stream already has
    the job's status); the first poll of a job nobody followed before is news to all its
    subscribers. Use it as a context manager, or call :meth:`close`.
    """

    __slots__ = ("_event", "_feed", "_future", "_job", "_seen", "closed", "job", "loop")

    def __init__(
        self,
        feed: ChangeFeed,
        job: JobRef,
        state: _Job,
        loop: asyncio.AbstractEventLoop | None,
        event: threading.Event | None = None,
    ) -> None:
        self.job = job
        self.loop = loop
        self.closed = False
        self._feed = feed
        self._job = state
        self._seen = state.latest[0]
        self._event = threading.Event() if event is None else event
        self._future: asyncio.Future[bool] | None = None

    @property
    def changed(self) -> bool:
        """Whether the feed has an outcome this subscriber has not taken yet."""
        return self._job.latest[0] != self._seen

    def take(self) -> Outcome:
        """Return the job's latest outcome, and count it as seen.

        Raises:
            LookupError: the feed has no outcome for the job yet (wait for a change first).
        """
        version, outcome = self._job.latest
        if outcome is None:
            raise LookupError(f"the feed has not asked about job {self.job[0]!r} yet")
        self._seen = version
        return outcome

    def next_change(self, timeout: float) -> bool:
        """Block until the job's outcome changes; return False if ``timeout`` seconds pass."""
        self._event.clear()
        if self.changed:
            return True
        return self._event.wait(max(0.0, timeout))

    async def anext_change(self, timeout: float) -> bool:
        """Async twin of :meth:`next_change`, on the loop given to :meth:`ChangeFeed.subscribe`.

        Raises:
            RuntimeError: the subscription was made without an event loop.
        """
        loop = self.loop
        if loop is None:
            raise RuntimeError("anext_change() needs a subscription made with an event loop")
        if self.changed:
            return True
        future: asyncio.Future[bool] = loop.create_future()
        self._future = future
        timer = loop.call_later(max(0.0, timeout), _settle_future, future, False)
        try:
            return await future
        finally:
            timer.cancel()
            self._future = None

    def _wake(self) -> None:
        """Wake a blocked :meth:`next_change` (any thread)."""
        self._event.set()

    def _awake(self) -> None:
        """Resolve a pending :meth:`anext_change` (on the subscription's loop only)."""
        future = self._future
        if future is not None:
            _settle_future(future, True)

    def close(self) -> None:
        """Leave the feed (idempotent); the last subscriber leaving stops its thread."""
        if not self.closed:
            self.closed = True
            self._feed._leave(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SubscriptionGroup:
    """Several jobs followed on one feed and waited on together: what a multi-job stream holds.

    ``jobs`` are subscribed in order (the same job twice is two members). Wait for a change of
    any member with :meth:`next_change` (blocking) or :meth:`anext_change` (on ``loop``); then
    :meth:`changed` says which members have news. :meth:`drop` leaves one job's feed, and
    :meth:`close` (or leaving the ``with`` block) every one.
    """

    def __init__(
        self,
        feed: ChangeFeed,
        jobs: Sequence[JobRef],
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.loop = loop
        self._event = threading.Event()
        self.members: list[Subscription] = []
        try:
            for job_id, job_class in jobs:
                self.members.append(feed.subscribe(job_id, job_class, loop=loop, event=self._event))
        except BaseException:
            self.close()
            raise

    def changed(self) -> list[int]:
        """The positions of the members (not dropped) with an outcome not taken yet."""
        return [
            index
            for index, member in enumerate(self.members)
            if not member.closed and member.changed
        ]

    def next_change(self, timeout: float) -> bool:
        """Block until a member's outcome changes; return False if ``timeout`` seconds pass."""
        self._event.clear()
        if self.changed():
            return True
        return self._event.wait(max(0.0, timeout))

    async def anext_change(self, timeout: float) -> bool:
        """Async twin of :meth:`next_change`, on the group's loop.

        Raises:
            RuntimeError: the group was made without an event loop.
        """
        loop = self.loop
        if loop is None:
            raise RuntimeError("anext_change() needs a group made with an event loop")
        if self.changed():
            return True
        future: asyncio.Future[bool] = loop.create_future()
        waiting = [member for member in self.members if not member.closed]
        for member in waiting:
            member._future = future
        timer = loop.call_later(max(0.0, timeout), _settle_future, future, False)
        try:
            return await future
        finally:
            timer.cancel()
            for member in waiting:
                member._future = None

    def drop(self, index: int) -> None:
        """Stop following the member at ``index`` (idempotent)."""
        self.members[index].close()

    def close(self) -> None:
        """Leave the feed for every member (idempotent)."""
        for member in self.members:
            member.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _settle_future(future: asyncio.Future[bool], changed: bool) -> None:
    if not future.done():
        future.set_result(changed)


def _awake_all(subscriptions: list[Subscription]) -> None:
    for subscription in subscriptions:
        subscription._awake()


class ChangeFeed:
    """Polls the subscribed jobs once per ``tick`` seconds, with one ``settle`` call for all.

    ``settle`` answers a list of jobs in one go (by default :func:`immortus.query.settle_many`,
    which resolves each job's strategy at every tick, so re-configuring takes effect). With
    ``follow_changes`` (the default) a tick asks only about the jobs of a change source whose
    records changed, plus every ``full_reread`` seconds all of them; without, every job at
    every tick. With ``push`` (the default) it waits for the notices of a source that pushes
    instead of ticking. See the module docstring for the thread, the changes, the push, the
    wake-ups and the back-off.

    Raises:
        ValueError: ``tick`` is not a positive number of seconds.
    """

    def __init__(
        self,
        tick: float = DEFAULT_TICK,
        *,
        settle: Settle = query.settle_many,
        max_backoff: float = MAX_BACKOFF,
        follow_changes: bool = True,
        full_reread: float = FULL_REREAD,
        push: bool = True,
    ) -> None:
        if not tick > 0:
            raise ValueError(f"tick must be a positive number of seconds, not {tick!r}")
        self.tick = tick
        self.max_backoff = max(tick, max_backoff)
        self.follow_changes = follow_changes
        self.full_reread = full_reread
        self.push = push
        self._settle = settle
        #: Polls (ticks) made since the feed was created, at most one ``settle`` call each.
        self.polls = 0
        self._start_afresh()
        _state.every.add(self)

    def _start_afresh(self) -> None:
        """No subscriber, no thread: a new feed, or one inherited by a forked child."""
        self._lock = threading.Lock()
        self._jobs: dict[JobRef, _Job] = {}
        self._thread: threading.Thread | None = None
        self._backing_off = False
        self._joined = 0  # subscriptions made so far: the thread sees who came during a poll
        self._nudge = threading.Event()  # cuts a back-off short, or lets an idle thread end
        self._following: dict[int, _Following] = {}  # by id(source); the thread's own
        self._notified = False  # whether a push's notice came since the last poll began

    def __repr__(self) -> str:
        return f"<ChangeFeed tick={self.tick:g}s jobs={len(self._jobs)}>"

    @property
    def jobs(self) -> list[JobRef]:
        """The jobs followed now, each once however many subscribers it has."""
        with self._lock:
            return list(self._jobs)

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        with self._lock:
            return sum(len(job.subscribers) for job in self._jobs.values())

    @property
    def running(self) -> bool:
        """Whether the feed's thread is alive (it is while anyone subscribes)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def subscribe(
        self,
        job_id: str,
        job_class: str | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        event: threading.Event | None = None,
    ) -> Subscription:
        """Follow ``job_id`` (asked with ``job_class``'s strategy); start the thread if need be.

        Pass the running ``loop`` to wait with :meth:`Subscription.anext_change`. ``event``
        (for :class:`SubscriptionGroup`) is set at each change instead of one of its own.
        """
        key: JobRef = (job_id, job_class)
        with self._lock:
            state = self._jobs.get(key)
            if state is None:
                state = self._jobs[key] = _Job()
            subscription = Subscription(self, key, state, loop, event)
            state.subscribers.add(subscription)
            self._joined += 1
            if self._thread is None:
                self._nudge.clear()  # set by the last leave of a previous round, if any
                self._thread = threading.Thread(
                    target=self._run, name=f"immortus-feed-{self.tick:g}s", daemon=True
                )
                self._thread.start()
            self._nudge.set()  # a newcomer is read at the next tick, not after a quiet wait
        return subscription

    def _leave(self, subscription: Subscription) -> None:
        with self._lock:
            state = self._jobs.get(subscription.job)
            if state is None:
                return
            state.subscribers.discard(subscription)
            if not state.subscribers:
                del self._jobs[subscription.job]
            idle = not self._jobs
        if idle:
            self._nudge.set()  # the thread sees nobody is left, and ends

    def _run(self) -> None:
        """The feed's thread: poll, publish, wait; end once nobody subscribes."""
        failures = 0
        while True:
            with self._lock:
                if not self._jobs:
                    self._thread = None
                    following, self._following = self._following, {}
                    break
                jobs = list(self._jobs.items())
                joined = self._joined
            started = time.monotonic()
            self._notified = False  # a notice from now on is news for the next poll
            asked, quiet_until = (
                self._wanted(jobs, started) if self.follow_changes else (jobs, None)
            )
            outcomes = self._poll([key for key, _ in asked])
            try:
                self._publish(asked, outcomes)
            except Exception:  # a bug here must not leave every stream waiting forever
                logger.exception("immortus: the change feed could not wake its streams")
            down = bool(outcomes) and all(isinstance(item, StoreUnavailable) for item in outcomes)
            failures = failures + 1 if down else 0
            with self._lock:  # a subscriber either sees the back-off, or is seen here
                self._backing_off = failures > 0
                newcomers = self._joined != joined
            if failures and newcomers:
                failures = 0  # someone came during the poll: no back-off for them
                continue
            pause = backoff(self.tick, failures, self.max_backoff)
            if (
                not failures
                and quiet_until is not None
                and all(isinstance(state.latest[1], JobStatus) for _, state in jobs)
            ):
                pause = max(pause, quiet_until - time.monotonic())  # pushed: no need to tick
            if self._nudge.wait(pause):
                self._nudge.clear()
                failures = 0
                self._rest_after_push(started, joined)
        for follow in following.values():
            follow.release()

    def _on_notice(self) -> None:
        """A source's push (any thread): wake the feed once per poll, however many notices."""
        if not self._notified:
            self._notified = True
            self._nudge.set()

    def _rest_after_push(self, started: float, joined: int) -> None:
        """After a push's notice, wait out the tick begun at ``started``: one poll per tick.

        A newcomer (one more subscription than ``joined``), or the last subscriber leaving,
        cuts the wait short; more notices do not.
        """
        while True:
            with self._lock:
                if self._joined != joined or not self._jobs:
                    return
            rest = started + self.tick - time.monotonic()
            if rest <= 0:
                return
            if self._nudge.wait(rest):
                self._nudge.clear()

    def _wanted(self, jobs: list[_Item], now: float) -> tuple[list[_Item], float | None]:
        """The jobs to read at this tick (see the module docstring: it re-reads what changed).

        Also returns until when the feed may wait for a push instead of ticking: the next full
        re-read, when every job is a pushing source's; ``None`` when it must tick.
        """
        wanted: list[_Item] = []
        sources: dict[str | None, ChangeSource | None] = {}
        groups: dict[int, tuple[ChangeSource, list[_Item]]] = {}
        for item in jobs:
            job_class = item[0][1]
            if job_class not in sources:
                sources[job_class] = change_source(job_class)
            source = sources[job_class]
            if source is None:
                wanted.append(item)
            else:
                groups.setdefault(id(source), (source, []))[1].append(item)
        quiet_until: float | None = math.inf if groups and not wanted else None
        following: dict[int, _Following] = {}
        for key, (source, items) in groups.items():
            follow = self._following.pop(key, None)
            if follow is None or follow.source is not source:
                if follow is not None:
                    follow.release()
                follow = _Following(source)
            following[key] = follow
            if self.push:
                follow.pace(self._on_notice)
            wanted.extend(follow.pick(items, now, self.full_reread))
            if quiet_until is not None:
                quiet_until = min(quiet_until, follow.due) if follow.pushing else None
        for follow in self._following.values():  # sources nobody follows any more are let go
            follow.release()
        self._following = following
        return wanted, quiet_until

    def _poll(self, keys: list[JobRef]) -> Sequence[Outcome]:
        """One ``settle`` call for ``keys`` (none if empty); a failure is every job's outcome."""
        self.polls += 1
        if not keys:
            return []
        try:
            outcomes = self._settle(keys)
            if len(outcomes) == len(keys):
                return outcomes
            failure: Exception = RuntimeError(
                f"the feed's settle() answered {len(outcomes)} outcomes for {len(keys)} jobs"
            )
        except Exception as exc:  # noqa: BLE001  # every stream gets it, as its own poll would
            failure = exc
        return [failure] * len(keys)

    @staticmethod
    def _publish(jobs: list[_Item], outcomes: Sequence[Outcome]) -> None:
        """Store each changed outcome, then wake its subscribers (each loop once)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Subscription]] = {}
        for (_, state), outcome in zip(jobs, outcomes, strict=True):
            version, before = state.latest
            if _same(before, outcome):
                continue
            state.latest = (version + 1, outcome)
            for subscription in list(state.subscribers):
                if subscription.loop is None:
                    subscription._wake()
                else:
                    by_loop.setdefault(subscription.loop, []).append(subscription)
        for loop, subscriptions in by_loop.items():
            try:
                loop.call_soon_threadsafe(_awake_all, subscriptions)
            except RuntimeError:  # the loop is closed: its streams are gone
                for subscription in subscriptions:
                    subscription.close()


class Feeds:
    """This process's shared feeds: a :mod:`runtime <immortus.runtime>` part.

    A reset forgets the shared feeds (their subscribers keep theirs, which end with them); in a
    forked child every feed starts afresh, since the parent's threads are not there.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_tick: dict[float, ChangeFeed] = {}
        self.every: weakref.WeakSet[ChangeFeed] = weakref.WeakSet()

    def reset(self) -> None:
        with self.lock:
            self.by_tick.clear()

    def after_fork(self) -> None:
        self.lock = threading.Lock()  # the parent's may have been held at the fork
        for feed in list(self.every):
            feed._start_afresh()


_state: Final = runtime.part(Feeds)


def feed_for(tick: float = DEFAULT_TICK) -> ChangeFeed:
    """Return this process's shared feed polling every ``tick`` seconds (made on first use).

    Raises:
        ValueError: ``tick`` is not a positive number of seconds.
    """
    with _state.lock:
        feed = _state.by_tick.get(tick)
        if feed is None:
            push = os.environ.get(PUSH_ENV, "").strip().lower() not in ("off", "0", "false", "no")
            feed = _state.by_tick[tick] = ChangeFeed(tick, push=push)
        return feed
