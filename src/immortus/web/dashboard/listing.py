"""The list page's jobs: keyset pages of the store's listing, filtered.

The store filters by state; queue, class and time are applied here to whole store pages. While
nothing matches, each store page asked is twice the last (up to the store's largest), so a
sparse filter costs a few round trips, and a page may then hold more rows than the page size. A
page reads at most :data:`MAX_SCANNED` records (it then says the search stopped early, and its
next page goes on); the time filter stops at the first page older than its cutoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from immortus.status import JobStatus
from immortus.stores.base import MAX_PAGE_SIZE, Store
from immortus.web.dashboard.counts import queue_of
from immortus.web.dashboard.filters import JobFilter

__all__ = ["MAX_SCANNED", "PAGE_SIZE", "ListPage", "list_jobs"]

#: Jobs a list page asks the store for at a time.
PAGE_SIZE: Final = 50
#: Most records one list page reads while looking for jobs that match the filter.
MAX_SCANNED: Final = 2000


@dataclass(frozen=True, slots=True)
class ListPage:
    """Jobs that match, newest first; ``next_cursor`` continues; ``stopped_early``: see above."""

    jobs: tuple[JobStatus, ...]
    next_cursor: str | None
    stopped_early: bool = False


def matches(job: JobStatus, flt: JobFilter, cutoff: datetime | None) -> bool:
    """Whether ``job`` passes the filter's class, queue and time."""
    if flt.state is not None and job.state is not flt.state:
        return False
    if flt.job_class is not None and job.job_class != flt.job_class:
        return False
    if flt.queue is not None and queue_of(job.job_class) != flt.queue:
        return False
    return cutoff is None or (job.enqueued_at is not None and job.enqueued_at >= cutoff)


def list_jobs(store: Store, flt: JobFilter, *, now: datetime, size: int = PAGE_SIZE) -> ListPage:
    """One page of the jobs ``flt`` keeps.

    Raises:
        InvalidInput: the cursor is malformed.
        StoreUnavailable: the store cannot be reached.
    """
    cutoff = flt.cutoff(now)
    if flt.job_id is not None:
        job = store.get(flt.job_id)
        found = () if job is None or not matches(job, flt, cutoff) else (job,)
        return ListPage(found, None)
    found_jobs: list[JobStatus] = []
    cursor = flt.cursor
    scanned = 0
    ask = size
    while True:
        page = store.list_jobs(state=flt.state, limit=ask, cursor=cursor)
        scanned += len(page.jobs)
        found_jobs.extend(job for job in page.jobs if matches(job, flt, cutoff))
        cursor = page.next_cursor
        if cursor is None or len(found_jobs) >= size:
            return ListPage(tuple(found_jobs), cursor)
        if cutoff is not None and _older(page.jobs[-1], cutoff):
            return ListPage(tuple(found_jobs), None)  # newest first: the rest is older still
        if scanned >= MAX_SCANNED:
            return ListPage(tuple(found_jobs), cursor, stopped_early=True)
        if not found_jobs:  # a sparse filter: read further at each step
            ask = min(ask * 2, MAX_PAGE_SIZE)


def _older(job: JobStatus, cutoff: datetime) -> bool:
    """Whether ``job`` was first recorded before ``cutoff`` (as far as its record tells)."""
    first = job.enqueued_at or job.started_at or job.updated_at
    return first is not None and first < cutoff
