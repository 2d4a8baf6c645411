"""How a demo job waits between its steps, and how whoever runs it can stop it there.

The sample jobs call :func:`pause` where real work would take time. Whoever runs a job (the
terminal demo's thread pool, the web demo's Huey worker) wraps it in :func:`paced_by` with its
own waiting function, which may raise to stop the job at that step: that is how Ctrl-C and a
revoked Huey task reach a job that is busy. Outside :func:`paced_by`, :func:`pause` just sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["Wait", "paced_by", "pause"]

#: Waits the given seconds; may raise to stop the job at this step.
Wait = Callable[[float], None]

_wait: ContextVar[Wait | None] = ContextVar("immortus_demo_wait", default=None)


def pause(seconds: float) -> None:
    """Wait ``seconds`` inside a demo job, as real work would take time.

    Raises:
        Whatever the waiting function of the enclosing :func:`paced_by` raises to stop the job.
    """
    (_wait.get() or time.sleep)(seconds)


@contextmanager
def paced_by(wait: Wait) -> Iterator[None]:
    """Make :func:`pause` call ``wait`` in this thread (or task) for the length of the block."""
    token = _wait.set(wait)
    try:
        yield
    finally:
        _wait.reset(token)
