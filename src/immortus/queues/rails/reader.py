"""The one answering path of the Rails readers: memory, journal, the queue, then a conclusion.

A reader (:class:`RailsReader`) answers a batch of ids in this order:

1. an id it found ended before: the answer it kept, without any I/O (bounded memory);
2. the journal (one round trip for the batch): the job's own events when they say it ended
   (exact), or another process's verdict;
3. the queue (one walk or query for the batch): where each job is, completed by its events;
4. a job the queue no longer holds: :func:`~immortus.queues.rails.answers.conclude` from the
   newest note (this process's or the journal's) and the job's events.

What a reader sees is noted in the process and, with a journal, shared with every process.
"""

from __future__ import annotations

import threading
import time
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import ClassVar, Final

from immortus.queues.rails.answers import combine, conclude
from immortus.queues.rails.journal import Entry, Journal
from immortus.queues.rails.notes import Note, Notebook, Seen
from immortus.status import JobStatus, State
from immortus.strategy import TrackingStrategy
from immortus.validation import check_job_id

__all__ = ["Found", "RailsReader"]

#: How many ended answers a reader keeps in its process.
REMEMBERED: Final = 10_000


@dataclass(frozen=True, slots=True)
class Found:
    """A job the queue holds: its status there, and what a note about it says."""

    status: JobStatus
    seen: Seen
    process: str | None = None  # the worker process running it, when the queue names it
    aliases: frozenset[str] = frozenset()  # the other ids the same job is found by


class RailsReader(TrackingStrategy):
    """Base of the strategies that read a Rails queue; subclasses say how to read the queue."""

    certain: ClassVar[bool] = False
    #: Rails jobs stop only from Ruby: :func:`immortus.cancel` refuses them before any I/O.
    cancel_unsupported: ClassVar[str | None] = (
        "Rails jobs are read from the Rails database or Sidekiq's Redis and cannot be "
        "cancelled from Python"
    )

    def __init__(self) -> None:
        self._notes = Notebook()
        self._ended: OrderedDict[str, JobStatus] = OrderedDict()
        self._ended_lock = threading.Lock()

    # -- what a subclass provides ----------------------------------------------------------

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Journal | None]:
        """Return a context for one batch that yields the journal (``None`` without one).

        It translates the backends' errors into :class:`~immortus.exceptions.StoreUnavailable`.
        """

    @abstractmethod
    def _find_in_queue(self, job_ids: list[str]) -> dict[str, Found]:
        """Return the jobs the queue holds among ``job_ids`` (called inside :meth:`_reading`)."""

    def _accepts(self, job_id: str) -> bool:
        """Whether ``job_id`` can be one of the queue's ids (others are ``unknown``, no I/O)."""
        return True

    def _in_grace(self, job_id: str, note: Note) -> bool:
        """Whether a job just missed, last seen ``note``, may still be on its way (not ended)."""
        return False

    def _dead_processes(self, notes: Sequence[Note]) -> dict[str, str]:
        """Of the worker processes these notes name, the dead ones: why, by process."""
        return {}

    def _forget_places(self, job_id: str) -> None:
        """Drop what the subclass keeps about where an ended job was."""

    # -- answering -------------------------------------------------------------------------

    def status(self, job_id: str) -> JobStatus:
        """Return the job's status (the module's order).

        Raises:
            InvalidJobId: ``job_id`` is not a usable job id.
            StoreUnavailable: the queue's backend or the journal cannot be reached.
        """
        return self.status_many([job_id])[job_id]

    def status_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Return the status of every id: one journal read and one queue look-up for them all.

        A job found ended once is answered from memory after that, without any I/O.

        Raises:
            InvalidJobId: an id is not a usable job id (checked before any I/O).
            StoreUnavailable: the queue's backend or the journal cannot be reached.
        """
        unique = list(dict.fromkeys(check_job_id(job_id) for job_id in job_ids))
        answers: dict[str, JobStatus] = {}
        asked: list[str] = []
        with self._ended_lock:
            for job_id in unique:
                if not self._accepts(job_id):
                    answers[job_id] = JobStatus.unknown(job_id)
                elif job_id in self._ended:
                    answers[job_id] = self._ended[job_id]
                else:
                    asked.append(job_id)
        if asked:
            answers.update(self._look_up(asked))
        return {job_id: answers[job_id] for job_id in unique}

    def _look_up(self, job_ids: list[str]) -> dict[str, JobStatus]:
        answers: dict[str, JobStatus] = {}
        with self._reading() as journal:
            entries = journal.read(job_ids) if journal is not None else {}
            pending = []
            for job_id in job_ids:
                entry = entries.get(job_id, Entry())
                if entry.recorded is not None and entry.recorded.completed:
                    answers[job_id] = self._settle(job_id, entry.recorded)  # it said so: exact
                elif entry.note is not None and entry.note.seen.final:
                    answers[job_id] = self._settle(job_id, _verdict(job_id, entry))
                else:
                    pending.append(job_id)
            found = self._find_in_queue(pending) if pending else {}
            missing = [job_id for job_id in pending if job_id not in found]
            notes = {job_id: self._newest_note(job_id, entries) for job_id in missing}
            dead = self._dead_processes([note for note in notes.values() if note is not None])
        shared: dict[str, Note] = {}
        for job_id, where in found.items():
            answer = combine(job_id, entries.get(job_id, Entry()).recorded, where.status)
            answers[job_id] = answer
            note = Note(where.seen, time.time(), where.process, answer.job_class)
            for known in {job_id, *where.aliases}:
                if self._notes.put(known, note):
                    shared[known] = note
        for job_id in missing:
            last, recorded = notes[job_id], entries.get(job_id, Entry()).recorded
            if last is not None and self._in_grace(job_id, last):
                # Taken from its queue a moment ago: running, not yet where the queue shows it.
                answers[job_id] = JobStatus(job_id=job_id, state=State.STARTED, certain=False)
                continue
            process = None if last is None else last.process
            why = dead.get(process or "")
            answer, verdict = conclude(job_id, last, recorded, lost_because=why)
            answers[job_id] = answer
            if verdict is not None:
                self._settle(job_id, answer)
                why = why if verdict is Seen.LOST else None
                shared[job_id] = Note(verdict, time.time(), process, answer.job_class, why)
                self._notes.put(job_id, shared[job_id])
        if journal is not None:
            journal.write(shared)
        return answers

    def _newest_note(self, job_id: str, entries: Mapping[str, Entry]) -> Note | None:
        """The newest note about the job: this process's, or another's from the journal."""
        mine = self._notes.get(job_id)
        theirs = entries.get(job_id, Entry()).note
        if mine is None or (theirs is not None and theirs.at > mine.at):
            return theirs
        return mine

    def _settle(self, job_id: str, answer: JobStatus) -> JobStatus:
        """Remember an ended job's answer: it is never looked up again (bounded)."""
        with self._ended_lock:
            self._ended[job_id] = answer
            while len(self._ended) > REMEMBERED:
                self._ended.popitem(last=False)
        self._forget_places(job_id)
        return answer


def _verdict(job_id: str, entry: Entry) -> JobStatus:
    """Rebuild the answer another process concluded (its note is a verdict)."""
    note = entry.note
    assert note is not None  # noqa: S101 - the caller checked it
    why = (
        f"its worker {note.process or ''} died while running it" if note.seen is Seen.LOST else None
    )
    return conclude(job_id, note, entry.recorded, lost_because=why)[0]
