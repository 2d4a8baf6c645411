"""RQ's failure texts read as immortus's errors, a dead work horse's or worker's included."""

from __future__ import annotations

import os
import re
import signal
from typing import Final

from immortus.status import JobError

__all__ = ["ABANDONED", "CANCELLED_ERROR", "HORSE_DIED", "LOST_ERRORS", "error_from_traceback"]

#: The error type of a job whose work horse died (killed, out of memory, exited): RQ's text
#: "Work-horse terminated unexpectedly; waitpid returned 9 (signal 9)", which has no class.
HORSE_DIED: Final = "rq.WorkHorseTerminated"
#: The error type of a job RQ's started registry found abandoned: its whole worker died.
ABANDONED: Final = "rq.exceptions.AbandonedJobError"
#: Error types of a failed RQ job that mean the process running it died: the job is ``lost``.
LOST_ERRORS: Final = frozenset({HORSE_DIED, ABANDONED})
#: The error type of a job that stopped because its cancellation was requested: RQ records it
#: failed with ``immortus.JobCancelled``, and it is ``cancelled``.
CANCELLED_ERROR: Final = "immortus.cancel_requests.JobCancelled"

_HORSE_TERMINATED = re.compile(
    r"Work-horse terminated unexpectedly; waitpid returned (-?\d+)(?: \(signal (\d+)\))?"
)
_ABANDONED_TEXT = re.compile(r"Moved to \w+, due to AbandonedJobError\b")
_EXCEPTION_LINE = re.compile(r"([A-Za-z_][\w.]*)(?:: (.*))?")
_MAX_ERROR_MESSAGE: Final = 2000


def error_from_traceback(text: str) -> JobError:
    """Return the error an RQ failure text (a formatted traceback, mostly) describes.

    A traceback ending with the line ``ValueError: boom`` gives type ``ValueError`` and message
    ``boom``. RQ's texts for a job whose process died give the types of :data:`LOST_ERRORS`:
    "Work-horse terminated unexpectedly; waitpid returned 9 (signal 9)" is a
    :data:`HORSE_DIED` "the work horse was killed by signal 9 (SIGKILL)", and "Moved to
    FailedJobRegistry, due to AbandonedJobError" an :data:`ABANDONED`. Any other text is the
    message of an ``rq.JobFailure``. RQ's text stays in ``traceback``, on the server.
    """
    died = _death(text)
    if died is not None:
        return died
    lines = text.rstrip().splitlines()
    # The exception is the first line after the traceback's frames, which are indented.
    start = max((number + 1 for number, line in enumerate(lines) if line[:1].isspace()), default=0)
    match = _EXCEPTION_LINE.fullmatch(lines[start]) if start < len(lines) else None
    if match is not None:
        message = "\n".join([match.group(2) or "", *lines[start + 1 :]]).strip()
        return JobError(type=match.group(1), message=message[:_MAX_ERROR_MESSAGE], traceback=text)
    last = lines[-1].strip() if lines else "the job failed"
    return JobError(type="rq.JobFailure", message=last[:_MAX_ERROR_MESSAGE], traceback=text)


def _death(text: str) -> JobError | None:
    """Read RQ's text for a job whose work horse or worker died; ``None`` for any other text."""
    horse = _HORSE_TERMINATED.match(text.lstrip())
    if horse is not None:
        return JobError(type=HORSE_DIED, message=_how_it_died(horse), traceback=text)
    if _ABANDONED_TEXT.match(text.lstrip()):
        message = "the worker running the job died: RQ found the job abandoned"
        return JobError(type=ABANDONED, message=message, traceback=text)
    return None


def _how_it_died(horse: re.Match[str]) -> str:
    """Say how the work horse ended, from RQ's ``waitpid`` status (and signal) of it."""
    status, number = int(horse.group(1)), horse.group(2)
    if number is None and status > 0 and os.WIFSIGNALED(status):
        number = str(os.WTERMSIG(status))
    if number is not None:
        try:
            name = f" ({signal.Signals(int(number)).name})"
        except ValueError:  # not a signal this platform names
            name = ""
        return f"the work horse was killed by signal {number}{name}"
    if status > 0 and os.WIFEXITED(status):
        return f"the work horse exited with code {os.WEXITSTATUS(status)}"
    return f"the work horse died (waitpid returned {status})"
