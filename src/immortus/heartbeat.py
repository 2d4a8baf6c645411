"""The worker side of lost-worker detection: one heartbeat per process keeps its jobs alive.

A job that starts in a process (:func:`immortus.jobs.start_attempt`, which every queue
integration goes through) is registered here with :func:`watch`, and its ``started`` event
carries a lease: ``now + heartbeat_timeout``. Until the lease runs out the job reads
``started``; after it, ``lost`` (see :mod:`immortus.stores.records`). While the process lives, a
daemon thread extends the leases of all its running jobs every ``heartbeat_interval`` seconds:
it groups them by the store their strategy writes to and makes **one** :meth:`Store.beat` call
per store, whatever the number of jobs. When the job ends, :func:`unwatch` forgets it.

A worker killed by SIGKILL, the OOM killer or a lost machine stops beating, so its jobs read
``lost`` at most ``heartbeat_timeout`` after its last beat. A worker that merely hangs inside a
job keeps beating: use the queue's own time limits for that.

- The thread starts with the first job a process runs, and is a daemon: it never keeps a
  process alive. Settings are read at every tick, so :func:`immortus.configure` takes effect at
  once; ``heartbeat_interval=None`` stops the beats and the leases of jobs started afterwards.
- A forked child (RQ's work horse, a Celery prefork child) forgets its parent's jobs and
  thread, and starts its own thread with its first job.
- A strategy takes part when its ``hook_target`` has a ``beat(job_ids, alive_until)`` method
  (:class:`~immortus.store_strategy.StoreStrategy` and the queues' strategies do). A store
  without :attr:`~immortus.stores.base.Store.supports_heartbeat` is left alone (logged once).
- Beating never breaks a job: a failing store is logged once per outage (WARNING) and the next
  tick tries again; recovery is logged at INFO.
- A store that is away (:class:`~immortus.exceptions.StoreUnavailable`) gets its beat held by
  its outbox (:func:`immortus.outbox.hold_beat`): the outbox's replay thread retries within
  seconds and, as soon as the store answers, beats first (:meth:`Heartbeat.beat_store`), before
  it writes the events it held. A lease that ran out during the outage is renewed then, and a
  job the store reads (or a reaper wrote) ``lost`` meanwhile comes back to ``started``.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from immortus import config, outbox, runtime
from immortus.exceptions import ConfigurationError, StoreError, StoreUnavailable
from immortus.finder import find_recording_strategy
from immortus.stores.base import Store
from immortus.transitions import utcnow

__all__ = ["Heartbeat", "Registration", "process_heartbeat", "unwatch", "watch"]

logger = logging.getLogger("immortus")

#: How long the thread sleeps between looks at the settings while heartbeats are off.
_IDLE: Final = 60.0

_Beat = Callable[[Sequence[str], datetime], object]


@dataclass(frozen=True, slots=True)
class Registration:
    """A running job registered with a heartbeat; hand it back to end the registration."""

    token: int
    #: The job's first lease, which its ``started`` event carries.
    alive_until: datetime


class _Group:
    """The running jobs whose leases one ``beat`` call extends."""

    __slots__ = ("beat", "job_ids", "target")

    def __init__(self, target: object, beat: _Beat) -> None:
        self.target = target  # the store (or the strategy object) the call goes to
        self.beat = beat
        self.job_ids: list[str] = []


class Heartbeat:
    """Extends the leases of the jobs a process runs, from one daemon thread.

    :func:`watch` and :func:`unwatch` use the process's own instance; tests may make more and
    call :meth:`tick` themselves.
    """

    def __init__(self) -> None:
        self._forget_everything()

    def reset(self) -> None:
        """Stop the thread (waiting up to 5 s for it) and forget every job."""
        self.stop(timeout=5.0)
        self._forget_everything()

    def after_fork(self) -> None:
        """In a forked child: forget the parent's jobs and thread."""
        self._forget_everything()

    def _forget_everything(self) -> None:
        """Start from nothing: no job, no thread (also a forked child's first step)."""
        self._lock = threading.Lock()
        self._jobs: dict[int, tuple[str, str | None]] = {}
        self._tokens = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = False
        self._failing: dict[int, object] = {}  # id -> target whose last beat failed
        self._unsupported: set[type[Store]] = set()  # store classes already logged
        self._pid = os.getpid()

    # -- registrations --------------------------------------------------------------------

    def add(self, job_id: str, job_class: str | None) -> int:
        """Register a running job; return the token :meth:`remove` takes."""
        with self._lock:
            token = next(self._tokens)
            self._jobs[token] = (job_id, job_class)
        return token

    def remove(self, token: int) -> None:
        """Forget a job registered with :meth:`add` (nothing happens if it is not known)."""
        with self._lock:
            self._jobs.pop(token, None)

    def running(self) -> list[tuple[str, str | None]]:
        """Return the ``(job_id, job_class)`` of every registered job."""
        self._check_process()
        with self._lock:
            return list(self._jobs.values())

    def _check_process(self) -> None:
        """In a forked child, forget the parent's jobs and thread before anything else.

        The runtime does it at the fork; this covers a fork that skipped Python's hooks,
        wherever a process id costs nothing next to the work (not on a job's start).
        """
        if self._pid != os.getpid():
            self._forget_everything()

    # -- beating --------------------------------------------------------------------------

    def tick(self) -> int:
        """Extend the lease of every registered job now: one ``beat`` call per store.

        Returns how many calls were made (whether they succeeded or not). Never raises: a
        failing call is logged (see the module docstring).
        """
        settings = config.get_config()
        jobs = self.running()
        if settings.heartbeat_interval is None or not jobs:
            return 0
        alive_until = utcnow() + timedelta(seconds=settings.heartbeat_timeout)
        groups = self._groups(jobs)
        for group in groups.values():
            self._beat(group, alive_until)
        return len(groups)

    def beat_store(self, store: Store) -> bool:
        """Extend now the leases of the registered jobs that run in ``store``: one call.

        Called by the outbox when ``store`` answers again after an outage, before it writes
        the events it held. Returns False when the store is still away (nothing extended),
        True when the jobs were beaten or there is nothing to beat. Never raises: any other
        failure is logged.
        """
        settings = config.get_config()
        jobs = self.running()
        if settings.heartbeat_interval is None or not jobs:
            return True
        group = self._groups(jobs).get(id(store))
        if group is None:
            return True
        alive_until = utcnow() + timedelta(seconds=settings.heartbeat_timeout)
        try:
            group.beat(group.job_ids, alive_until)
        except StoreUnavailable:
            return False
        except Exception:
            logger.exception("immortus: the heartbeat to %r failed", store)
            return True
        if self._failing.pop(id(store), None) is not None:
            logger.info("immortus: the heartbeat to %r works again", store)
        return True

    def _groups(self, jobs: list[tuple[str, str | None]]) -> dict[int, _Group]:
        """The ``beat`` calls ``jobs`` need, keyed by the id of their store (or strategy)."""
        groups: dict[int, _Group] = {}
        by_class: dict[str | None, _Group | None] = {}
        for job_id, job_class in jobs:
            if job_class not in by_class:
                by_class[job_class] = self._group_of(job_class, groups)
            group = by_class[job_class]
            if group is not None:
                group.job_ids.append(job_id)
        return groups

    def _group_of(self, job_class: str | None, groups: dict[int, _Group]) -> _Group | None:
        """Return the group the jobs of ``job_class`` beat in, or ``None`` if they cannot."""
        try:
            target = find_recording_strategy(job_class).hook_target
        except Exception:  # noqa: BLE001 - the job's own events already logged why
            return None
        beat = getattr(target, "beat", None)
        if not callable(beat):
            return None  # a custom strategy without heartbeats
        try:
            store = getattr(target, "store", None)
        except ConfigurationError:
            return None  # store tracking is off: there is nothing to keep alive
        if isinstance(store, Store):
            if not store.supports_heartbeat:
                self._log_unsupported(store)
                return None
            key: object = store  # strategies writing to one store share its call
        else:
            key = target
        group = groups.get(id(key))
        if group is None:
            group = groups[id(key)] = _Group(key, beat)
        return group

    def _log_unsupported(self, store: Store) -> None:
        kind = type(store)
        if kind not in self._unsupported:
            self._unsupported.add(kind)
            logger.info(
                "immortus: %s keeps no heartbeat leases (supports_heartbeat is False): jobs "
                "tracked in it are never detected lost",
                kind.__qualname__,
            )

    def _beat(self, group: _Group, alive_until: datetime) -> None:
        key = id(group.target)
        try:
            group.beat(group.job_ids, alive_until)
        except Exception as exc:  # logged once per outage, tried again at the next tick
            if isinstance(exc, StoreUnavailable) and isinstance(group.target, Store):
                outbox.hold_beat(group.target)  # beaten again first thing when it is back
            if key not in self._failing:
                self._failing[key] = group.target
                logger.warning(
                    "immortus: the heartbeat of %d running job(s) to %r failed (%s: %s); "
                    "retrying until it works, and they read lost once their lease runs out "
                    "(until the store takes a beat again)",
                    len(group.job_ids),
                    group.target,
                    type(exc).__name__,
                    exc,
                    exc_info=not isinstance(exc, StoreError),
                )
            return
        if self._failing.pop(key, None) is not None:
            logger.info("immortus: the heartbeat to %r works again", group.target)

    # -- the thread -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the beating thread unless it runs (in this process)."""
        if self.alive and not self._stopping:  # every job start asks: no lock when it runs
            return
        self._check_process()
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="immortus-heartbeat", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the beating thread and wait up to ``timeout`` seconds for it to end."""
        with self._lock:
            thread, self._stopping = self._thread, True
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def alive(self) -> bool:
        """Whether this process's beating thread runs (a forked child's copy never does)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def wake(self) -> None:
        """Make the thread read the settings again now (called when they change)."""
        self._wake.set()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stopping:
            try:
                interval = config.get_config().heartbeat_interval
            except Exception:  # noqa: BLE001 - an unusable setting: logged where it is used
                interval = None
            wait = _IDLE if interval is None else last + interval - time.monotonic()
            if wait > 0:
                self._wake.wait(wait)
                self._wake.clear()
                continue
            last = time.monotonic()
            try:
                self.tick()
            except Exception:  # tick() logs its own failures: this is a bug, logged, survived
                logger.exception("immortus: the heartbeat tick failed; it carries on")


class _ProcessHeartbeat(Heartbeat):
    """The process's heartbeat: a :mod:`runtime <immortus.runtime>` part.

    Made at first use, it wakes when the settings change and beats the stores the outbox sees
    come back.
    """

    def __init__(self) -> None:
        super().__init__()
        config.on_change(self.wake)
        outbox.beat_with(self.beat_store)


_process: Final = runtime.part(_ProcessHeartbeat)


def process_heartbeat() -> Heartbeat:
    """Return this process's heartbeat (the one :func:`watch` registers jobs with)."""
    return _process


def watch(job_id: str, job_class: str | None = None) -> Registration | None:
    """Register a job that starts running in this process; return its registration.

    The registration's ``alive_until`` is the job's first lease, for its ``started`` event.
    Returns ``None`` when heartbeats are off (``heartbeat_interval=None``): the job then gets no
    lease and is never detected lost. Starts the process's beating thread if needed. Never
    raises: a problem is logged and the job runs unwatched.
    """
    try:
        settings = config.get_config()
        if settings.heartbeat_interval is None:
            return None
        _process.start()
        alive_until = utcnow() + timedelta(seconds=settings.heartbeat_timeout)
        token = _process.add(job_id, job_class)
    except Exception:
        logger.exception("immortus: cannot watch job %r with the heartbeat", job_id)
        return None
    return Registration(token, alive_until)


def unwatch(registration: Registration | None) -> None:
    """Forget a job :func:`watch` registered (it ended or was handed on). Never raises."""
    if registration is not None:
        _process.remove(registration.token)
