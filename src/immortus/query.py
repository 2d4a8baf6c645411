"""Ask what state a job is in: the question the web layer and the CLI put to strategies.

:func:`status` resolves the job's strategy, asks it, merges its ``meta`` and translates what a
strategy raises: immortus's own errors pass through (a store that is down stays
:class:`~immortus.exceptions.StoreUnavailable`, so the web answers 503); anything else becomes
:class:`~immortus.exceptions.StrategyError` (500), with the original as ``__cause__``.

:func:`status_many` asks the same of many jobs at once: the jobs are grouped by their resolved
strategy and each strategy answers its group with one
:meth:`~immortus.TrackingStrategy.status_many` (one store round trip for the store strategy).
:func:`settle_many` is its form for the web's batch verify: a failing strategy fails only its
own group's jobs, whose entries hold the error instead of a status.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial

from immortus import registry
from immortus.exceptions import ImmortusError, InvalidStrategy, StrategyError
from immortus.finder import find_strategy
from immortus.status import JobStatus
from immortus.store_strategy import StoreStrategy
from immortus.strategy import TrackingStrategy
from immortus.validation import check_job_class, check_job_id

__all__ = [
    "astatus",
    "astatus_many",
    "settle_many",
    "status",
    "status_many",
    "strategy_for",
    "translated_errors",
]

#: One job to ask about: ``(job_id, job_class or None)``.
JobRef = tuple[str, str | None]


def status(job_id: str, job_class: str | None = None, *, history: bool = False) -> JobStatus:
    """Return what is known about ``job_id`` (``unknown`` when nobody has a record of it).

    ``job_class`` selects the job's strategy by the one rule of :func:`immortus.find_strategy`.
    With ``history``, the answer's :attr:`~immortus.JobStatus.history` holds the job's past
    events, oldest first, from the store that recorded them (one more read; empty where the
    strategy keeps no store, or its store keeps no history).

    Raises:
        InvalidJobId, InvalidJobClass: a name is malformed (checked before any I/O).
        UntrackedJobClass: ``job_class`` is not tracked and no global strategy is configured.
        StrategyNotFound: no strategy applies to the job.
        StoreUnavailable: the store behind the strategy cannot be reached.
        StrategyError: the strategy raised something else.
    """
    strategy = strategy_for(job_id, job_class)
    answer = _ask(strategy, job_id, job_class, _status_and_meta)
    owner = _owner(job_class, answer, strategy)
    if owner is not None:
        strategy, answer = owner, _ask(owner, job_id, answer.job_class, _status_and_meta)
    return _with_history(strategy, answer) if history else answer


async def astatus(job_id: str, job_class: str | None = None, *, history: bool = False) -> JobStatus:
    """Async twin of :func:`status`.

    A strategy that can answer without waiting (:meth:`TrackingStrategy.status_nowait`: the
    store strategy over a memory or SQLite store) answers on the event loop's thread; any other
    is asked in a worker thread, so the event loop never waits on I/O.
    """
    if history:
        return await asyncio.to_thread(status, job_id, job_class, history=True)
    strategy = strategy_for(job_id, job_class)
    try:
        answer = _ask(strategy, job_id, job_class, _status_nowait)
    except BlockingIOError:
        answer = await asyncio.to_thread(_ask, strategy, job_id, job_class, _status_and_meta)
    owner = _owner(job_class, answer, strategy)
    if owner is None:
        return answer
    return await asyncio.to_thread(_ask, owner, job_id, answer.job_class, _status_and_meta)


def _owner(
    job_class: str | None, answer: JobStatus, asked: TrackingStrategy
) -> TrackingStrategy | None:
    """Return the strategy of the class a class-less answer names, if it is another one.

    Asked without a class, a job is answered by the class-less strategy (the store); when the
    record names a tracked class whose strategy differs (a queue's, which corrects the store
    with the queue's own record), that strategy gives the answer, so a page that lost the class
    learns what a page that kept it learns. ``None``: the first answer stands.
    """
    if job_class is not None or answer.job_class is None:
        return None
    if registry.lookup(answer.job_class) is None:
        return None
    try:
        owner = find_strategy(answer.job_class)
    except ImmortusError:
        return None
    return None if owner is asked else owner


def _with_history(strategy: TrackingStrategy, answer: JobStatus) -> JobStatus:
    """``answer`` with the job's history from ``strategy``'s store (if it is a store strategy).

    Raises:
        StoreUnavailable, CorruptRecord: the store cannot give the history.
    """
    target = strategy.hook_target
    if not isinstance(target, StoreStrategy):
        return answer
    return dataclasses.replace(answer, history=target.history(answer.job_id))


def strategy_for(job_id: str, job_class: str | None) -> TrackingStrategy:
    """Check the names, then return the job's strategy by :func:`immortus.find_strategy`'s rule.

    Raises:
        InvalidJobId, InvalidJobClass: a name is malformed (nothing was resolved).
        UntrackedJobClass, StrategyNotFound, InvalidStrategy: as :func:`find_strategy`.
    """
    check_job_id(job_id)
    if job_class is not None:
        check_job_class(job_class)
    return find_strategy(job_class)


@contextmanager
def translated_errors(failure: str, *, passing: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Turn what user code (a strategy, a canceller) raises into immortus's errors.

    immortus's own errors and those in ``passing`` go through unchanged; anything else becomes
    :class:`~immortus.exceptions.StrategyError` whose message is ``failure`` and the error's
    type (never its text, which may hold secrets), with the original as ``__cause__``.
    """
    kept: tuple[type[Exception], ...] = (ImmortusError, *passing)
    try:
        yield
    except kept:
        raise
    except Exception as exc:
        raise StrategyError(f"{failure}: {type(exc).__name__}") from exc


def _status_and_meta(strategy: TrackingStrategy, job_id: str) -> JobStatus:
    answer = strategy.status(job_id)
    extra = strategy.meta(job_id)
    if extra and isinstance(answer, JobStatus):
        answer = dataclasses.replace(answer, meta={**answer.meta, **extra})
    return answer


def _status_nowait(strategy: TrackingStrategy, job_id: str) -> JobStatus:
    return strategy.status_nowait(job_id)


def _ask(
    strategy: TrackingStrategy,
    job_id: str,
    job_class: str | None,
    ask: Callable[[TrackingStrategy, str], JobStatus],
) -> JobStatus:
    """Return ``ask(strategy, job_id)``, checked, with the job class filled in.

    Raises:
        BlockingIOError: ``ask`` would have waited (passed through untouched).
        InvalidStrategy: the strategy answered something other than a ``JobStatus``.
        StoreUnavailable, ImmortusError: raised by the strategy, passed through.
        StrategyError: the strategy raised anything else.
    """
    with translated_errors(
        f"tracking strategy {type(strategy.hook_target).__qualname__} failed on job {job_id!r}",
        passing=(BlockingIOError,),
    ):
        answer = ask(strategy, job_id)
    if not isinstance(answer, JobStatus):
        raise InvalidStrategy(
            f"{type(strategy.hook_target).__qualname__}.status() returned "
            f"{type(answer).__name__}, not a JobStatus"
        )
    if answer.job_class is None and job_class is not None:
        answer = dataclasses.replace(answer, job_class=job_class)
    return answer


def status_many(items: Sequence[JobRef]) -> list[JobStatus]:
    """Return the status of each ``(job_id, job_class)`` in ``items``, in the same order.

    Jobs are grouped by resolved strategy; each strategy answers its whole group with one
    :meth:`~immortus.TrackingStrategy.status_many`. Each answer is what :func:`status` would
    give for the job.

    Raises:
        InvalidJobId, InvalidJobClass: a name is malformed (every item is checked before any I/O).
        UntrackedJobClass: a job's class is not tracked and no global strategy is configured.
        StrategyNotFound: no strategy applies to one of the jobs.
        StoreUnavailable: a store behind a strategy cannot be reached.
        StrategyError: a strategy raised something else.
    """
    statuses: list[JobStatus] = []
    for answer in _ask_many(items, stop_on_error=True):
        if isinstance(answer, ImmortusError):
            raise answer
        statuses.append(answer)
    return statuses


def settle_many(items: Sequence[JobRef]) -> list[JobStatus | ImmortusError]:
    """Like :func:`status_many`, but a failure fails only the jobs it concerns.

    Every job of a group whose strategy raised (or of a job class with no strategy, such as
    :class:`~immortus.exceptions.UntrackedJobClass`) gets the error that :func:`status` would
    raise for it, in place of its status.

    Raises:
        InvalidJobId, InvalidJobClass: a name is malformed (every item is checked before any I/O).
    """
    return _ask_many(items, stop_on_error=False)


async def astatus_many(items: Sequence[JobRef]) -> list[JobStatus]:
    """Async twin of :func:`status_many`; runs it in a worker thread."""
    return await asyncio.to_thread(status_many, list(items))


def _ask_many(items: Sequence[JobRef], *, stop_on_error: bool) -> list[JobStatus | ImmortusError]:
    for job_id, job_class in items:
        check_job_id(job_id)
        if job_class is not None:
            check_job_class(job_class)
    answers: list[JobStatus | ImmortusError | None] = [None] * len(items)
    groups: dict[int, tuple[TrackingStrategy, list[int]]] = {}
    for index, (_, job_class) in enumerate(items):
        try:
            strategy = find_strategy(job_class)
        except ImmortusError as exc:
            if stop_on_error:
                raise
            answers[index] = exc
            continue
        groups.setdefault(id(strategy), (strategy, []))[1].append(index)

    def asked_class(index: int) -> str | None:
        return items[index][1]

    for strategy, indexes in groups.values():
        _ask_into(
            answers, strategy, items, indexes, class_of=asked_class, stop_on_error=stop_on_error
        )
    _ask_owners(items, answers, groups, stop_on_error=stop_on_error)
    return [answer for answer in answers if answer is not None]


def _ask_owners(
    items: Sequence[JobRef],
    answers: list[JobStatus | ImmortusError | None],
    groups: dict[int, tuple[TrackingStrategy, list[int]]],
    *,
    stop_on_error: bool,
) -> None:
    """Re-ask the class-less jobs whose records name a class of another strategy.

    See :func:`_owner`; one ``status_many`` per such strategy, written in place in ``answers``.

    Raises:
        ImmortusError: with ``stop_on_error``, what a strategy raised.
    """
    owners: dict[int, tuple[TrackingStrategy, list[int]]] = {}
    for asked, indexes in groups.values():
        for index in indexes:
            answer = answers[index]
            if not isinstance(answer, JobStatus):
                continue
            owner = _owner(items[index][1], answer, asked)
            if owner is not None:
                owners.setdefault(id(owner), (owner, []))[1].append(index)
    for owner, indexes in owners.values():
        first_class = partial(_first_class, answers)
        _ask_into(answers, owner, items, indexes, class_of=first_class, stop_on_error=stop_on_error)


def _first_class(answers: Sequence[JobStatus | ImmortusError | None], index: int) -> str | None:
    """The job class of an item's first answer (before its owner is asked)."""
    first = answers[index]
    return first.job_class if isinstance(first, JobStatus) else None


def _ask_into(
    answers: list[JobStatus | ImmortusError | None],
    strategy: TrackingStrategy,
    items: Sequence[JobRef],
    indexes: Sequence[int],
    *,
    class_of: Callable[[int], str | None],
    stop_on_error: bool,
) -> None:
    """Ask ``strategy`` about the items at ``indexes`` (one ``status_many``), in place.

    Each answer (or the strategy's error, for all of them) is written in ``answers``; a status
    without a job class takes ``class_of(index)``.

    Raises:
        ImmortusError: with ``stop_on_error``, what the strategy raised.
    """
    job_ids = list(dict.fromkeys(items[index][0] for index in indexes))
    try:
        found = _ask_strategy(strategy, job_ids)
    except ImmortusError as exc:
        if stop_on_error:
            raise
        for index in indexes:
            answers[index] = exc
        return
    for index in indexes:
        answer = found[items[index][0]]
        job_class = class_of(index)
        if answer.job_class is None and job_class is not None:
            answer = dataclasses.replace(answer, job_class=job_class)
        answers[index] = answer


def _ask_strategy(strategy: TrackingStrategy, job_ids: list[str]) -> dict[str, JobStatus]:
    """Ask ``strategy`` about ``job_ids`` at once, merge each job's meta, translate errors."""
    with translated_errors(
        f"tracking strategy {type(strategy.hook_target).__qualname__} failed on "
        f"{len(job_ids)} job(s)"
    ):
        answers = _checked(strategy, strategy.status_many(job_ids), job_ids)
        extras = {job_id: strategy.meta(job_id) for job_id in answers}
    for job_id, extra in extras.items():
        if extra:
            answer = answers[job_id]
            answers[job_id] = dataclasses.replace(answer, meta={**answer.meta, **extra})
    return answers


def _checked(
    strategy: TrackingStrategy, answers: object, job_ids: list[str]
) -> dict[str, JobStatus]:
    """Return the answer of each of ``job_ids`` from what ``status_many`` returned.

    Raises:
        InvalidStrategy: it did not return a mapping with a JobStatus for every id.
    """
    found: dict[str, JobStatus] = {}
    for job_id in job_ids:
        answer = answers.get(job_id) if isinstance(answers, Mapping) else None
        if not isinstance(answer, JobStatus):
            break
        found[job_id] = answer
    else:
        return found
    raise InvalidStrategy(
        f"{type(strategy.hook_target).__qualname__}.status_many() must return a mapping with "
        "a JobStatus for every job id it is given"
    )
