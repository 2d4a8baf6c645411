"""The argument parser of the ``immortus`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

import immortus
from immortus.cli import commands
from immortus.cli.app import APP_ENV
from immortus.cli.codes import EPILOG, EXIT_USAGE
from immortus.cli.dashboard import TOKEN_ENV, dashboard
from immortus.cli.group import group as group_command
from immortus.cli.settings import show_config
from immortus.config import DEFAULT_STORE_URL, STORE_ENV
from immortus.stores.base import MAX_PAGE_SIZE
from immortus.watching import safe_text

__all__ = ["build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse, with its error messages (which quote the arguments) made safe to print."""

    def error(self, message: str) -> NoReturn:
        """Print the usage and ``message`` on standard error and exit with code 2."""
        self.print_usage(sys.stderr)
        safe = "\n".join(safe_text(line) for line in message.split("\n"))
        self.exit(EXIT_USAGE, f"{self.prog}: error: {safe}\n")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}")
    return value


def _page_size(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE_SIZE:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {MAX_PAGE_SIZE}")
    return int(text)


def _shared_options(parser: argparse.ArgumentParser, default: object) -> None:
    """The options accepted before and after the command (``default``: SUPPRESS after it)."""
    parser.add_argument(
        "--store",
        metavar="URL",
        default=default,
        help=f"the store URL (default: the app's, else ${STORE_ENV}, else {DEFAULT_STORE_URL})",
    )
    parser.add_argument(
        "--app",
        metavar="MODULE[:NAME]",
        default=default,
        help=f"import your app first, so its settings and tracked jobs apply (default: "
        f"${APP_ENV}); a Django settings module also sets up Django",
    )
    parser.add_argument(
        "--django-settings",
        metavar="MODULE",
        default=default,
        help="set DJANGO_SETTINGS_MODULE and run django.setup() first",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``immortus`` command."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="immortus",
        description="Ask about tracked background jobs, watch one live, or run the demo.",
        epilog=EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"immortus {immortus.__version__}")
    _shared_options(parser, None)
    parser.add_argument(
        "--strategy",
        metavar="NAME",
        help='the global tracking strategy: a registered name or "package.module:Class"',
    )
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback behind an error message"
    )
    # Also accepted after the command; SUPPRESS keeps the value given before it otherwise.
    common = _Parser(add_help=False)
    _shared_options(common, argparse.SUPPRESS)
    sub_commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(
        name: str, run: Callable[[argparse.Namespace], int], text: str
    ) -> argparse.ArgumentParser:
        sub = sub_commands.add_parser(
            name,
            help=text,
            description=text,
            epilog=EPILOG,
            formatter_class=formatter,
            parents=[common],
        )
        sub.set_defaults(run=run)
        return sub

    status = command("status", commands.status, "Print what is known about one job.")
    status.add_argument("job_id", metavar="JOB_ID")
    status.add_argument(
        "--job-class", metavar="NAME", help="the job's class (selects its strategy)"
    )
    status.add_argument("--json", action="store_true", help="print the verify body as JSON")
    status.add_argument(
        "--history",
        action="store_true",
        help="also print the job's past events (attempts, errors, retries) as a timeline",
    )

    watch = command(
        "watch", commands.watch, "Follow one job with a live progress bar until it completes."
    )
    watch.add_argument("job_id", metavar="JOB_ID")
    watch.add_argument("--job-class", metavar="NAME", help="the job's class (selects its strategy)")
    watch.add_argument(
        "--interval",
        type=_positive,
        default=0.5,
        metavar="SECONDS",
        help="time between two polls (default: 0.5)",
    )
    watch.add_argument(
        "--timeout",
        type=_positive,
        metavar="SECONDS",
        help="give up (exit 4) if the job has not completed by then",
    )

    group = command(
        "group", group_command, "Print a group's aggregate: its jobs by state, progress, error."
    )
    group.add_argument("group_id", metavar="GROUP_ID")
    group.add_argument("--json", action="store_true", help="print the group's body as JSON")

    jobs = command("jobs", commands.jobs, "List recent jobs, newest first.")
    jobs.add_argument("--state", metavar="STATE", help="only jobs in this state")
    jobs.add_argument("--limit", type=_page_size, default=20, help="jobs per page (default: 20)")
    jobs.add_argument("--cursor", metavar="C", help="continue after a page (printed under it)")
    jobs.add_argument(
        "--json", action="store_true", help='print {"jobs": [...], "next_cursor": ...}'
    )

    command(
        "prune",
        commands.prune,
        "Record lost the running jobs whose worker stopped heart-beating, then delete the "
        "records of jobs whose retention has expired.",
    )

    config = command(
        "config",
        show_config,
        "Print the settings in force: the store, the global strategy, the secret key (set or "
        "not), heartbeats, retention and the tracked job classes, after loading --app.",
    )
    config.add_argument("--json", action="store_true", help="print the settings as JSON")

    board = command(
        "dashboard",
        dashboard,
        "Serve the operator's dashboard of the store's jobs (loopback only without a token).",
    )
    board.add_argument(
        "--host", default="127.0.0.1", help="the address to serve on (default: 127.0.0.1)"
    )
    board.add_argument("--port", type=int, default=5555, help="the port (default: 5555)")
    board.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"require this token (default: ${TOKEN_ENV}); needed to serve beyond loopback",
    )

    demo = command(
        "demo",
        commands.demo,
        "Serve the web demo: sample jobs on a real Huey queue, followed live in the browser.",
    )
    demo.add_argument(
        "--host", default="127.0.0.1", help="the address to serve on (default: 127.0.0.1)"
    )
    demo.add_argument(
        "--port", type=int, default=8000, help="the port to serve on (default: 8000; 0: a free one)"
    )
    demo.add_argument(
        "--speed",
        type=_positive,
        metavar="FACTOR",
        help="pace multiplier (default: 1; --smoke: 20); the terminal demo lasts about 13 s at 1",
    )
    mode = demo.add_mutually_exclusive_group()
    mode.add_argument(
        "--smoke",
        action="store_true",
        help="run every sample through the HTTP API on a free port, print how each ended, "
        "exit 0 only if all ended as expected",
    )
    mode.add_argument(
        "--terminal",
        action="store_true",
        help="no server: run the samples in a thread pool with live bars in the terminal",
    )
    return parser
