"""Dramatiq: track actors with one middleware, installed in one line.

    broker = RedisBroker(url="redis://localhost:6379/0")
    immortus.queues.dramatiq.install(broker)
    dramatiq.set_broker(broker)

    @dramatiq.actor(max_retries=3)
    @immortus.track(queue="dramatiq")
    def build_report(report_id: int) -> None:
        immortus.progress(1, 3, "loading")

Needs the ``immortus[dramatiq]`` extra. Run the same set-up in the web process (which enqueues)
and in the worker (``dramatiq myapp``). The job id is Dramatiq's message id; the job class is
the one ``@immortus.track`` gives the actor's function (``module.qualname``, see
:func:`job_class`). Dramatiq keeps no status of its own, so the strategy inferred for these jobs
is the store strategy: what the middleware below told it.

The enqueuing process marks each message of a tracked actor with its job class (the message
option ``immortus_job_class``, read back by :func:`job_class`). A message enqueued before the
middleware was installed carries no mark and immortus has no record of it (``unknown``, and
:func:`cancel` refuses it) until a worker with the middleware takes it: the worker tracks every
message of a tracked actor, so that ``immortus.progress()`` works in it.

Dramatiq has no revoke. :func:`immortus.cancel` (through :func:`cancel`, registered for the
queue ``"dramatiq"`` when this module is imported) records a waiting message's cancellation in
immortus's store, and the worker skips the message when it takes it; a running actor stops at
its next ``immortus.progress()`` (the store's cancel request), raising
``immortus.JobCancelled``. The middleware ends that attempt ``cancelled`` and makes the
``Retries`` middleware abort the message, as for an exception in the actor's ``throws``: it is
not retried (Dramatiq dead-letters it) and the worker goes on. A retry's ``retry_at`` is the
delay the ``Retries`` middleware enqueued it with (its backoff, or ``Retry(delay=...)``).

A message whose worker died before acknowledging it is delivered again (the Redis broker
requeues it once the dead worker's heartbeat is ``heartbeat_timeout`` old; RabbitMQ when the
connection drops). The worker that takes it finds immortus's record still running (or read
``lost``): it reports the lost attempt, then starts the next one, attempt + 1, as on Celery and
RQ. Its number is carried by the message (the option ``immortus_redeliveries``) into Dramatiq's
retries.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

from immortus import lifecycle, query
from immortus.cancel_requests import JobCancelled
from immortus.cancelling import register_canceller
from immortus.exceptions import MissingDependency
from immortus.jobs import JOB_CLASS_ATTRIBUTE, Attempt, start_attempt
from immortus.queues._kit import AttemptBook, retry_time
from immortus.status import JobError, JobStatus, State

try:
    import dramatiq
    from dramatiq.actor import Actor
    from dramatiq.broker import Broker, MessageProxy
    from dramatiq.errors import ActorNotFound
    from dramatiq.message import Message
    from dramatiq.middleware import Middleware, Retries, SkipMessage
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise MissingDependency("dramatiq", "dramatiq") from exc

__all__ = [
    "JOB_CLASS_OPTION",
    "QUEUE",
    "REDELIVERIES_OPTION",
    "ImmortusMiddleware",
    "cancel",
    "identify",
    "install",
    "installed",
    "job_class",
    "uninstall",
]

logger = logging.getLogger("immortus")

#: The queue name Dramatiq's jobs declare (``@immortus.track(queue="dramatiq")``).
QUEUE: Final = "dramatiq"
#: The message option that marks a message of a tracked actor; its value is the job class.
JOB_CLASS_OPTION: Final = "immortus_job_class"

#: The message option counting the deliveries of the message that its worker lost: attempts
#: Dramatiq's ``retries`` does not count.
REDELIVERIES_OPTION: Final = "immortus_redeliveries"

#: What a job can be cancelled from: it has not started, or it waits for its next attempt.
_CANCELLABLE: Final = frozenset({State.CREATED, State.RETRYING})
#: What a record reads when its message is delivered again: its worker never acknowledged it.
_RUNNING: Final = frozenset({State.STARTED, State.LOST})
#: What ended the delivery before a redelivered message's.
_REDELIVERED: Final = JobError(
    type="dramatiq.Redelivered",
    message="the worker running the message stopped before acknowledging it; it runs again",
)


def job_class(target: Actor[..., Any] | Message[Any]) -> str | None:
    """Return the job class of a tracked actor, or of a message sent to one; ``None`` if untracked.

    Use it where the page needs the class: ``render_job(message, job_class(message))``.
    """
    if isinstance(target, Message):
        found = target.options.get(JOB_CLASS_OPTION)
        return found if isinstance(found, str) else None
    for holder in (target, target.fn):  # @track above @dramatiq.actor (with name=), or below
        declared = getattr(holder, JOB_CLASS_ATTRIBUTE, None)
        if isinstance(declared, str):
            return declared
    return None


def identify(job: object) -> tuple[str | None, str | None] | None:
    """Return the ``(job_id, job_class)`` of a Dramatiq ``Message``; ``None`` for anything else.

    The job class is the message's mark, else its actor's on the global broker (when one is
    set); ``None`` when the actor is not tracked.
    """
    if not isinstance(job, Message | MessageProxy):
        return None
    found = _marked_class(job)
    broker = dramatiq.broker.global_broker
    if found is None and broker is not None:
        found = _tracked_class(broker, job)
    return job.message_id, found


def installed(broker: Broker | None = None) -> bool:
    """Tell whether ``broker`` (default: Dramatiq's global broker, if set) has the middleware."""
    broker = broker if broker is not None else dramatiq.broker.global_broker
    return broker is not None and any(isinstance(m, ImmortusMiddleware) for m in broker.middleware)


def uninstall(broker: Broker | None = None) -> None:
    """Remove :class:`ImmortusMiddleware` from ``broker`` (default: Dramatiq's global broker).

    Its actors' messages are no longer tracked; the workers started before keep it.
    """
    broker = broker if broker is not None else dramatiq.broker.global_broker
    if broker is not None:
        broker.middleware[:] = [
            m for m in broker.middleware if not isinstance(m, ImmortusMiddleware | _StopsRetries)
        ]


def install(broker: Broker | None = None) -> ImmortusMiddleware:
    """Add :class:`ImmortusMiddleware` to ``broker`` (default: Dramatiq's global broker).

    Idempotent: a broker that has one keeps it, and it is returned. It goes just before the
    ``Retries`` middleware, so that it sees Retries' decision (Dramatiq calls the ``after_``
    hooks in reverse order); a small one goes just after it, so that Retries never retries a
    message whose actor raised ``immortus.JobCancelled``.
    """
    broker = broker if broker is not None else dramatiq.get_broker()
    for existing in broker.middleware:
        if isinstance(existing, ImmortusMiddleware):
            return existing
    middleware = ImmortusMiddleware()
    has_retries = any(isinstance(m, Retries) for m in broker.middleware)
    broker.add_middleware(middleware, before=Retries if has_retries else None)
    if has_retries:
        broker.add_middleware(_StopsRetries(), after=Retries)
    return middleware


def cancel(message_id: str, job_class: str | None = None) -> bool:
    """Cancel a tracked message that no worker has started; return whether it was cancelled.

    The job is recorded ``cancelled`` at once, and the worker that takes the message skips it
    (it is acknowledged without running). A message waiting for a retry is cancelled too: its
    next attempt is skipped. Returns ``False``, recording nothing, when the job is running or
    has ended (Dramatiq cannot stop a running actor), or when immortus has no record of it.
    A cancel that lands in the instant a worker takes the message is recorded, but the actor
    runs to its end.

    Raises:
        InvalidJobId, InvalidJobClass: a name is malformed.
        StoreUnavailable: the store cannot be reached to read the job's state.
    """
    current = query.status(message_id, job_class)
    if current.state not in _CANCELLABLE:
        return False
    return lifecycle.job_cancelled(message_id, job_class or current.job_class)


def _marked_class(message: Message[Any] | MessageProxy) -> str | None:
    found = message.options.get(JOB_CLASS_OPTION)
    return found if isinstance(found, str) else None


def _tracked_class(broker: Broker, message: Message[Any] | MessageProxy) -> str | None:
    """Return the job class of a message to a tracked actor: its mark, else its actor's."""
    marked = _marked_class(message)
    if marked is not None:
        return marked
    try:
        return job_class(broker.get_actor(message.actor_name))
    except ActorNotFound:
        return None


def _count(message: Message[Any] | MessageProxy, option: str) -> int:
    value = message.options.get(option, 0)
    return value if isinstance(value, int) and value >= 0 else 0


def _attempt_number(message: Message[Any] | MessageProxy) -> int:
    """Return the attempt's number: Dramatiq's retries, plus the deliveries lost, plus one."""
    return _count(message, "retries") + _count(message, REDELIVERIES_OPTION) + 1


def _redelivered(message: MessageProxy, recorded: JobStatus | None) -> bool:
    """Whether the message comes again after its worker died: its attempt is still running.

    On a redelivery, the message's count of lost deliveries is brought up to date, so that
    this attempt and the retries copied from the message number on from the record's.
    """
    if recorded is None or recorded.state not in _RUNNING:
        return False
    if recorded.attempts < _attempt_number(message):
        return False  # a retry started before the previous attempt's end was recorded
    message.options[REDELIVERIES_OPTION] = recorded.attempts - _count(message, "retries")
    return True


class ImmortusMiddleware(Middleware):
    """Reports the lifecycle of tracked actors' messages to immortus.

    Add it with :func:`install`, in every process that enqueues or runs tracked actors. Its
    hooks never raise into Dramatiq (except ``SkipMessage`` for a cancelled message): tracking
    problems, a store that is down included, are logged on the ``immortus`` logger and the
    message goes on.
    """

    def __init__(self) -> None:
        self._local = threading.local()  # the message id whose first enqueue is under way
        # Messages being processed: the attempt, or None for a message this middleware skipped.
        self._attempts: AttemptBook[str, Attempt | None] = AttemptBook()
        # Messages being processed that Retries enqueued again, with its delay (milliseconds).
        self._retry_delays: AttemptBook[str, int] = AttemptBook()

    # -- enqueuing process ---------------------------------------------------------------

    def before_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        """Called before a message is enqueued: marks a tracked actor's message with its class.

        A message already marked is being enqueued again (a retry, a delay that ran out): it is
        left alone, and a retry's ``delay`` is kept for its ``retry_at``. Raises nothing.
        """
        self._local.first_enqueue = None
        if JOB_CLASS_OPTION in message.options:
            if message.message_id in self._attempts:  # a retry, enqueued by Retries
                self._retry_delays.put(message.message_id, delay or 0)
            return
        found = _tracked_class(broker, message)
        if found is not None:
            message.options[JOB_CLASS_OPTION] = found
            self._local.first_enqueue = message.message_id

    def after_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        """Called after a message is enqueued, before ``send`` returns: reports ``enqueued``.

        Only the first enqueue of a tracked message is reported. Raises nothing.
        """
        if getattr(self._local, "first_enqueue", None) != message.message_id:
            return
        self._local.first_enqueue = None
        lifecycle.job_enqueued(message.message_id, _marked_class(message))

    # -- worker ------------------------------------------------------------------------------

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        """Called in the worker thread before the actor runs: reports ``started``.

        The attempt number is Dramatiq's ``retries`` option plus one, plus the deliveries of
        the message whose worker died: a message delivered again while immortus's record says
        its attempt runs (or was ``lost``) first reports that attempt ``lost``. The job becomes
        current in the thread, so ``immortus.progress()`` works in the actor.

        Raises:
            SkipMessage: the job was cancelled with :func:`cancel` before a worker took it.
        """
        tracked = _tracked_class(broker, message)
        if tracked is None or message.failed:  # untracked, or rejected by earlier middleware
            return
        job_id = message.message_id
        recorded = self._recorded(job_id, tracked)
        if recorded is not None and recorded.state is State.CANCELLED:
            self._attempts.put(job_id, None)
            raise SkipMessage(f"immortus: message {job_id} was cancelled")
        if _redelivered(message, recorded):
            lifecycle.job_lost(job_id, _REDELIVERED, tracked)
        attempt = start_attempt(job_id, tracked, attempt=_attempt_number(message))
        self._attempts.put(job_id, attempt)

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any | None = None,
        exception: BaseException | None = None,
    ) -> None:
        """Called in the worker thread after the actor ran: reports how the attempt ended.

        ``finished`` if it returned; if it raised, ``retrying`` when the Retries middleware
        (which ran just before) enqueued another attempt, ``failed`` otherwise (retries
        exhausted, an exception in the actor's ``throws``, no Retries middleware). A message
        that a middleware rejected before the actor ran is ``cancelled``, and so is one whose
        actor raised ``immortus.JobCancelled`` (never retried: see :class:`_StopsRetries`). A
        retry's ``retry_at`` is the delay Retries enqueued it with. Raises nothing.
        """
        attempt = self._attempts.take(message.message_id)
        delay = self._retry_delays.take(message.message_id)
        if message.options.pop(_STOPS_OPTION, None):
            message.options.pop("throws", None)  # set for Retries alone
        if attempt is None:
            if message.failed:  # tracked but never started: rejected before the actor ran
                self._report_dropped(broker, message)
        elif isinstance(exception, JobCancelled):
            attempt.cancel()
        elif exception is not None:
            retried = not message.failed and _attempt_number(message) > (attempt.job.attempt or 1)
            retry_at = retry_time(delay / 1000) if retried and delay is not None else None
            attempt.fail(exception, final_attempt=not retried, retry_at=retry_at)
        elif message.failed:
            attempt.cancel()
        else:
            attempt.finish()

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        """Called in the worker thread when a middleware skipped the message: ``cancelled``.

        A message is skipped when it was cancelled with :func:`cancel`, or by another
        middleware (``AgeLimit`` drops a message past its ``max_age``). Raises nothing.
        """
        skipped_by_us = message.message_id in self._attempts
        attempt = self._attempts.take(message.message_id)
        if attempt is not None:
            attempt.cancel()
        elif not skipped_by_us:  # already recorded as cancelled by cancel()
            self._report_dropped(broker, message)

    @staticmethod
    def _report_dropped(broker: Broker, message: MessageProxy) -> None:
        """Report a tracked message that will not run (it was never started): ``cancelled``."""
        tracked = _tracked_class(broker, message)
        if tracked is not None:
            lifecycle.job_cancelled(message.message_id, tracked)

    @staticmethod
    def _recorded(message_id: str, tracked: str) -> JobStatus | None:
        """Return what immortus knows of the job; ``None`` when it cannot be read (logged)."""
        try:
            return query.status(message_id, tracked)
        except Exception:
            logger.exception(
                "immortus: cannot tell whether message %s was cancelled; running it", message_id
            )
            return None


#: What :class:`_StopsRetries` sets as the message's ``throws``: Retries then aborts it.
_STOPS: Final = (JobCancelled,)
#: Marks a message whose ``throws`` :class:`_StopsRetries` set (removed again after Retries).
_STOPS_OPTION: Final = "immortus_stops"


class _StopsRetries(Middleware):
    """Placed just after ``Retries``, whose ``after_process_message`` runs just after its own.

    For an actor that raised ``immortus.JobCancelled``, it sets the message's ``throws`` to
    that exception, so that Retries aborts the message instead of retrying it (the message's
    own ``throws`` is restored by :class:`ImmortusMiddleware`, whose hook runs after Retries).
    Raises nothing.
    """

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any | None = None,
        exception: BaseException | None = None,
    ) -> None:
        if isinstance(exception, JobCancelled) and "throws" not in message.options:
            message.options["throws"] = _STOPS
            message.options[_STOPS_OPTION] = True


def _cancel(job_id: str, job_class: str) -> None:
    """The canceller of :func:`immortus.cancel`: :func:`cancel` for a message not yet running.

    A running actor is stopped by the store's cancel request instead (at its next
    ``immortus.progress()``). Raises what :func:`cancel` raises.
    """
    cancel(job_id, job_class)


register_canceller(QUEUE, _cancel)
