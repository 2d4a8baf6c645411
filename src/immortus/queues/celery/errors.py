"""Celery's stored exceptions, read as immortus's errors (never importing what they name)."""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Mapping
from typing import Final

from celery.exceptions import WorkerLostError  # type: ignore[import-untyped]

from immortus.status import JobError

__all__ = ["WORKER_LOST", "error_of", "failure"]

#: The error type of a task whose pool child died mid-task (billiard's ``WorkerLostError``):
#: a FAILURE with it reads ``lost``.
WORKER_LOST: Final = f"{WorkerLostError.__module__}.{WorkerLostError.__qualname__}"


def failure(error: object) -> BaseException | JobError:
    """Return what a hook reports as a job's error: the exception itself when it is one."""
    if isinstance(error, BaseException):
        return error  # JobError.from_exception keeps its traceback, server-side
    return error_of(error) or JobError(type="UnknownError", message=str(error))


def error_of(stored: object) -> JobError | None:
    """Turn an exception, or the dict a JSON backend stores for one, into a ``JobError``.

    The traceback is never read from the backend: it stays there, on the server side.
    """
    module: object
    if isinstance(stored, BaseException):
        kind = type(stored)
        module, name, message = kind.__module__, kind.__qualname__, str(stored)
    elif isinstance(stored, Mapping) and isinstance(stored.get("exc_type"), str):
        module, name = stored.get("exc_module"), str(stored["exc_type"])
        message = _message(stored.get("exc_message", ()), module, name)
    else:
        return None
    if isinstance(module, str) and module not in ("builtins", "__main__"):
        name = f"{module}.{name}"
    return JobError(type=name, message=message)  # JobError bounds both


def _message(arguments: object, module: object = None, name: str = "") -> str:
    """Return what ``str()`` says of the exception made with these stored arguments.

    Only a built-in exception is rebuilt to ask it (``KeyError`` quotes its key); any other
    type is never imported on the strength of what the backend says.
    """
    if not isinstance(arguments, list | tuple):
        return str(arguments)
    builtin = getattr(builtins, name, None) if module == "builtins" else None
    if isinstance(builtin, type) and issubclass(builtin, Exception):
        with contextlib.suppress(Exception):
            return str(builtin(*arguments))
    if len(arguments) == 1:
        return str(arguments[0])
    return str(tuple(arguments)) if arguments else ""
