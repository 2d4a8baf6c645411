"""Tracking strategies: objects that answer "what is the state of job X".

A strategy answers with :meth:`TrackingStrategy.status` or :meth:`TrackingStrategy.completed`
(each derives from the other, so a subclass overrides at least one), may add top-level keys to the
verify body with :meth:`TrackingStrategy.meta`, and may receive lifecycle callbacks.

Callbacks are called by :func:`immortus.lifecycle.notify`, which logs and swallows anything they
raise: a strategy can never break a job. There is one per :class:`~immortus.transitions.EventKind`
(``job_<kind>``, listed in :data:`CALLBACKS`). Every callback receives the job id first;
``job_progress``, ``job_retrying``, ``job_failed``, ``job_lost`` and ``job_meta`` also receive
the progress, error or meta. Each may also declare any of these keyword parameters, and is passed
only those it declares:

- ``job_class`` (``str | None``): the job's stable name;
- ``attempt`` (``int | None``): the queue's attempt number, 1 for the first run;
- ``at`` (``datetime``): when the event happened, in UTC;
- ``alive_until`` (``job_started``) and ``retry_at`` (``job_retrying``): see
  :class:`~immortus.transitions.Event`.

The default callbacks hand every event, as an :class:`~immortus.transitions.Event`, to
:meth:`TrackingStrategy.on_event`, a no-op: a strategy that wants every event overrides that one
method (the store strategy does), one that wants a few overrides their callbacks.

So a strategy written as for the Ruby gem immortus, a plain class whose methods take only
``job_id``, works unchanged::

    class MyCustomTrackingStrategy:
        def job_enqueued(self, job_id):
            ...  # persist job data

        def job_finished(self, job_id):
            ...  # mark job as finished

        def completed(self, job_id):
            return ...  # True if the job is finished

        def meta(self, job_id):
            return {"extra": "sent to JS"}

Plain objects like this are wrapped by :func:`as_strategy`; subclassing
:class:`TrackingStrategy` gives the same behaviour plus the capability flags and the optional
:meth:`TrackingStrategy.cancel`.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Final, Protocol

from immortus.exceptions import InvalidStrategy, NotCancellable
from immortus.grouping import current_group
from immortus.status import JobError, JobStatus, Progress, State
from immortus.transitions import Event, EventKind

__all__ = [
    "CALLBACKS",
    "MAX_CHANGES",
    "ChangeSource",
    "Changes",
    "TrackingStrategy",
    "Watch",
    "as_strategy",
]

#: What :meth:`ChangeSource.changes_since` answers: the new cursor, and the ids of the records
#: written since the old one (``None``: the source cannot tell, assume every job changed).
Changes = tuple[int, frozenset[str] | None]
#: Most changed ids a ``changes_since`` names; past it, it answers "assume all changed".
MAX_CHANGES: Final = 10_000

#: The lifecycle callbacks a strategy may define, in the order a job meets them.
CALLBACKS: Final = tuple(kind.callback for kind in EventKind)


class Watch(Protocol):
    """A hold on a :class:`ChangeSource`'s push, made by :meth:`ChangeSource.watch`."""

    @property
    def live(self) -> bool:
        """Whether every write wakes the watcher now (False: the push is down; poll meanwhile)."""
        ...

    def close(self) -> None:
        """Stop being woken (idempotent); the last watch closed lets the push connection go."""
        ...


class ChangeSource(ABC):
    """Where the records behind a strategy's answers announce their writes.

    The web's change feed (:mod:`immortus.web.feed`) and verify's answer cache follow a source
    instead of re-reading every job: they keep a cursor, ask :meth:`changes_since` which jobs
    were written after it, and re-read only those. A source that can push (:meth:`watch`) also
    wakes them at each write, so a quiet source costs nothing between two full re-reads; a
    wake is only a hint, the cursor still decides what is read, so nothing is missed while a
    push connection is down. Followers share one source per object: a strategy returns the
    same source at every call (:meth:`TrackingStrategy.changes`).
    """

    #: Whether :meth:`changes_since` names the changed jobs by itself (False: it may answer
    #: ``None``, "assume every job changed", whenever it is not watched).
    names_changes: bool = False
    #: Whether :meth:`changes_since` names the changed jobs even while nobody watches it (so a
    #: follower that reads at every tick anyway may let its watch go while the source is busy).
    names_changes_unwatched: bool = False

    @abstractmethod
    def changes_since(self, cursor: int | None) -> Changes:
        """Return a new cursor and the ids of the jobs written after ``cursor``.

        ``cursor=None`` starts following: the current cursor and no ids. The ids are ``None``
        when the source cannot tell (assume every job changed).

        Raises:
            StoreUnavailable: the backing store cannot be reached.
        """

    def watch(self, wake: Callable[[], None]) -> Watch | None:
        """Call ``wake()`` (from another thread, quickly) after writes, until the watch closes.

        Also called when the push comes back after a break, so the watcher asks
        :meth:`changes_since` again. ``None`` (the default): the source cannot push; poll it.
        """
        return None

    def wait(self, cursor: int, timeout: float, *, poll: float = 0.05) -> Changes:
        """Return :meth:`changes_since` once it names a change, or after ``timeout`` seconds.

        Blocks on the push while it is live, and asks every ``poll`` seconds otherwise.

        Raises:
            StoreUnavailable: the backing store cannot be reached.
        """
        woken = threading.Event()
        watch = self.watch(woken.set)
        deadline = time.monotonic() + timeout
        try:
            while True:
                answer = self.changes_since(cursor)
                left = deadline - time.monotonic()
                if answer[1] is None or answer[1] or left <= 0:
                    return answer
                woken.wait(left if watch is not None and watch.live else min(left, poll))
                woken.clear()
        finally:
            if watch is not None:
                watch.close()


def _delivered(specimen: Callable[..., None]) -> Callable[..., None]:
    """Make the declared callback ``job_<kind>`` hand its event to ``on_event``.

    The declaration gives the name, the documentation and the minimal signature subclasses
    override. The callback made takes the job id, the kind's payload (:attr:`EventKind.payload`)
    and any :class:`~immortus.transitions.Event` field by keyword; it builds no event while
    :meth:`TrackingStrategy.on_event` is the default no-op.
    """
    kind = EventKind(specimen.__name__.removeprefix("job_"))
    payload = () if kind.payload is None else (kind.payload,)

    def callback(self: TrackingStrategy, job_id: str, *args: Any, **fields: Any) -> None:
        if type(self).on_event is TrackingStrategy.on_event:
            return
        if len(args) > len(payload):
            raise TypeError(f"{kind.callback}() takes {len(payload) + 1} positional arguments")
        fields.update(zip(payload, args, strict=False))
        if kind is EventKind.ENQUEUED:
            fields.setdefault("group_id", current_group())
        given = {name: value for name, value in fields.items() if value is not None}
        self.on_event(Event(kind=kind, job_id=job_id, **given))

    callback.__name__ = specimen.__name__
    callback.__qualname__ = specimen.__qualname__
    callback.__doc__ = specimen.__doc__
    return callback


class TrackingStrategy:
    """Base class for tracking strategies. Override :meth:`status` or :meth:`completed`."""

    #: Whether the strategy can tell a finished job from one that never existed. A strategy
    #: that infers "finished" from a record's absence sets this to False; its statuses then
    #: carry ``certain=False``.
    certain: ClassVar[bool] = True
    #: Whether progress reported with :func:`immortus.progress` shows in :meth:`status`.
    supports_progress: ClassVar[bool] = False
    #: Whether :meth:`cancel` is implemented. :func:`immortus.cancel` checks it before any I/O.
    supports_cancel: ClassVar[bool] = False
    #: Why this strategy's jobs cannot be cancelled, for the message of
    #: :class:`~immortus.exceptions.NotCancellable` (``None``: a generic sentence).
    cancel_unsupported: ClassVar[str | None] = None

    @property
    def hook_target(self) -> object:
        """The object whose methods receive lifecycle callbacks (itself, unless wrapping)."""
        return self

    def status(self, job_id: str) -> JobStatus:
        """Return the job's status.

        The default asks :meth:`completed`: ``finished`` when it says so, ``started`` otherwise,
        since a strategy that only knows "done or not" cannot tell waiting from running.

        Raises:
            InvalidStrategy: the class overrides neither ``status`` nor ``completed``.
        """
        if not self._answers_with("completed"):
            raise InvalidStrategy(self._neither_message())
        state = State.FINISHED if self.completed(job_id) else State.STARTED
        return JobStatus(job_id=job_id, state=state, certain=self.certain)

    def completed(self, job_id: str) -> bool:
        """Return whether the job has ended. The default asks :meth:`status`.

        Raises:
            InvalidStrategy: the class overrides neither ``status`` nor ``completed``.
        """
        if not self._answers_with("status"):
            raise InvalidStrategy(self._neither_message())
        return self.status(job_id).completed

    def status_nowait(self, job_id: str) -> JobStatus:
        """Return :meth:`status` and :meth:`meta` merged, if they can be had without waiting.

        Called on an event loop's own thread by the async web routes before they fall back to
        asking :meth:`status` and :meth:`meta` in a worker thread. Override it only when the
        answer can never wait on a network, a server or a lock (the store strategy over a memory
        or SQLite store). The default raises :class:`BlockingIOError`.

        Raises:
            BlockingIOError: the answer might wait; nothing was asked.
            StoreUnavailable: the backend cannot be read.
        """
        raise BlockingIOError(f"{type(self).__qualname__} answers in a worker thread")

    def status_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Return the status of every job in ``job_ids``, keyed by job id.

        Every id given has an entry (``unknown`` for a job nobody has a record of); an id
        given twice is answered once. The default asks :meth:`status` once per id; a strategy
        whose backend can answer many jobs in one round trip overrides this (the store
        strategy does), and the web layer's batch verify then costs one round trip, not N.

        Raises:
            StoreUnavailable: the backend cannot be reached.
        """
        return {job_id: self.status(job_id) for job_id in dict.fromkeys(job_ids)}

    def meta(self, job_id: str) -> Mapping[str, Any]:
        """Return extra keys for the verify body of ``job_id``. The default adds none."""
        return {}

    def changes(self) -> ChangeSource | None:
        """Return where this strategy's answers announce their changes, or ``None``.

        Asked by the web's change feed and verify's answer cache for each job they follow.
        ``None`` (the default): the answers may change without notice, so followers ask
        :meth:`status_many` about every job at every tick. Return a source only when every
        change of an answer is a write the source names (the same object at every call).
        """
        return None

    def cancel(self, job_id: str) -> None:
        """Ask for the job to be stopped. Optional: only strategies with :attr:`supports_cancel`.

        Called by :func:`immortus.cancel` in the caller's process (a web request, a script)
        once it has read that the job exists and has not ended. It may return before the job
        has stopped: :func:`immortus.cancel` reads the job again to tell ``cancelled`` from
        ``cancelling``. It must be idempotent (a job may be cancelled twice) and must not wait
        for the job to stop.

        Raises:
            NotCancellable: the strategy cannot cancel (the default), or not this job now.
            StoreUnavailable: the store or the queue's backend cannot be reached.
        """
        raise NotCancellable(
            self.cancel_unsupported
            or f"tracking strategy {type(self.hook_target).__qualname__} cannot cancel jobs"
        )

    def check(self) -> None:
        """Refuse, before first use, a strategy that cannot answer.

        Raises:
            InvalidStrategy: it overrides neither ``status`` nor ``completed``.
        """
        if not (self._answers_with("status") or self._answers_with("completed")):
            raise InvalidStrategy(self._neither_message())

    def _answers_with(self, method: str) -> bool:
        return getattr(type(self), method) is not getattr(TrackingStrategy, method)

    def _neither_message(self) -> str:
        name = type(self).__qualname__
        return (
            f"tracking strategy {name} defines neither status(job_id) nor completed(job_id); "
            "define at least one of them"
        )

    # -- lifecycle callbacks ------------------------------------------------------------------
    # Each is declared with its minimal signature: a subclass may add any of the keywords of the
    # module docstring and stays type-compatible. The body is :func:`_delivered`'s.

    def on_event(self, event: Event) -> None:
        """Receive every lifecycle event of this strategy's jobs. The default does nothing.

        Called by the default callbacks (see the module docstring), so not for an event whose
        callback a subclass overrides without calling ``super()``. Whatever it raises is logged
        by :func:`immortus.lifecycle.notify` and never reaches the job.
        """

    @_delivered
    def job_enqueued(self, job_id: str) -> None:
        """Called in the enqueuing process once the queue has accepted the job.

        Its event carries the group of the enqueuing block (:func:`immortus.group`), if any.
        """

    @_delivered
    def job_started(self, job_id: str) -> None:
        """Called in the worker when an attempt of the job begins."""

    @_delivered
    def job_progress(self, job_id: str, progress: Progress) -> None:
        """Called in the worker when the job reports progress with :func:`immortus.progress`.

        A value held back by ``progress_interval`` arrives from the process's flusher thread.
        """

    @_delivered
    def job_retrying(self, job_id: str, error: JobError | None = None) -> None:
        """Called in the worker when an attempt failed and the queue will try again."""

    @_delivered
    def job_finished(self, job_id: str) -> None:
        """Called in the worker when the job has ended successfully."""

    @_delivered
    def job_failed(self, job_id: str, error: JobError | None = None) -> None:
        """Called in the worker when the job has failed and no retry is left."""

    @_delivered
    def job_cancelled(self, job_id: str) -> None:
        """Called where the cancellation happened (web process or worker) when it is cancelled."""

    @_delivered
    def job_lost(self, job_id: str, error: JobError | None = None) -> None:
        """Called when the job's worker died mid-attempt and no retry is coming.

        Called by a queue's own "worker lost" signal (Celery's ``WorkerLostError``, RQ's killed
        work horse), in whichever process noticed; the store strategy's heartbeat reaches the
        same conclusion without one. A later event from a worker (a redelivery) overrides it.
        """

    @_delivered
    def job_meta(self, job_id: str, meta: Mapping[str, Any]) -> None:
        """Called in the worker when the job adds meta with :func:`immortus.update_meta`."""


class DuckTypedStrategy(TrackingStrategy):
    """Wraps a plain object (``completed``/``status``, ``meta``, callbacks), as the Ruby gem took.

    Its callbacks are called on the wrapped object (:attr:`hook_target`), so a callback taking
    only ``job_id`` receives only ``job_id``.
    """

    def __init__(self, target: object) -> None:
        self.target = target
        self._certain = bool(getattr(target, "certain", True))

    @property
    def hook_target(self) -> object:
        """The wrapped object."""
        return self.target

    def status(self, job_id: str) -> JobStatus:
        """Ask the wrapped object's ``status``, or derive it from its ``completed``."""
        answer = getattr(self.target, "status", None)
        if callable(answer):
            result = answer(job_id)
            if not isinstance(result, JobStatus):
                raise InvalidStrategy(
                    f"{type(self.target).__qualname__}.status() returned "
                    f"{type(result).__name__}, not a JobStatus"
                )
            return result
        state = State.FINISHED if self.completed(job_id) else State.STARTED
        return JobStatus(job_id=job_id, state=state, certain=self._certain)

    def completed(self, job_id: str) -> bool:
        """Ask the wrapped object's ``completed``, or derive it from its ``status``."""
        answer = getattr(self.target, "completed", None)
        if callable(answer):
            return bool(answer(job_id))
        return self.status(job_id).completed

    def meta(self, job_id: str) -> Mapping[str, Any]:
        """Ask the wrapped object's ``meta``, if it has one."""
        answer = getattr(self.target, "meta", None)
        if not callable(answer):
            return {}
        result = answer(job_id)
        if result is None:
            return {}
        if not isinstance(result, Mapping):
            raise InvalidStrategy(
                f"{type(self.target).__qualname__}.meta() returned "
                f"{type(result).__name__}, not a mapping"
            )
        return result

    def check(self) -> None:
        """Refuse an object with neither ``status`` nor ``completed``."""
        if not any(callable(getattr(self.target, name, None)) for name in ("status", "completed")):
            raise InvalidStrategy(
                f"{type(self.target).__qualname__} cannot be a tracking strategy: it defines "
                "neither status(job_id) nor completed(job_id)"
            )


def as_strategy(candidate: object) -> TrackingStrategy:
    """Return ``candidate`` as a checked :class:`TrackingStrategy` instance.

    A class is instantiated with no arguments; a plain object is wrapped.

    Raises:
        InvalidStrategy: it cannot answer status questions, or its class cannot be created
            without arguments.
    """
    if isinstance(candidate, type):
        strategy_class = candidate
        try:
            candidate = strategy_class()
        except TypeError as exc:
            raise InvalidStrategy(
                f"cannot create tracking strategy {strategy_class.__qualname__}() without "
                "arguments; register an instance instead"
            ) from exc
    strategy = (
        candidate if isinstance(candidate, TrackingStrategy) else DuckTypedStrategy(candidate)
    )
    strategy.check()
    return strategy
