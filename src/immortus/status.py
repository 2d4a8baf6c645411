"""The status model: what immortus says about a job, and its wire format.

``State``'s values are the wire format the JavaScript client reads. ``JobStatus.to_dict()`` is the
body of the verify endpoint: ``meta`` keys are merged at the top level and the reserved keys
always win.
"""

from __future__ import annotations

import math
import traceback as traceback_module
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, NoReturn, TypeVar

from immortus.exceptions import InvalidProgress, InvalidState

__all__ = [
    "BODY_KEYS",
    "MAX_HISTORY",
    "OPTIONAL_KEYS",
    "RESERVED_KEYS",
    "HistoryEntry",
    "HistoryEvent",
    "JobError",
    "JobStatus",
    "Progress",
    "ReadOnlyDict",
    "State",
    "isoformat",
    "read_only",
]

#: Longest progress message kept; longer ones are refused, not silently cut.
MAX_MESSAGE_LENGTH: Final = 1000
#: Longest error message kept from an exception; the rest is cut with an ellipsis.
MAX_ERROR_MESSAGE_LENGTH: Final = 2000
#: Longest error type name kept.
MAX_ERROR_TYPE_LENGTH: Final = 255
#: Longest traceback kept, in characters: its first line and its end (where the exception is)
#: stay, the middle frames are cut.
MAX_TRACEBACK_LENGTH: Final = 16 * 1024
#: Most entries a job's history keeps; the oldest go first.
MAX_HISTORY: Final = 50


_K = TypeVar("_K")
_V = TypeVar("_V")


class ReadOnlyDict(dict[_K, _V]):
    """A dict that refuses changes: the mappings of records shared between readers.

    A status read from a store may be the very object another reader got (stores and the web
    layer cache them), so its ``meta`` must not change under them. It is equal to the dict it was
    made from, serialised by ``json.dumps`` and ``pickle`` as one; ``dict(read_only)`` is a
    copy to change. Every changing method raises :class:`TypeError`.
    """

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is read-only; change a copy: dict(...)")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[type[ReadOnlyDict[_K, _V]], tuple[dict[_K, _V]]]:
        return (type(self), (dict(self),))


_NOTHING: Final[ReadOnlyDict[Any, Any]] = ReadOnlyDict()


def read_only(mapping: Mapping[_K, _V]) -> ReadOnlyDict[_K, _V]:
    """Return ``mapping`` as a :class:`ReadOnlyDict` (itself if it is one already)."""
    if isinstance(mapping, ReadOnlyDict):
        return mapping
    return ReadOnlyDict(mapping) if mapping else _NOTHING


class State(StrEnum):
    """Where a job is in its life. The values are the wire format."""

    #: Enqueued (or scheduled), not started.
    CREATED = "created"
    #: A worker is running it.
    STARTED = "started"
    #: Failed an attempt; another is due.
    RETRYING = "retrying"
    #: Ended successfully.
    FINISHED = "finished"
    #: Ended with an error and no retry left.
    FAILED = "failed"
    #: Revoked, cancelled or stopped.
    CANCELLED = "cancelled"
    #: Its worker died or stopped heart-beating, and no retry is coming.
    LOST = "lost"
    #: Nobody has any record of this id.
    UNKNOWN = "unknown"

    @property
    def completed(self) -> bool:
        """Whether the job has ended: the client stops watching."""
        return self in _COMPLETED

    @property
    def success(self) -> bool | None:
        """``True`` when finished, ``False`` when ended otherwise, ``None`` while not ended."""
        if self is State.FINISHED:
            return True
        return False if self in _COMPLETED else None

    @classmethod
    def parse(cls, value: str | State) -> State:
        """Return the state named ``value``.

        Raises:
            InvalidState: ``value`` is not one of the state values.
        """
        if isinstance(value, State):
            return value
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(state.value for state in cls)
            raise InvalidState(f"unknown state {value!r}; expected one of: {names}") from None


_COMPLETED: Final = frozenset({State.FINISHED, State.FAILED, State.CANCELLED, State.LOST})


def _check_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidProgress(f"progress {name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value):
        raise InvalidProgress(f"progress {name} must be finite, not {value!r}")
    if value < 0:
        raise InvalidProgress(f"progress {name} must not be negative, not {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """How far a running job has come.

    ``current`` may exceed ``total`` only when ``allow_overshoot=True`` is passed (for totals that
    are estimates). ``percent`` is derived, never stored.

    Raises:
        InvalidProgress: a number is negative, NaN or infinite, ``current`` exceeds ``total``
            without permission, or ``message`` is not a string of at most 1000 characters.
    """

    current: int | float
    total: int | float | None = None
    message: str | None = None
    allow_overshoot: InitVar[bool] = False

    def __post_init__(self, allow_overshoot: bool) -> None:
        _check_number("current", self.current)
        if self.total is not None:
            _check_number("total", self.total)
            if self.current > self.total and not allow_overshoot:
                raise InvalidProgress(
                    f"progress current ({self.current}) exceeds total ({self.total}); "
                    "pass allow_overshoot=True if the total is an estimate"
                )
        if self.message is not None:
            if not isinstance(self.message, str):
                raise InvalidProgress(
                    f"progress message must be a string, not {type(self.message).__name__}"
                )
            if len(self.message) > MAX_MESSAGE_LENGTH:
                raise InvalidProgress(
                    f"progress message is {len(self.message)} characters long; "
                    f"the limit is {MAX_MESSAGE_LENGTH}"
                )

    @property
    def percent(self) -> float | None:
        """``current`` as a percentage of ``total`` (two decimals), or ``None`` without a total.

        A total of zero means there was nothing to do: 100 %.
        """
        if self.total is None:
            return None
        if self.total == 0:
            return 100.0
        return round(self.current / self.total * 100, 2)

    def to_dict(self) -> dict[str, Any]:
        """Return the wire form: ``{current, total, percent, message}``."""
        return {
            "current": self.current,
            "total": self.total,
            "percent": self.percent,
            "message": self.message,
        }


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shorten_traceback(text: str) -> str:
    """Keep a traceback's first line and its end within :data:`MAX_TRACEBACK_LENGTH`."""
    if len(text) <= MAX_TRACEBACK_LENGTH:
        return text
    head = text.partition("\n")[0][:200]
    marker = f"\n  … ({len(text) - MAX_TRACEBACK_LENGTH} characters cut) …\n"
    return head + marker + text[-(MAX_TRACEBACK_LENGTH - len(head) - len(marker)) :]


@dataclass(frozen=True, slots=True, kw_only=True)
class JobError:
    """Why a job (or one of its attempts) failed.

    Only ``type`` and ``message`` go over the wire (:meth:`to_dict`); ``traceback`` stays on
    the server: it is kept by the stores for operators, never put in a verify body, a stream, a
    log line of immortus or the ``repr``. Every field is bounded when the error is made, from an
    exception or from a queue's record: ``type`` to 255 characters, ``message`` to 2000 and
    ``traceback`` to 16 KiB (its first line and its end, where the exception is, are kept).
    """

    type: str
    message: str
    traceback: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen: the bounded values replace the given ones through object.__setattr__.
        if len(self.type) > MAX_ERROR_TYPE_LENGTH:
            object.__setattr__(self, "type", _shorten(self.type, MAX_ERROR_TYPE_LENGTH))
        if len(self.message) > MAX_ERROR_MESSAGE_LENGTH:
            object.__setattr__(self, "message", _shorten(self.message, MAX_ERROR_MESSAGE_LENGTH))
        if isinstance(self.traceback, str) and len(self.traceback) > MAX_TRACEBACK_LENGTH:
            object.__setattr__(self, "traceback", _shorten_traceback(self.traceback))

    @classmethod
    def from_exception(cls, exc: BaseException) -> JobError:
        """Capture ``exc`` as a ``JobError``, cutting over-long names and messages.

        Never raises for a job's exception: one whose ``str()`` fails gets a message saying so.
        """
        kind = type(exc)
        name = kind.__qualname__
        if kind.__module__ not in ("builtins", "__main__"):
            name = f"{kind.__module__}.{name}"
        try:
            message = str(exc)
        except Exception:  # noqa: BLE001 - a broken __str__ must not hide the failure itself
            message = f"<{kind.__name__}: its message could not be read>"
        return cls(
            type=name, message=message, traceback="".join(traceback_module.format_exception(exc))
        )

    def to_dict(self) -> dict[str, str]:
        """Return the wire form: ``{type, message}`` (never the traceback)."""
        return {"type": self.type, "message": self.message}


#: The keys every verify body has, in wire order.
BODY_KEYS: Final = (
    "job_id",
    "job_class",
    "status",
    "completed",
    "success",
    "progress",
    "error",
    "attempts",
    "enqueued_at",
    "started_at",
    "finished_at",
    "certain",
    "retry_at",
)
#: Keys of the verify body that ``meta`` can never override (``history`` is sent on request).
RESERVED_KEYS: Final = frozenset((*BODY_KEYS, "history"))
#: Keys a verify body has only for some jobs (``group_id``: a job in a group); ``meta`` never
#: sets them either.
OPTIONAL_KEYS: Final = frozenset(("group_id",))
_NOT_META: Final = RESERVED_KEYS | OPTIONAL_KEYS


def isoformat(moment: datetime | None) -> str | None:
    """Format ``moment`` as UTC ISO 8601 with milliseconds and a ``Z``, as the wire wants."""
    if moment is None:
        return None
    if moment.tzinfo is not UTC:  # stores decode to UTC already: no conversion then
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"  # "+00:00" -> "Z"


class HistoryEvent(StrEnum):
    """What a history entry records. The values are the wire format."""

    ENQUEUED = "enqueued"
    STARTED = "started"
    RETRYING = "retrying"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"
    CANCEL_REQUESTED = "cancel_requested"


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """One thing that happened to a job, as its history keeps it.

    ``attempt`` is the job's attempt count after it (0 before the first start); ``error`` the
    failed attempt's error (type and message only: the history keeps no traceback);
    ``retry_at`` when the next attempt was due, on ``retrying`` where the queue said.
    """

    at: datetime
    event: HistoryEvent
    attempt: int = 0
    error: JobError | None = None
    retry_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the wire form: ``{at, event, attempt, error, retry_at}``."""
        return {
            "at": isoformat(self.at),
            "event": self.event.value,
            "attempt": self.attempt,
            "error": None if self.error is None else self.error.to_dict(),
            "retry_at": isoformat(self.retry_at),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class JobStatus:
    """Everything immortus knows about one job at one moment.

    ``certain`` is ``False`` when the answer is an inference the strategy cannot confirm, for
    example "finished" from a queue that deletes finished jobs and so cannot tell them from jobs
    that never existed (Rails' Delayed::Job, which deletes a job's row once it succeeds).

    ``retry_at`` is when a ``retrying`` job's next attempt is due, where the queue said.
    ``history`` is the job's past events, oldest first, filled only when asked for
    (``immortus.status(..., history=True)``). ``group_id`` is the group the job belongs to
    (:mod:`immortus.groups`), set by its first event naming one and never changed.

    ``alive_until`` is the lease of a ``started`` job's worker as the store read it (see
    :mod:`immortus.heartbeat`): until then the worker's heartbeat vouches that it runs the job
    and its hooks will record the ending. ``None`` in every other state, or when no heartbeat
    watches the job. It is not part of the verify body, the ``repr`` or equality.

    ``meta`` is read-only (a :class:`ReadOnlyDict`, equal to the mapping given): a status may be
    shared by every reader of a cache. Changing it raises :class:`TypeError`.
    """

    job_id: str
    state: State
    job_class: str | None = None
    progress: Progress | None = None
    error: JobError | None = None
    attempts: int = 0
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    certain: bool = True
    retry_at: datetime | None = None
    history: tuple[HistoryEntry, ...] = ()
    group_id: str | None = None
    alive_until: datetime | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if type(self.meta) is not ReadOnlyDict:  # frozen: set through object.__setattr__
            object.__setattr__(self, "meta", read_only(self.meta))

    @classmethod
    def unknown(cls, job_id: str, job_class: str | None = None) -> JobStatus:
        """Return the status of a job nobody has any record of."""
        return cls(job_id=job_id, job_class=job_class, state=State.UNKNOWN)

    @property
    def completed(self) -> bool:
        """Whether the job has ended."""
        return self.state.completed

    @property
    def success(self) -> bool | None:
        """``True`` finished, ``False`` ended otherwise, ``None`` still going or unknown.

        Also ``None`` for a ``finished`` that is an inference (``certain`` false): a reader of a
        queue that deletes a job however it ended knows that it ended, not how.
        """
        if self.state is State.FINISHED and not self.certain:
            return None
        return self.state.success

    def to_dict(self, *, history: bool = False) -> dict[str, Any]:
        """Return the verify body, with ``meta`` merged under the reserved keys.

        ``State`` in Python is ``status`` in the body: :attr:`state` goes out as the
        ``"status"`` key, the word of the Ruby gem immortus and of every client.

        The ``meta`` keys come first, then the reserved keys in the order of :data:`BODY_KEYS`;
        a job in a group has a ``"group_id"`` key after them; with ``history``, a last
        ``"history"`` key lists :attr:`history`'s entries.
        """
        state = self.state
        reserved: dict[str, Any] = {
            "job_id": self.job_id,
            "job_class": self.job_class,
            "status": state.value,
            "completed": state.completed,
            "success": self.success,
            "progress": None if self.progress is None else self.progress.to_dict(),
            "error": None if self.error is None else self.error.to_dict(),
            "attempts": self.attempts,
            "enqueued_at": isoformat(self.enqueued_at),
            "started_at": isoformat(self.started_at),
            "finished_at": isoformat(self.finished_at),
            "certain": self.certain,
            "retry_at": isoformat(self.retry_at),
        }
        if self.group_id is not None:
            reserved["group_id"] = self.group_id
        if history:
            reserved["history"] = [entry.to_dict() for entry in self.history]
        if not self.meta:
            return reserved
        body = {key: value for key, value in self.meta.items() if key not in _NOT_META}
        body.update(reserved)
        return body
