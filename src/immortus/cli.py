"""The ``immortus`` command: ask about jobs from a shell, watch one live, run the demo.

It asks exactly what a web page asks (:func:`immortus.status`, through the job's strategy) and
lists and prunes through the configured store. The store is ``--store URL``, else the
``IMMORTUS_STORE`` environment variable, else ``sqlite:///immortus.sqlite3``. Output meant for
programs (``--json``, and every line when standard output is not a terminal) needs no extra;
the progress bars and tables need rich (``pip install "immortus[cli]"``).

The exit codes are listed in :data:`EPILOG`, which ``--help`` prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import immortus
from immortus.config import DEFAULT_STORE_URL, STORE_ENV
from immortus.exceptions import (
    ConfigurationError,
    ImmortusError,
    InvalidInput,
    StoreUnavailable,
)
from immortus.status import JobStatus, State, isoformat
from immortus.stores.base import MAX_PAGE_SIZE, Store
from immortus.terminal import LiveBoard, jobs_table, make_console, require_rich
from immortus.validation import check_job_class, check_job_id
from immortus.watching import (
    PlainBoard,
    Target,
    counts_text,
    duration_text,
    elapsed,
    follow,
    one_line,
    percent_text,
)

__all__ = ["EPILOG", "build_parser", "describe", "main"]

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
  0    status: the job is known; watch: it finished; jobs, prune: done;
       demo: stopped by Ctrl-C; demo --smoke/--terminal: every job ended as
       expected
  1    status: nobody has a record of the job; watch: it failed, was cancelled
       or was lost; demo --smoke/--terminal: a job did not end as expected
  2    bad input or set-up: a malformed job id, cursor or --limit, an unknown
       state, a bad store URL or strategy, rich missing for a drawing command,
       a demo extra missing, the demo's port in use
  3    the store cannot be reached (watch retries a few times, backing off)
  4    watch: --timeout passed before the job completed
  5    the tracking strategy raised, or a stored record cannot be decoded
  130  interrupted (Ctrl-C)
"""


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


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``immortus`` command."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="immortus",
        description="Ask about tracked background jobs, watch one live, or run the demo.",
        epilog=EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"immortus {immortus.__version__}")
    store_help = f"the store URL (default: ${STORE_ENV}, else {DEFAULT_STORE_URL})"
    parser.add_argument("--store", metavar="URL", help=store_help)
    parser.add_argument(
        "--strategy",
        metavar="NAME",
        help='the global tracking strategy: a registered name or "package.module:Class"',
    )
    # ``--store`` is also accepted after the command; SUPPRESS keeps the global one otherwise.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", metavar="URL", default=argparse.SUPPRESS, help=store_help)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(
        name: str, run: Callable[[argparse.Namespace], int], text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=text,
            description=text,
            epilog=EPILOG,
            formatter_class=formatter,
            parents=[common],
        )
        sub.set_defaults(run=run)
        return sub

    status = command("status", _status, "Print what is known about one job.")
    status.add_argument("job_id", metavar="JOB_ID")
    status.add_argument(
        "--job-class", metavar="NAME", help="the job's class (selects its strategy)"
    )
    status.add_argument("--json", action="store_true", help="print the verify body as JSON")

    watch = command("watch", _watch, "Follow one job with a live progress bar until it completes.")
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

    jobs = command("jobs", _jobs, "List recent jobs, newest first.")
    jobs.add_argument("--state", metavar="STATE", help="only jobs in this state")
    jobs.add_argument("--limit", type=_page_size, default=20, help="jobs per page (default: 20)")
    jobs.add_argument("--cursor", metavar="C", help="continue after a page (printed under it)")
    jobs.add_argument(
        "--json", action="store_true", help='print {"jobs": [...], "next_cursor": ...}'
    )

    command(
        "prune",
        _prune,
        "Record lost the running jobs whose worker stopped heart-beating, then delete the "
        "records of jobs whose retention has expired.",
    )

    demo = command(
        "demo",
        _demo,
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
        return _error("interrupted", EXIT_INTERRUPTED)
    except StoreUnavailable as exc:
        return _error(f"the store is unavailable: {exc}", EXIT_UNAVAILABLE)
    except (InvalidInput, ConfigurationError) as exc:
        return _error(str(exc), EXIT_USAGE)
    except ImmortusError as exc:
        return _error(str(exc), EXIT_FAILURE)


def _error(message: str, code: int) -> int:
    print(f"immortus: {message}", file=sys.stderr)
    return code


def _configure(args: argparse.Namespace) -> None:
    url = args.store or os.environ.get(STORE_ENV) or DEFAULT_STORE_URL
    _refuse_missing_sqlite_file(url)
    settings: dict[str, object] = {"store": url}
    if args.strategy:
        settings["strategy"] = args.strategy
    immortus.configure(**settings)


def _refuse_missing_sqlite_file(url: str) -> None:
    """Refuse to read an SQLite store that does not exist.

    Opening it would create an empty file wherever a typo pointed, and every job would then look
    "unknown"; the commands that configure through here only read (or prune) a store.
    """
    scheme, _, rest = url.partition("://")
    if scheme.lower() != "sqlite" or not rest.startswith("/") or ":memory:" in rest:
        return  # not a plain SQLite file URL: the store itself validates it
    path = Path(rest[1:]).resolve()
    if not path.exists():
        raise ConfigurationError(
            f"no immortus store at {path}: nothing has been tracked there yet; "
            f"check --store or ${STORE_ENV}"
        )


def _store() -> Store:
    store = immortus.get_store()
    if store is None:  # only when a configured strategy has disabled store tracking
        raise ConfigurationError("store tracking is disabled; give --store URL")
    return store


def _check_names(args: argparse.Namespace) -> None:
    check_job_id(args.job_id)
    if args.job_class is not None:
        check_job_class(args.job_class)


def describe(status: JobStatus) -> str:
    """Everything ``immortus status`` shows about a job, on one line."""
    parts = [status.job_id, status.job_class or "-", status.state.value]
    if status.progress is not None:
        message = status.progress.message
        counts = f"{percent_text(status.progress)} ({counts_text(status.progress)})".lstrip(" ")
        parts.append(counts + (f" {one_line(message)}" if message else ""))
    parts.append(f"attempts {status.attempts}")
    if status.error is not None:
        parts.append(f"error {status.error.type}: {one_line(status.error.message)}")
    for name in ("enqueued_at", "started_at", "finished_at"):
        moment = getattr(status, name)
        if moment is not None:
            parts.append(f"{name.removesuffix('_at')} {isoformat(moment)}")
    if not status.certain:
        parts.append("(uncertain)")
    return "  ".join(parts)


def _status(args: argparse.Namespace) -> int:
    _check_names(args)
    _configure(args)
    status = immortus.status(args.job_id, args.job_class)
    known = status.state is not State.UNKNOWN
    if args.json:
        print(json.dumps(status.to_dict()))
    elif known:
        print(describe(status))
    else:
        print(f"{status.job_id}  unknown: nobody has a record of this job")
    return EXIT_OK if known else EXIT_NOT_OK


def _watch(args: argparse.Namespace) -> int:
    _check_names(args)
    _configure(args)
    target = Target(args.job_id, args.job_class)
    board = LiveBoard(make_console()) if sys.stdout.isatty() else PlainBoard()
    with board:
        seen = follow([target], board, interval=args.interval, timeout=args.timeout)
    status = seen.get(args.job_id) or JobStatus.unknown(args.job_id, args.job_class)
    if not status.completed:
        message = f"gave up after {args.timeout:g}s: job {args.job_id} is still {status.state}"
        return _error(message, EXIT_TIMEOUT)
    took = duration_text(elapsed(status))
    if status.success:
        print(f"job {args.job_id} finished" + (f" in {took}" if took else ""))
        return EXIT_OK
    reason = "" if status.error is None else f": {status.error.type}: {status.error.message}"
    print(f"job {args.job_id} {status.state}{reason}")
    return EXIT_NOT_OK


def _jobs(args: argparse.Namespace) -> int:
    state = None if args.state is None else State.parse(args.state)
    if not args.json:
        require_rich()
    _configure(args)
    page = _store().list_jobs(state=state, limit=args.limit, cursor=args.cursor)
    if args.json:
        jobs = [status.to_dict() for status in page.jobs]
        print(json.dumps({"jobs": jobs, "next_cursor": page.next_cursor}))
        return EXIT_OK
    console = make_console()
    if page.jobs:
        console.print(jobs_table(page.jobs))
    else:
        console.print("no jobs" + ("" if state is None else f" in state {state}"))
    if page.next_cursor is not None:
        options = "" if state is None else f" --state {state}"
        options += "" if args.limit == 20 else f" --limit {args.limit}"
        print(f"next page: immortus jobs{options} --cursor {page.next_cursor}")
    return EXIT_OK


def _prune(args: argparse.Namespace) -> int:
    _configure(args)
    store = _store()
    lost = store.reap_lost()  # first: a reaped record's retention starts now
    if lost:
        print(f"recorded {lost} job{'' if lost == 1 else 's'} lost: no heartbeat from the worker")
    count = store.prune()
    print(f"pruned {count} expired job record{'' if count == 1 else 's'}")
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    # The demo's modules load only here: they bring in the sample jobs, Huey, Starlette, uvicorn.
    if args.strategy:
        immortus.configure(strategy=args.strategy)
    if args.terminal:
        from immortus.demo.terminal import run_terminal_demo  # noqa: PLC0415

        return run_terminal_demo(speed=args.speed or 1.0, store=args.store)
    if args.smoke:
        from immortus.demo.smoke import SMOKE_SPEED, run_smoke  # noqa: PLC0415

        return run_smoke(speed=args.speed or SMOKE_SPEED, store=args.store)
    from immortus.demo.server import run_web_demo  # noqa: PLC0415

    return run_web_demo(host=args.host, port=args.port, store=args.store, speed=args.speed or 1.0)
