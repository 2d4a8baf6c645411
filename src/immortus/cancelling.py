"""Cancel a job from Python, the same way for every queue: :func:`cancel` and :func:`acancel`.

:func:`cancel` resolves the job's strategy by the one rule of :func:`immortus.find_strategy`,
decides before any I/O who can cancel the job, reads the job, asks for it to be stopped, and
reads it again. The :class:`Cancellation` it returns says what happened in one word
(:class:`CancelOutcome`) with the job's status, so a web route answers it without reading again.

Who cancels, in this order (every one that applies is asked):

1. the job's strategy, when it :attr:`~immortus.TrackingStrategy.supports_cancel` (the store
   strategy records a cancel request that the running job sees: see
   :mod:`immortus.cancel_requests`);
2. the canceller its queue registered with :func:`register_canceller`, looked up through the
   queue its job class declares (``@immortus.track(queue="huey")``).

When neither applies, :class:`~immortus.exceptions.NotCancellable` says so before anything is
read or changed. The app's own code may cancel any job: the per-class opt-in
(``cancellable=True``) only gates the web route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from immortus import query, registry, runtime
from immortus.exceptions import ConfigurationError, NotCancellable
from immortus.status import JobStatus, State
from immortus.strategy import TrackingStrategy

__all__ = [
    "CancelOutcome",
    "Cancellation",
    "Canceller",
    "acancel",
    "cancel",
    "register_canceller",
    "unregister_canceller",
]

#: A queue's canceller: ``canceller(job_id, job_class)``, its return value ignored. See
#: :func:`register_canceller`.
Canceller = Callable[[str, str], object]


class CancelOutcome(StrEnum):
    """What :func:`cancel` did, in one word."""

    #: Nobody has a record of the job; nothing was done.
    UNKNOWN = "unknown"
    #: The job had already ended otherwise (finished, failed, lost), or ended so while being
    #: cancelled; it keeps that ending.
    ALREADY_COMPLETED = "already_completed"
    #: The job was asked to stop and has not stopped yet.
    CANCELLING = "cancelling"
    #: The job is ``cancelled`` (now, or already before).
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancellation:
    """The answer of :func:`cancel`: its :class:`CancelOutcome` and the job's latest status."""

    outcome: CancelOutcome
    status: JobStatus


class Cancellers(runtime.LockedPart):
    """The canceller of each queue: a :mod:`runtime <immortus.runtime>` part.

    Queue modules register theirs at import time, so a reset keeps them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.by_queue: dict[str, Canceller] = {}

    def reset(self) -> None:
        """Keep the cancellers: a fresh process that imported the same modules has them."""


_cancellers: Final = runtime.part(Cancellers)


def register_canceller(queue: str, canceller: Canceller) -> None:
    """Let :func:`immortus.cancel` stop the jobs of ``queue`` with ``canceller(job_id, job_class)``.

    For queue integrations, whose jobs declare the queue (``@immortus.track(queue="huey")``).
    Registering a queue again replaces its canceller. The contract of ``canceller``:

    - It is called by :func:`immortus.cancel` in the process that asks (a web request's thread,
      a worker thread of :func:`acancel`, a script), never in the worker running the job, and
      only once the job was read to exist and not to have ended. ``job_class`` is the class the
      caller gave (always one whose declared queue is ``queue``).
    - It asks the queue to stop the job (revoke it, drop it from the queue, signal its worker)
      and returns without waiting for the job to stop; :func:`immortus.cancel` reads the job
      again afterwards. It must not block long: a web request waits for it.
    - It must be idempotent: a job may be cancelled twice, or after it has ended.
    - The ``cancelled`` state is reported by the queue integration's hooks when the job stops
      (``immortus.lifecycle.job_cancelled``); the canceller may report it itself for a job the
      queue drops before it ever starts.
    - It may raise :class:`~immortus.exceptions.NotCancellable` to refuse (the queue cannot stop
      this job in its present state) and :class:`~immortus.exceptions.StoreUnavailable` when
      the queue's backend cannot be reached; both reach the caller as they are. Anything else
      reaches the caller as :class:`~immortus.exceptions.StrategyError`.

    Raises:
        ConfigurationError: ``queue`` is not a name, or ``canceller`` is not callable.
    """
    name: object = queue
    if not (isinstance(name, str) and name):
        raise ConfigurationError(f"a canceller is registered for a queue name, not {queue!r}")
    if not callable(canceller):
        raise ConfigurationError(f"the canceller of queue {queue!r} is not callable")
    with _cancellers.lock:
        _cancellers.by_queue[queue] = canceller


def unregister_canceller(queue: str) -> None:
    """Forget the canceller of ``queue`` (for tests and reloaders)."""
    with _cancellers.lock:
        _cancellers.by_queue.pop(queue, None)


def cancel(job_id: str, job_class: str | None = None) -> Cancellation:
    """Stop ``job_id``, whatever its queue, and say what happened.

    ``job_class`` selects the job's strategy exactly as for :func:`immortus.status`, and its
    declared queue selects the queue's canceller. Without it the job is cancelled as a job of no
    class: by its strategy alone (the store strategy's request, seen by the running job).

    - a job nobody has a record of: :attr:`CancelOutcome.UNKNOWN`, nothing done;
    - a job already ``cancelled``: :attr:`CancelOutcome.CANCELLED`, nothing done;
    - a job that has ended otherwise: :attr:`CancelOutcome.ALREADY_COMPLETED`, nothing done;
    - otherwise every canceller is asked, the job is read again, and the outcome is
      ``CANCELLED`` if it now reads ``cancelled``, ``ALREADY_COMPLETED`` if it ended otherwise
      meanwhile (the first ending stays: a job never has two), ``CANCELLING`` if it runs on.
      A job that reads ``unknown`` after its canceller ran (a queue that deletes what it
      cancels) is ``CANCELLING`` with the status read before.

    Raises:
        InvalidJobId, InvalidJobClass: a name is malformed (nothing was read).
        UntrackedJobClass, StrategyNotFound: as :func:`immortus.status` (nothing was read).
        NotCancellable: nothing can cancel jobs of this class (nothing was read), or a canceller
            refused this job.
        StoreUnavailable: the store or the queue's backend cannot be reached.
        StrategyError: the strategy or a canceller raised something else.
    """
    strategy = query.strategy_for(job_id, job_class)
    cancellers = _cancellers_of(job_id, job_class, strategy)
    before = query.status(job_id, job_class)
    if before.state is State.UNKNOWN:
        return Cancellation(outcome=CancelOutcome.UNKNOWN, status=before)
    if before.completed:
        return _ended(before)
    for who, stop in cancellers:
        with query.translated_errors(f"{who} failed to cancel job {job_id!r}"):
            stop(job_id)
    after = query.status(job_id, job_class)
    if after.state is State.UNKNOWN:
        return Cancellation(outcome=CancelOutcome.CANCELLING, status=before)
    if after.completed:
        return _ended(after)
    return Cancellation(outcome=CancelOutcome.CANCELLING, status=after)


async def acancel(job_id: str, job_class: str | None = None) -> Cancellation:
    """Async twin of :func:`cancel`, run in a worker thread: strategies and cancellers may wait."""
    return await asyncio.to_thread(cancel, job_id, job_class)


def _ended(status: JobStatus) -> Cancellation:
    outcome = (
        CancelOutcome.CANCELLED
        if status.state is State.CANCELLED
        else CancelOutcome.ALREADY_COMPLETED
    )
    return Cancellation(outcome=outcome, status=status)


def _cancellers_of(
    job_id: str, job_class: str | None, strategy: TrackingStrategy
) -> list[tuple[str, Callable[[str], None]]]:
    """Return who can cancel the job, each with its name for error messages.

    Raises:
        NotCancellable: nobody can; the message names the job class and why.
    """
    found: list[tuple[str, Callable[[str], None]]] = []
    name = type(strategy.hook_target).__qualname__
    if strategy.supports_cancel:
        found.append((f"tracking strategy {name}", strategy.cancel))
    job = None if job_class is None else registry.lookup(job_class)
    queue = None if job is None else job.queue
    canceller = None if queue is None else _cancellers.by_queue.get(queue)
    if job_class is not None and queue is not None and canceller is not None:
        found.append((f"the canceller of queue {queue!r}", _bound(canceller, job_class)))
    if found:
        return found
    reason = strategy.cancel_unsupported or f"tracking strategy {name} cannot cancel jobs"
    if job_class is None:
        raise NotCancellable(
            f"job {job_id!r} cannot be cancelled without its job class: {reason}; give its "
            "job class, so that the canceller of its queue can stop it"
        )
    where = (
        f"no canceller is registered for their queue {queue!r}"
        if queue is not None
        else "they declare no queue whose canceller could stop them"
    )
    raise NotCancellable(f"jobs of class {job_class!r} cannot be cancelled: {reason} ({where})")


def _bound(canceller: Canceller, job_class: str) -> Callable[[str], None]:
    def stop(job_id: str) -> None:
        canceller(job_id, job_class)

    return stop
