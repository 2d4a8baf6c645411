"""The exit codes of the ``immortus`` command, and how it reports an error."""

from __future__ import annotations

import sys
from typing import Final

from immortus.watching import safe_text

__all__ = [
    "EPILOG",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_OK",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "fail",
    "warn",
]

EXIT_OK: Final = 0
#: ``status``: no record of the job; ``watch``: it did not succeed; ``demo --smoke`` or
#: ``--terminal``: a job did not end as expected.
EXIT_NOT_OK: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNAVAILABLE: Final = 3
EXIT_TIMEOUT: Final = 4
EXIT_FAILURE: Final = 5
EXIT_INTERRUPTED: Final = 130

EPILOG: Final = """\
exit codes:
  0    status: the job is known; watch: it finished; jobs, prune, config: done;
       demo, dashboard: stopped by Ctrl-C; demo --smoke/--terminal: every job
       ended as expected
  1    status: nobody has a record of the job; watch: it failed, was cancelled
       or was lost; demo --smoke/--terminal: a job did not end as expected
  2    bad input or set-up: a malformed job id, cursor or --limit, an unknown
       state, a bad store URL or strategy, an app (--app) that cannot be
       loaded, rich missing for a drawing command, a demo extra missing, the
       demo's port in use, a dashboard beyond loopback without a token
  3    the store cannot be reached (watch retries a few times, backing off)
  4    watch: --timeout passed before the job completed
  5    the tracking strategy raised, or a stored record cannot be decoded
  130  interrupted (Ctrl-C)
"""


def _say(message: str) -> None:
    lines = message.split("\n")  # a message may list things one per line; each is made safe
    print("\n".join(safe_text(line) for line in lines), file=sys.stderr)


def fail(message: str, code: int) -> int:
    """Print ``immortus: message`` on standard error, made safe for a terminal; return ``code``."""
    _say(f"immortus: {message}")
    return code


def warn(message: str) -> None:
    """Print ``immortus: message`` on standard error (the command goes on)."""
    _say(f"immortus: {message}")
