"""Where a Rails reader last saw a job, or what it concluded once the job was gone.

A reader answers ``unknown`` for an id it has no evidence of, and reads a job that left the
queue as ended only when a note says it was there. A note is kept in the process
(:class:`Notebook`, bounded) and, when the reader has a journal, in Redis for every process.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Final

__all__ = ["Note", "Notebook", "Seen"]

#: How many notes a reader keeps in its process; the oldest are forgotten first.
DEFAULT_CAPACITY: Final = 10_000


class Seen(StrEnum):
    """Where a job was, or the verdict a reader reached when it found the job gone."""

    WAITING = "waiting"  # queued, scheduled, retrying: a worker has yet to take it
    RUNNING = "running"  # taken by a worker (``process`` names it when the queue says)
    FAILED = "failed"  # kept by the queue as failed for good
    GONE = "gone"  # verdict: left the queue after it was seen; ended, outcome unknown
    LOST = "lost"  # verdict: its worker died while running it

    @property
    def final(self) -> bool:
        """Whether the note is a verdict that never changes."""
        return self in (Seen.GONE, Seen.LOST)


@dataclass(frozen=True, slots=True)
class Note:
    """What a reader knows of a job it saw: where, by which process, and when (epoch seconds)."""

    seen: Seen
    at: float
    process: str | None = None
    job_class: str | None = None
    why: str | None = None  # a ``lost`` verdict's reason

    def dumps(self) -> str:
        """Return the JSON text a journal keeps."""
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def loads(cls, text: str | None) -> Note | None:
        """Read a journal's text; ``None`` for nothing or anything malformed. Never raises."""
        try:
            raw = json.loads(text) if text else None
            if not isinstance(raw, dict):
                return None
            text_of = {k: v for k, v in raw.items() if isinstance(v, str)}
            return cls(
                seen=Seen(raw["seen"]),
                at=float(raw["at"]),
                process=text_of.get("process"),
                job_class=text_of.get("job_class"),
                why=text_of.get("why"),
            )
        except (ValueError, KeyError, TypeError):
            return None


class Notebook:
    """The notes of one reader in one process: a thread-safe LRU of ``capacity`` job ids."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._notes: OrderedDict[str, Note] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job_id: str) -> Note | None:
        """Return the job's note, if this process has one."""
        with self._lock:
            note = self._notes.get(job_id)
            if note is not None:
                self._notes.move_to_end(job_id)
            return note

    def put(self, job_id: str, note: Note) -> bool:
        """Keep ``note``; return whether it says something new (a journal should hear it).

        A verdict is never replaced, and a note that repeats the last one (same place, same
        process) is not new.
        """
        with self._lock:
            old = self._notes.get(job_id)
            if old is not None and (old.seen.final or _same(old, note)):
                self._notes.move_to_end(job_id)
                return False
            self._notes[job_id] = note
            self._notes.move_to_end(job_id)
            while len(self._notes) > self.capacity:
                self._notes.popitem(last=False)
            return True


def _same(old: Note, new: Note) -> bool:
    return (old.seen, old.process) == (new.seen, new.process)
