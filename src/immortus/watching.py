"""Follow jobs until they complete, and describe them in plain text safe for a terminal.

Job ids, classes, progress messages, meta and errors come from jobs and stores, not from this
program: every human-readable line built from them passes through :func:`safe_text` before it is
printed, so none can move the cursor, recolour the screen, reverse the text or fake a link.

:func:`follow` polls :func:`immortus.status` for one job or several, exactly as a web page would,
and hands every answer to a board: :class:`PlainBoard` prints one line per change (standard
library only, for logs and pipes); :class:`immortus.terminal.LiveBoard` draws progress bars.
Used by ``immortus watch`` and ``immortus demo``.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Final, Protocol

from immortus.exceptions import StoreUnavailable
from immortus.query import status as job_status
from immortus.status import JobError, JobStatus, Progress, State, isoformat

__all__ = [
    "Board",
    "PlainBoard",
    "Target",
    "ago_text",
    "counts_text",
    "detail",
    "duration_text",
    "elapsed",
    "error_text",
    "follow",
    "history_lines",
    "one_line",
    "percent_text",
    "safe_text",
    "summary",
]

#: How many times in a row :func:`follow` retries a store that cannot be reached.
STORE_RETRIES: Final = 5
#: The longest pause between two of those retries, in seconds.
MAX_BACKOFF: Final = 5.0

# -- plain text --------------------------------------------------------------------------------

#: Characters a terminal may act on rather than show: C0 and C1 controls (ESC starts every
#: cursor, colour, title and hyperlink sequence), DEL, the bidirectional overrides and isolates
#: (which reverse how the rest of a line reads), and lone surrogates (which cannot be encoded).
_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff\u2028\u2029]"
)
#: Of those, the ones that only break a line or space it out: shown as one space.
_SPACES: Final = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85\u2028\u2029")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SPACES:
        return " "
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def safe_text(text: str) -> str:
    r"""``text`` fit to print on a terminal, on one line: what it shows is what it holds.

    Line breaks and tabs become spaces; every other control character, bidirectional override
    and lone surrogate is shown as its escape (ESC as ``\x1b``, U+202E as ``\u202e``), so a
    hostile job id or message prints as inert text. Ordinary Unicode is kept. Rich markup is not
    this function's concern: :mod:`immortus.terminal` hands rich ``Text`` objects, never markup.
    """
    return _UNSAFE.sub(_escape, text)


def _number(value: float) -> str:
    return f"{value:g}"


def one_line(text: str) -> str:
    """``text`` with every run of whitespace, newlines included, made one space."""
    return " ".join(text.split())


def percent_text(progress: Progress | None) -> str:
    """``"37%"`` (whole percents, rounded down), or ``""`` without progress or total."""
    if progress is None or progress.percent is None:
        return ""
    return f"{math.floor(progress.percent)}%"


def counts_text(progress: Progress | None) -> str:
    """``"37/100"``, ``"37"`` without a total, or ``""`` without progress."""
    if progress is None:
        return ""
    if progress.total is None:
        return _number(progress.current)
    return f"{_number(progress.current)}/{_number(progress.total)}"


def elapsed(status: JobStatus, now: datetime | None = None) -> float | None:
    """Seconds the job has run (or waited, if it has not started), or ``None``."""
    begin = status.started_at or status.enqueued_at
    if begin is None:
        return None
    end = status.finished_at or now or datetime.now(UTC)
    return max(0.0, (end - begin).total_seconds())


def duration_text(seconds: float | None) -> str:
    """``"4.2s"``, ``"3m05s"``, ``"2h01m"``; ``""`` for ``None``."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, whole = divmod(int(seconds), 60)
    return f"{minutes}m{whole:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def ago_text(moment: datetime | None, now: datetime | None = None) -> str:
    """``"12s ago"``, ``"5m ago"``, ``"3h ago"``, then the date; ``"-"`` for ``None``."""
    if moment is None:
        return "-"
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    if seconds < 86400:
        for size, unit in ((3600, "h"), (60, "m"), (1, "s")):
            if seconds >= size or unit == "s":
                return f"{max(0, int(seconds // size))}{unit} ago"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def error_text(status: JobStatus, *, short: bool = False) -> str:
    """``"ValueError: boom"``, on one line and safe to print, or ``""`` without an error.

    ``short`` drops the module part of the type (``ValueError`` for ``builtins.ValueError``).
    """
    return "" if status.error is None else _error_line(status.error, short=short)


def _error_line(error: JobError, *, short: bool = False) -> str:
    kind = error.type.rpartition(".")[2] if short else error.type
    return safe_text(f"{kind}: {one_line(error.message)}")


def history_lines(status: JobStatus) -> list[str]:
    """The job's history as a timeline, one line per entry, oldest first, safe to print.

    Each line holds the time, the event, the attempt, and where present the error (``type:
    message``) and when the next attempt was due (``retry at ...``).
    """
    lines = []
    for entry in status.history:
        parts = [isoformat(entry.at) or "", f"{entry.event.value:<16}", f"attempt {entry.attempt}"]
        if entry.error is not None:
            parts.append(_error_line(entry.error))
        if entry.retry_at is not None:
            parts.append(f"retry at {isoformat(entry.retry_at)}")
        lines.append(safe_text("  ".join(parts)))
    return lines


def detail(status: JobStatus) -> str:
    """What a person wants to read beside the bar: the message, the error or the meta."""
    if status.state is State.UNKNOWN:
        return "waiting for the first record of this job"
    if status.state is State.CREATED:
        return "waiting in the queue"
    if status.error is not None and status.state in {State.RETRYING, State.FAILED, State.LOST}:
        text = error_text(status, short=True)
        return (
            f"attempt {status.attempts} failed, retry due: {text}"
            if status.state is State.RETRYING
            else text
        )
    parts = [] if status.progress is None else [status.progress.message or ""]
    parts += [f"{key}={value}" for key, value in status.meta.items()]
    return one_line(safe_text("  ".join(part for part in parts if part)))


def summary(status: JobStatus) -> str:
    """The state, attempt, progress and detail on one line (boards and ``watch`` use it)."""
    state = status.state.value
    if status.attempts > 1:
        state += f" (attempt {status.attempts})"
    parts = [state, percent_text(status.progress), counts_text(status.progress), detail(status)]
    return "  ".join(part for part in parts if part)


# -- following jobs ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A job to follow, the class that selects its strategy, and the name to show it under."""

    job_id: str
    job_class: str | None = None
    label: str | None = None

    @property
    def name(self) -> str:
        """The label, or else the job id."""
        return self.label or self.job_id


class Board(Protocol):
    """Where :func:`follow` shows what it learns."""

    def show(self, target: Target, status: JobStatus) -> None:
        """Called after each poll of a job that has not completed, with its new status."""

    def note(self, text: str) -> None:
        """Called with news about the watch itself (a store retry)."""


def follow(
    targets: Sequence[Target],
    board: Board,
    *,
    interval: float = 0.5,
    timeout: float | None = None,
    retries: int = STORE_RETRIES,
) -> dict[str, JobStatus]:
    """Poll every target's status until all have completed; return the last statuses by id.

    When ``timeout`` seconds pass first, it returns what it has seen so far (some jobs not
    completed, or absent if the store never answered). A store that cannot be reached is
    retried ``retries`` times in a row, waiting twice as long each time (from ``interval`` up to
    :data:`MAX_BACKOFF`), so a short outage does not end the watch.

    Raises:
        StoreUnavailable: the store still cannot be reached after the retries.
        InvalidInput, ConfigurationError, StrategyError: as :func:`immortus.status`.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    latest: dict[str, JobStatus] = {}
    failures = 0
    while True:
        try:
            for target in targets:
                known = latest.get(target.job_id)
                if known is None or not known.completed:
                    latest[target.job_id] = job_status(target.job_id, target.job_class)
                    board.show(target, latest[target.job_id])
        except StoreUnavailable as exc:
            failures += 1
            if failures > retries:
                raise
            pause = min(MAX_BACKOFF, interval * 2 ** (failures - 1))
            board.note(f"store unavailable ({exc}); retry {failures}/{retries} in {pause:.1f}s")
        else:
            if failures:
                board.note("the store answers again")
            failures, pause = 0, interval
            if len(latest) == len(targets) and all(s.completed for s in latest.values()):
                return latest
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return latest
            pause = min(pause, left)
        time.sleep(pause)


class PlainBoard:
    """Prints one line each time a job's status changes: for logs, pipes and tests.

    With ``step``, progress alone prints a line only when it crosses a multiple of ``step``
    percent (a change of state, attempt, error or meta always prints).
    """

    def __init__(
        self, stream: IO[str] | None = None, errors: IO[str] | None = None, *, step: float = 0
    ) -> None:
        self._stream, self._errors, self._step = stream, errors, step
        self._start = time.monotonic()
        self._seen: dict[str, dict[str, Any]] = {}

    def __enter__(self) -> PlainBoard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Nothing to clean up: every line is already out."""

    def _print(self, text: str, stream: IO[str] | None) -> None:
        line = f"[+{time.monotonic() - self._start:6.1f}s] {safe_text(text)}"
        print(line, file=stream, flush=True)

    def show(self, target: Target, status: JobStatus) -> None:
        """Print the status if it differs enough from the last one printed for the job."""
        key = status.to_dict()
        percent = None if status.progress is None else status.progress.percent
        if self._step and percent is not None and not status.completed:
            key["progress"] = percent // self._step
        if self._seen.get(target.job_id) != key:
            self._seen[target.job_id] = key
            self._print(f"{target.name}  {summary(status)}", self._stream or sys.stdout)

    def note(self, text: str) -> None:
        """Print ``text`` on standard error."""
        self._print(text, self._errors or sys.stderr)
