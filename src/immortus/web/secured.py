"""Whether the routes serve: a secret key, or routes declared open on purpose.

Without a secret key the routes serve nothing (500, :class:`EndpointsNotSecured`) unless the
app declared them open (``immortus.configure(open_endpoints=True)``); each case is logged once
per process (:func:`log_once`).
"""

from __future__ import annotations

import logging
from typing import Final

from immortus import runtime

__all__ = ["NOT_SECURED", "OPEN", "log_once"]

logger = logging.getLogger("immortus.web")

#: What an unsecured route answers, and logs once per process.
NOT_SECURED: Final = (
    "the immortus routes have no secret key, so they serve nothing: set "
    "immortus.configure(secret_key=...) to hand out job tokens, or declare the routes public "
    "with immortus.configure(open_endpoints=True) (anyone who knows a job id may then read its "
    "status)"
)
#: The warning of routes declared open, logged once per process.
OPEN: Final = (
    "immortus: the job status routes are open on purpose (open_endpoints=True, no secret_key): "
    "anyone who knows a job id can read its status"
)


class LoggedOnce(runtime.LockedPart):
    """The messages this process already logged (a :mod:`runtime <immortus.runtime>` part)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: set[str] = set()

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()


_logged: Final = runtime.part(LoggedOnce)


def log_once(level: int, message: str) -> None:
    """Log ``message`` at ``level`` the first time only, in this process."""
    with _logged.lock:
        if message in _logged.messages:
            return
        _logged.messages.add(message)
    logger.log(level, message)
