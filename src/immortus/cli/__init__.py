"""The ``immortus`` command: ask about jobs from a shell, watch one live, serve the dashboard.

It asks exactly what a web page asks (:func:`immortus.status`, through the job's strategy) and
lists and prunes through the configured store. ``--app MODULE`` (or ``$IMMORTUS_APP``) first
imports your app, so its settings, tracked jobs and queue integrations apply
(:mod:`immortus.cli.app`). The store is ``--store URL``, else the app's, else the
``IMMORTUS_STORE`` environment variable, else ``sqlite:///immortus.sqlite3``. Output meant for
programs (``--json``, and every line when standard output is not a terminal) needs no extra;
the progress bars and tables need rich (``pip install "immortus[cli]"``).

Everything printed from job data is made inert first (:func:`immortus.watching.safe_text`):
control characters and bidirectional overrides are shown as escapes, rich markup is never
interpreted. The exit codes are listed in :data:`EPILOG`, which ``--help`` prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from immortus.cli.codes import (
    EPILOG,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    fail,
)
from immortus.cli.commands import describe
from immortus.cli.parser import build_parser
from immortus.config import STORE_ENV
from immortus.exceptions import ConfigurationError, ImmortusError, InvalidInput, StoreUnavailable
from immortus.stores import redact_url
from immortus.watching import safe_text

__all__ = ["EPILOG", "build_parser", "describe", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``immortus`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse has printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except StoreUnavailable as exc:
        return _report(args, exc, "the store is unavailable: ", EXIT_UNAVAILABLE)
    except (InvalidInput, ConfigurationError) as exc:
        return _report(args, exc, "", EXIT_USAGE)
    except ImmortusError as exc:
        return _report(args, exc, "", EXIT_FAILURE)


def _report(args: argparse.Namespace, exc: ImmortusError, prefix: str, code: int) -> int:
    """Print the error (its traceback first with ``--debug``), no store password in it."""
    message = prefix + str(exc)
    if args.debug:
        message = "".join(traceback.format_exception(exc)) + f"immortus: {message}"
    for url in {args.store, os.environ.get(STORE_ENV)} - {None, ""}:
        message = message.replace(url, redact_url(url))
    if args.debug:
        warn_lines = message.rstrip("\n").split("\n")
        print("\n".join(safe_text(line) for line in warn_lines), file=sys.stderr)
        return code
    return fail(message, code)
