"""The data set of the store scaling benchmark: ``size`` jobs as production would have them.

:class:`Dataset` draws the ids and states of every job from a seed, regenerates the same
statuses on demand (:meth:`Dataset.jobs`), and encodes them once as store rows
(:meth:`Dataset.rows`). :func:`lifecycle_events` gives the events that lead a new job to one of
those statuses, for the stores that are seeded through ``record()``.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from bench.common import BenchError
from bench.stores.common import go_on, size_label
from immortus.status import JobError, JobStatus, Progress, State
from immortus.stores import records
from immortus.stores.base import DEFAULT_TTL
from immortus.transitions import Event, EventKind

#: Created times are spread over the last six days; records expire a week after their last write.
SPAN_S: Final = 6 * 86_400.0
TTL_S: Final = DEFAULT_TTL.total_seconds()
JOB_CLASSES: Final = (
    "reports.build",
    "mail.send_digest",
    "billing.charge",
    "media.transcode",
    "search.reindex",
)
TRACEBACK: Final = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/billing/tasks.py", line 88, in charge\n'
    "    response = gateway.charge(invoice)\n"
    "TimeoutError: the payment gateway did not answer within 30 s\n"
)


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Dataset:
    """``size`` jobs with uuid4 ids, oldest first, in a realistic mix of states.

    70 % finished (half with final progress, a fifth with meta), 20 % started with progress,
    5 % created, 5 % failed with an error after three attempts. :meth:`jobs` regenerates the
    same statuses on every call; :meth:`rows` encodes them once for all the stores that load
    rows.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.base = time.time() - SPAN_S
        self.step = SPAN_S / size
        rng = random.Random(f"{seed}/plan/{size}")
        self.ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(size)]
        if len(set(self.ids)) != size:
            raise BenchError("the generated job ids are not unique")
        self.states = [_pick_state(rng.random()) for _ in range(size)]
        self.started = [i for i, s in zip(self.ids, self.states, strict=True) if s is State.STARTED]
        self.failed = [i for i, s in zip(self.ids, self.states, strict=True) if s is State.FAILED]
        #: Indexes whose statuses verification compares field by field.
        self.checked = frozenset(rng.sample(range(size), k=min(size, 40)))
        self._rows: tuple[list[tuple[Any, ...]], dict[int, JobStatus]] | None = None

    @property
    def label(self) -> str:
        """The size, short: ``1k``, ``1M``."""
        return size_label(self.size)

    def jobs(self) -> Iterator[tuple[int, JobStatus, float, float]]:
        """Yield ``(index, status, created, expires)`` for every job, oldest first.

        ``created`` grows strictly with the index; ``expires`` is a week after the last write.
        """
        rng = random.Random(f"{self.seed}/jobs/{self.size}")
        for index, (job_id, state) in enumerate(zip(self.ids, self.states, strict=True)):
            created = self.base + index * self.step
            status, last_write = _status(rng, job_id, state, created)
            yield index, status, created, last_write + TTL_S

    def rows(self) -> tuple[list[tuple[Any, ...]], dict[int, JobStatus]]:
        """Every job as a row of :data:`records.COLUMNS`, as the stores write it themselves.

        Also returns what a store must read back for the :attr:`checked` indexes.
        """
        if self._rows is None:
            rows: list[tuple[Any, ...]] = []
            expected: dict[int, JobStatus] = {}
            for index, status, created, expires in self.jobs():
                if index % 10_000 == 0:
                    go_on()
                row = records.encode(status, created=created, expires=expires)
                if index in self.checked:
                    expected[index] = records.decode(row)
                rows.append(tuple(row[column] for column in records.COLUMNS))
            self._rows = rows, expected
        return self._rows

    def newest(self, count: int, ids: Sequence[str] | None = None) -> list[str]:
        """The ``count`` newest ids of ``ids`` (default: all), newest first."""
        pool = self.ids if ids is None else ids
        return list(pool[: -count - 1 : -1])


def _pick_state(draw: float) -> State:
    if draw < 0.70:
        return State.FINISHED
    if draw < 0.90:
        return State.STARTED
    if draw < 0.95:
        return State.CREATED
    return State.FAILED


def _status(
    rng: random.Random, job_id: str, state: State, enqueued: float
) -> tuple[JobStatus, float]:
    """Return a job's status and the time of its last write."""
    job_class = rng.choice(JOB_CLASSES)
    if state is State.CREATED:
        status = JobStatus(
            job_id=job_id,
            job_class=job_class,
            state=state,
            enqueued_at=_at(enqueued),
            updated_at=_at(enqueued),
        )
        return status, enqueued
    started = enqueued + rng.uniform(0.005, 5.0)
    if state is State.STARTED:
        updated = started + rng.uniform(0.0, 300.0)
        current = rng.randrange(100)
        status = JobStatus(
            job_id=job_id,
            job_class=job_class,
            state=state,
            progress=Progress(current=current, total=100, message=f"chunk {current + 1} of 100"),
            attempts=1,
            enqueued_at=_at(enqueued),
            started_at=_at(started),
            updated_at=_at(updated),
        )
        return status, updated
    finished = started + rng.uniform(0.05, 600.0)
    if state is State.FAILED:
        error = JobError(
            type="TimeoutError",
            message="the payment gateway did not answer within 30 s",
            traceback=TRACEBACK,
        )
        status = JobStatus(
            job_id=job_id,
            job_class=job_class,
            state=state,
            error=error,
            attempts=3,
            enqueued_at=_at(enqueued),
            started_at=_at(started),
            finished_at=_at(finished),
            updated_at=_at(finished),
        )
        return status, finished
    progress = Progress(current=100, total=100, message="done") if rng.random() < 0.5 else None
    meta = {"rows": rng.randrange(1, 1_000_000)} if rng.random() < 0.2 else {}
    status = JobStatus(
        job_id=job_id,
        job_class=job_class,
        state=state,
        progress=progress,
        attempts=1,
        enqueued_at=_at(enqueued),
        started_at=_at(started),
        finished_at=_at(finished),
        updated_at=_at(finished),
        meta=meta,
    )
    return status, finished


def lifecycle_events(status: JobStatus) -> list[Event]:
    """The lifecycle events that lead a new job to ``status`` (for the memory store)."""
    job_id, job_class = status.job_id, status.job_class
    assert status.enqueued_at is not None
    events = [
        Event(kind=EventKind.ENQUEUED, job_id=job_id, job_class=job_class, at=status.enqueued_at)
    ]
    if status.state is State.CREATED:
        return events
    assert status.started_at is not None
    assert status.updated_at is not None
    start = status.started_at
    events.append(Event(kind=EventKind.STARTED, job_id=job_id, at=start, attempt=status.attempts))
    end = status.updated_at
    if status.progress is not None:
        progress = status.progress
        events.append(Event(kind=EventKind.PROGRESS, job_id=job_id, at=end, progress=progress))
    if status.meta:
        events.append(Event(kind=EventKind.META, job_id=job_id, at=end, meta=status.meta))
    if status.state is State.FINISHED:
        events.append(Event(kind=EventKind.FINISHED, job_id=job_id, at=end))
    elif status.state is State.FAILED:
        events.append(Event(kind=EventKind.FAILED, job_id=job_id, at=end, error=status.error))
    return events
