"""The Redis keys the Rails readers share between processes, and that Rails jobs may write.

=================================  ===============================================================
``{prefix}note:{job_id}``          string: a reader's :class:`~immortus.queues.rails.notes.Note`
                                   as JSON (where it last saw the job, or its verdict), ``EX`` =
                                   the journal's TTL. Written by the Python readers.
``{prefix}events:{job_id}``        list: the job's events as JSON, oldest first, ``EXPIRE`` = the
                                   TTL. Written by the Ruby module of the docs (the exact mode);
                                   a ``progress`` event replaces a ``progress`` event just before
                                   it, so the list holds a few entries per attempt.
=================================  ===============================================================

An event is ``{"kind", "at", "job_class"?, "progress"?, "error"?, "meta"?}``: ``kind`` one of
``enqueued``, ``started``, ``progress``, ``retrying``, ``finished``, ``failed``, ``cancelled``,
``meta``; ``at`` UTC epoch seconds; ``progress`` ``{"current", "total"?, "message"?}``;
``error`` ``{"type", "message"}``. A reader folds them with :func:`immortus.transitions.apply`,
the rules every store applies, so the order they were pushed in does not matter more than it
does for a store. An entry that is not such an event is skipped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from immortus.exceptions import InvalidInput, InvalidStoreURL, MissingDependency, StoreUnavailable
from immortus.queues.rails.notes import Note
from immortus.status import JobError, JobStatus, Progress
from immortus.transitions import Event, EventKind, apply

if TYPE_CHECKING:
    import redis

__all__ = ["DEFAULT_PREFIX", "DEFAULT_TTL", "Entry", "Journal", "connect", "fold"]

#: Where the keys start, unless the reader is told otherwise.
DEFAULT_PREFIX: Final = "immortus:rails:"
#: How long notes and events are kept after their last write: a week, as the stores.
DEFAULT_TTL: Final = 7 * 24 * 3600
#: Most events read per job (a job retried this many times shows its first attempts only).
MAX_EVENTS: Final = 1000

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    """What the journal holds about one job: a reader's note, and the job's own events folded."""

    note: Note | None = None
    recorded: JobStatus | None = None


class Journal:
    """Reads and writes the keys of the module table on ``client`` (``decode_responses=True``).

    Reads raise :class:`StoreUnavailable` when Redis cannot be reached; writing notes never
    raises (a reader that cannot share what it saw still answers, from its own process).
    """

    def __init__(
        self, client: redis.Redis, *, prefix: str = DEFAULT_PREFIX, ttl: int = DEFAULT_TTL
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = ttl

    def note_key(self, job_id: str) -> str:
        """The key of the job's note."""
        return f"{self.prefix}note:{job_id}"

    def events_key(self, job_id: str) -> str:
        """The key of the job's event list (what the Ruby module writes)."""
        return f"{self.prefix}events:{job_id}"

    def read(self, job_ids: Sequence[str]) -> dict[str, Entry]:
        """Return the entry of every id that has a note or events, in one round trip.

        Raises:
            StoreUnavailable: Redis cannot be reached.
        """
        if not job_ids:
            return {}
        with self._guard(), self.client.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.get(self.note_key(job_id))
                pipe.lrange(self.events_key(job_id), 0, MAX_EVENTS - 1)
            replies: list[Any] = pipe.execute()
        found: dict[str, Entry] = {}
        for number, job_id in enumerate(job_ids):
            note = Note.loads(replies[2 * number])
            recorded = fold(job_id, replies[2 * number + 1])
            if note is not None or recorded is not None:
                found[job_id] = Entry(note, recorded)
        return found

    def write(self, notes: Mapping[str, Note]) -> None:
        """Keep the notes for the journal's TTL, in one round trip; log a failure, never raise."""
        if not notes:
            return
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for job_id, note in notes.items():
                    pipe.set(self.note_key(job_id), note.dumps(), ex=self.ttl)
                pipe.execute()
        except _redis_error() as exc:
            logger.warning("could not share what a Rails reader saw (%s): %s", _where(self), exc)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except _redis_error() as exc:
            raise StoreUnavailable(
                f"the Rails journal's redis at {_where(self)} is unavailable: "
                f"{type(exc).__name__}: {exc}"
            ) from exc


def connect(url: str, what: str) -> redis.Redis:
    """Return a client for ``url`` that fails within seconds when Redis is away (no I/O yet).

    Raises:
        MissingDependency: redis-py is not installed.
        InvalidStoreURL: ``url`` is malformed (``what`` names it in the message).
    """
    try:
        import redis  # noqa: PLC0415 - only readers that have a journal need redis-py
    except ImportError as exc:
        raise MissingDependency("redis", "redis") from exc
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=2, decode_responses=True
        )
        pool = client.connection_pool
        pool.connection_class(**pool.connection_kwargs)  # refuses unknown options; no I/O
    except (ValueError, TypeError) as exc:
        raise InvalidStoreURL(f"malformed {what} URL: {exc}") from exc
    return client


def _redis_error() -> type[Exception]:
    from redis.exceptions import RedisError  # noqa: PLC0415 - a journal implies redis-py

    return RedisError


def _where(journal: Journal) -> str:
    settings = journal.client.connection_pool.connection_kwargs
    return str(settings.get("path") or f"{settings.get('host')}:{settings.get('port')}")


def fold(job_id: str, entries: Sequence[str]) -> JobStatus | None:
    """Return the status the job's events add up to (``None`` without a usable event)."""
    status: JobStatus | None = None
    for text in entries:
        event = _event(job_id, text)
        if event is not None:
            status = apply(status, event) or status
    return status


def _event(job_id: str, text: str) -> Event | None:
    """Decode one entry of an event list; ``None`` (logged) for anything malformed."""
    try:
        raw = json.loads(text)
        progress = raw.get("progress")
        error = raw.get("error")
        return Event(
            kind=EventKind(raw["kind"]),
            job_id=job_id,
            at=datetime.fromtimestamp(float(raw["at"]), UTC),
            job_class=raw.get("job_class"),
            progress=None if progress is None else Progress(**progress, allow_overshoot=True),
            error=None if error is None else _error(error),
            meta=raw.get("meta"),
        )
    except (ValueError, KeyError, TypeError, AttributeError, InvalidInput) as exc:
        logger.debug("skipped an event of job %r that is malformed (%s): %r", job_id, exc, text)
        return None


def _error(raw: Mapping[str, Any]) -> JobError:
    return JobError(type=str(raw["type"]), message=str(raw["message"]))  # JobError bounds them
