"""Held events on disk: what an outbox holds survives the death of its process.

While a store is away, its outbox (:mod:`immortus.outbox`) holds the events it refused in
memory. Each held event is also appended to a **spool file**, so that a process that dies
before the store is back (killed, ended with ``os._exit``, out of memory) leaves its events to
the next process on the host that uses the same store, which writes them (:func:`take_over`,
through :func:`immortus.outbox.adopt`).

- One file per process and outage, created when the outage begins and deleted when the outbox
  has written everything, in a directory private to the user: ``IMMORTUS_SPOOL_DIR`` if set
  (``off`` turns spooling off), else ``$XDG_RUNTIME_DIR/immortus``, else
  ``<temp dir>/immortus-<uid>``. The directory is mode 0700 and each file 0600: events carry
  job ids, errors (tracebacks included) and meta. A directory that is another user's or that
  others may write to is refused (logged once), and the outbox holds in memory only.
- A file is named for its store (a digest of :attr:`Store.location
  <immortus.stores.base.Store.location>`; stores without one, like the memory store, are not
  spooled) and its process. Its owner holds a POSIX lock on it for its whole life; the lock
  goes with the process however it ends, which is how others know the file is orphaned.
- JSON lines, appended with one ``write`` each: a header naming the store, then each held
  event with its number, and an acknowledgement of each number once it is written to the store
  (or dropped past ``outbox_limit``). An adopter writes the events never acknowledged, in order,
  acknowledging each as it goes, so an adoption cut short resumes where it stopped.
- Never ``fsync``-ed: a line is in the operating system's cache once ``write`` returns, so it
  survives the death of the process, not a power cut or a crash of the machine. A torn last
  line (the machine went down while writing it) is ignored.
- POSIX only (``fcntl``): elsewhere the outbox holds in memory only.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import stat
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from immortus import runtime
from immortus.exceptions import ImmortusError, StoreUnavailable
from immortus.status import JobError, Progress
from immortus.stores.base import Store
from immortus.transitions import Event, EventKind

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no spool
    _POSIX = False
else:
    _POSIX = True

__all__ = [
    "SPOOL_DIR_ENV",
    "Orphan",
    "Spool",
    "candidates",
    "decode_event",
    "encode_event",
    "orphans",
    "spool_dir",
    "take_over",
]

logger = logging.getLogger("immortus")

#: The environment variable naming the spool directory (``off``: no spooling).
SPOOL_DIR_ENV: Final = "IMMORTUS_SPOOL_DIR"
#: The layout of a spool file, in its header.
_VERSION: Final = 1


class Spools:
    """This process's spool files: a :mod:`runtime <immortus.runtime>` part.

    A reset forgets which directories were logged as unusable; a forked child closes its
    copies of the parent's files, which stay the parent's (and are not its own).
    """

    def __init__(self) -> None:
        self.names = itertools.count(1)  # never restarts: a file's name stays unique
        self.refused: set[str] = set()  # directories already logged as unusable
        #: Every spool this process opened and has not closed.
        self.open: weakref.WeakSet[Spool] = weakref.WeakSet()

    def reset(self) -> None:
        self.refused.clear()

    def after_fork(self) -> None:
        for spool in list(self.open):
            spool._close()
        self.open.clear()


_state: Final = runtime.part(Spools)


def spool_dir(*, create: bool = True) -> Path | None:
    """The directory spool files go to, created private if missing; ``None``: no spooling.

    With ``create=False`` a missing directory gives ``None`` (there is nothing in it to read).
    Never raises: an unusable directory is logged once and turns spooling off.
    """
    if not _POSIX:
        return None
    configured = os.environ.get(SPOOL_DIR_ENV, "").strip()
    if configured.lower() == "off":
        return None
    if configured:
        folder = Path(configured)
    elif runtime := os.environ.get("XDG_RUNTIME_DIR"):
        folder = Path(runtime) / "immortus"
    else:
        folder = Path(tempfile.gettempdir()) / f"immortus-{os.getuid()}"
    if not create and not folder.is_dir():
        return None
    reason = _unusable(folder)
    if reason is None:
        return folder
    if str(folder) not in _state.refused:
        _state.refused.add(str(folder))
        logger.warning(
            "immortus: not spooling held tracking events to %s (%s): events held during a "
            "store outage are lost if the process ends before the store is back",
            folder,
            reason,
        )
    return None


def _unusable(folder: Path) -> str | None:
    """Why ``folder`` (created 0700 if missing) cannot hold spool files, or ``None``."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        found = folder.lstat()
    except OSError as exc:
        return f"it cannot be created: {exc}"
    if not stat.S_ISDIR(found.st_mode):
        return "it is not a directory"
    if found.st_uid != os.getuid():
        return "it belongs to another user"
    if found.st_mode & 0o022:
        return "other users may write to it"
    return None


def _digest(location: str) -> str:
    return hashlib.sha256(location.encode()).hexdigest()[:20]


# -- events as JSON -------------------------------------------------------------------------


def encode_event(event: Event) -> dict[str, Any]:
    """Return ``event`` as a JSON-ready mapping (:func:`decode_event` reads it back)."""
    progress, error = event.progress, event.error
    return {
        "kind": event.kind.value,
        "job_id": event.job_id,
        "at": event.at.isoformat(),
        "job_class": event.job_class,
        "attempt": event.attempt,
        "progress": None
        if progress is None
        else [progress.current, progress.total, progress.message],
        "error": None if error is None else [error.type, error.message, error.traceback],
        "meta": None if event.meta is None else dict(event.meta),
        "alive_until": None if event.alive_until is None else event.alive_until.isoformat(),
        "retry_at": None if event.retry_at is None else event.retry_at.isoformat(),
        "group_id": event.group_id,
    }


def decode_event(data: Mapping[str, Any]) -> Event:
    """Rebuild the event :func:`encode_event` wrote.

    Raises:
        KeyError, TypeError, ValueError, InvalidInput: ``data`` is not an encoded event.
    """
    progress, error, until = data["progress"], data["error"], data["alive_until"]
    due = data.get("retry_at")  # absent from files an older immortus spooled
    return Event(
        kind=EventKind(data["kind"]),
        job_id=data["job_id"],
        at=datetime.fromisoformat(data["at"]),
        job_class=data["job_class"],
        attempt=data["attempt"],
        progress=None
        if progress is None
        else Progress(
            current=progress[0], total=progress[1], message=progress[2], allow_overshoot=True
        ),
        error=None
        if error is None
        else JobError(type=error[0], message=error[1], traceback=error[2]),
        meta=data["meta"],
        alive_until=None if until is None else datetime.fromisoformat(until),
        retry_at=None if due is None else datetime.fromisoformat(due),
        group_id=data.get("group_id"),  # absent from files an older immortus spooled
    )


# -- the owner's file -----------------------------------------------------------------------


class Spool:
    """One process's spool file for one store and outage: append, acknowledge, delete.

    Made by :meth:`create`. Every method but :meth:`create` never raises: a failing disk is
    logged once and the spool stops writing (the events are still held in memory).
    """

    def __init__(self, path: Path, descriptor: int) -> None:
        #: The file.
        self.path = path
        self._fd: int | None = descriptor
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        _state.open.add(self)  # removed by remove(), or in a forked child

    @classmethod
    def create(cls, store: Store) -> Spool | None:
        """Start a spool file for ``store`` in this process; ``None`` when it cannot be spooled.

        Never raises: a store without a :attr:`~Store.location`, no usable directory or a
        failing disk give ``None`` (the last two are logged).
        """
        location = store.location
        folder = None if location is None else spool_dir()
        if location is None or folder is None:
            return None
        path = folder / f"{_digest(location)}.{os.getpid()}.{next(_state.names)}.spool"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        try:
            descriptor = os.open(path, flags, 0o600)
        except OSError as exc:
            logger.warning("immortus: cannot create the spool file %s: %s", path, exc)
            return None
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            header = {"spool": _VERSION, "store": location, "pid": os.getpid()}
            os.write(descriptor, _line(header))
        except OSError as exc:
            os.close(descriptor)
            with contextlib.suppress(OSError):
                path.unlink()
            logger.warning("immortus: cannot start the spool file %s: %s", path, exc)
            return None
        return cls(path, descriptor)

    def append(self, event: Event) -> int:
        """Append a held event; return its number (0: not spooled)."""
        with self._lock:
            number = next(self._numbers)
            return number if self._write({"n": number, "event": encode_event(event)}) else 0

    def acknowledge(self, number: int) -> None:
        """Record that event ``number`` was written to the store (or given up)."""
        if number:
            with self._lock:
                self._write({"ack": number})

    def _write(self, entry: Mapping[str, Any]) -> bool:
        if self._fd is None:
            return False
        try:
            os.write(self._fd, _line(entry))
        except (OSError, TypeError, ValueError) as exc:
            logger.warning(
                "immortus: cannot write to the spool file %s (%s): held events stay in memory only",
                self.path,
                exc,
            )
            self._close()
            return False
        return True

    def remove(self) -> None:
        """Delete the file: everything it held was written or given up."""
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                with contextlib.suppress(OSError):
                    self.path.unlink()
            self._close()
        _state.open.discard(self)

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _line(entry: Mapping[str, Any]) -> bytes:
    return (json.dumps(entry, separators=(",", ":")) + "\n").encode()


# -- other processes' files ------------------------------------------------------------------


class Orphan:
    """A spool file whose process has ended, locked by this process until :meth:`close`."""

    def __init__(self, path: Path, descriptor: int, pid: int | None) -> None:
        #: The file.
        self.path = path
        #: The process that held the events.
        self.pid = pid
        self._fd = descriptor

    def pending(self) -> Iterator[tuple[int, Event]]:
        """The events never acknowledged, in order, with their numbers.

        An unreadable line (a torn last one) is skipped, and so is an event that no longer
        decodes (logged).
        """
        with open(self._fd, "rb", closefd=False) as file:
            file.seek(0)
            entries = []
            for raw in file:
                try:
                    entries.append(json.loads(raw))
                except ValueError:
                    continue
        acknowledged = {
            entry["ack"] for entry in entries if isinstance(entry, dict) and "ack" in entry
        }
        for entry in entries:
            if not isinstance(entry, dict) or "n" not in entry or entry["n"] in acknowledged:
                continue
            try:
                yield entry["n"], decode_event(entry["event"])
            except (KeyError, TypeError, ValueError, ImmortusError) as exc:
                logger.warning("immortus: skipped an unreadable event in %s: %s", self.path, exc)

    def acknowledge(self, number: int) -> None:
        """Record that event ``number`` is taken care of (it is not written again)."""
        os.write(self._fd, _line({"ack": number}))

    def close(self, *, remove: bool) -> None:
        """Delete the file if ``remove``, and let it go."""
        if remove:
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self._fd)


def candidates(store: Store) -> Iterator[tuple[Path, int | None]]:
    """The spool files of ``store`` that other processes made, and those processes' ids.

    Some may belong to live processes: :func:`orphans` tells. Cheap (one directory listing),
    and never raises.
    """
    location = store.location
    folder = None if location is None else spool_dir(create=False)
    if location is None or folder is None:
        return
    own = {spool.path for spool in list(_state.open)}
    prefix = f"{_digest(location)}."
    try:
        names = sorted(name for name in os.listdir(folder) if name.startswith(prefix))
    except OSError:
        return
    for name in names:
        parts = name.split(".")
        pid = int(parts[1]) if len(parts) == 4 and parts[1].isdigit() else None
        path = folder / name
        if path not in own and name.endswith(".spool"):
            yield path, pid


def orphans(store: Store) -> Iterator[Orphan]:
    """Lock and yield, one at a time, the spool files of ``store`` whose process has ended.

    The caller closes each (:meth:`Orphan.close`). A file another live process holds is
    skipped, and so is this process's own. Never raises for a file: one that cannot be opened
    or read is skipped (it may be adopted by another process at this very moment).
    """
    location = store.location
    if location is None:
        return
    for path, pid in list(candidates(store)):
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # its process lives (or another adopts it now)
            os.close(descriptor)
            continue
        if not _belongs(descriptor, location):
            os.close(descriptor)
            continue
        yield Orphan(path, descriptor, pid)


def take_over(store: Store, record: Callable[[Event], object]) -> int:
    """Hand the unwritten events of ``store``'s orphaned spool files to ``record``, in order.

    ``record`` is the outbox's (:func:`immortus.outbox.adopt`): it writes an event or holds it
    again. Each event is acknowledged in its file once handed over, and each file deleted once
    all its events are; a WARNING names the dead process and the count. An event ``record``
    refuses for good is logged and dropped; ``StoreUnavailable`` from it (the outbox is off and
    the store away) leaves the rest for later. Returns how many events were handed over.
    Never raises.
    """
    taken = 0
    try:
        for orphan in orphans(store):
            count, complete = _hand_over(store, orphan, record)
            taken += count
            if count:  # said before the file goes: once it is gone, the adoption is told
                logger.warning(
                    "immortus: process %s ended with %d tracking events for the store %r "
                    "unwritten; they are written now, in order (from %s)",
                    orphan.pid if orphan.pid is not None else "?",
                    count,
                    store,
                    orphan.path,
                )
            orphan.close(remove=complete)
            if not complete:
                break
    except Exception:  # tracking never breaks the job
        logger.exception("immortus: cannot take over held events left by ended processes")
    return taken


def _hand_over(store: Store, orphan: Orphan, record: Callable[[Event], object]) -> tuple[int, bool]:
    """Hand ``orphan``'s pending events over; return how many, and whether all went."""
    count = 0
    for number, event in orphan.pending():
        try:
            record(event)
        except StoreUnavailable:
            return count, False
        except Exception:
            logger.exception(
                "immortus: the store %r refused a %s event of job %r an ended process held; "
                "it is dropped",
                store,
                event.kind.value,
                event.job_id,
            )
        orphan.acknowledge(number)
        count += 1
    return count, True


def _belongs(descriptor: int, location: str) -> bool:
    """Whether the file's header names ``location`` (a digest is not proof)."""
    with open(descriptor, "rb", closefd=False) as file:
        try:
            header = json.loads(file.readline())
        except ValueError:
            return False
    return isinstance(header, dict) and header.get("store") == location
