"""Ask what state a job is in: the question the web layer and the CLI put to strategies.

:func:`status` resolves the job's strategy, asks it, merges its ``meta`` and translates what a
strategy raises: immortus's own errors pass through (a store that is down stays
:class:`~immortus.exceptions.StoreUnavailable`, so the web answers 503); anything else becomes
:class:`~immortus.exceptions.StrategyError` (500), with the original as ``__cause__``.
"""

from __future__ import annotations

import asyncio
import dataclasses

from immortus.exceptions import ImmortusError, InvalidStrategy, StrategyError
from immortus.finder import find_strategy
from immortus.status import JobStatus
from immortus.validation import check_job_class, check_job_id

__all__ = ["astatus", "status"]


def status(job_id: str, job_class: str | None = None) -> JobStatus:
    """Return what is known about ``job_id`` (``unknown`` when nobody has a record of it).

    ``job_class`` selects the job's inline strategy, as in the seed's verify route.

    Raises:
        InvalidJobId, InvalidJobClass: a name is malformed (checked before any I/O).
        StrategyNotFound: no strategy applies to the job.
        StoreUnavailable: the store behind the strategy cannot be reached.
        StrategyError: the strategy raised something else.
    """
    check_job_id(job_id)
    if job_class is not None:
        check_job_class(job_class)
    strategy = find_strategy(job_class)
    try:
        answer = strategy.status(job_id)
        extra = strategy.meta(job_id)
    except ImmortusError:
        raise
    except Exception as exc:
        raise StrategyError(
            f"tracking strategy {type(strategy.hook_target).__qualname__} failed on job "
            f"{job_id!r}: {type(exc).__name__}"
        ) from exc
    if not isinstance(answer, JobStatus):
        raise InvalidStrategy(
            f"{type(strategy.hook_target).__qualname__}.status() returned "
            f"{type(answer).__name__}, not a JobStatus"
        )
    if extra:
        answer = dataclasses.replace(answer, meta={**answer.meta, **extra})
    if answer.job_class is None and job_class is not None:
        answer = dataclasses.replace(answer, job_class=job_class)
    return answer


async def astatus(job_id: str, job_class: str | None = None) -> JobStatus:
    """Async twin of :func:`status`; runs it in a worker thread."""
    return await asyncio.to_thread(status, job_id, job_class)
