"""The commands that ask about jobs: ``status``, ``watch``, ``jobs``, ``prune``, and ``demo``.

Each reads its options from the parsed arguments and returns the exit code. Job data reaches the
screen only through :func:`~immortus.watching.safe_text` (plain lines) or rich ``Text`` cells
(:mod:`immortus.terminal`); ``--json`` prints exact JSON, whose escapes keep control characters
inert.
"""

from __future__ import annotations

import argparse
import json
import sys

import immortus
from immortus.cli.app import Origins, setup, sqlite_file
from immortus.cli.codes import EXIT_NOT_OK, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE, fail
from immortus.config import STORE_ENV
from immortus.exceptions import ConfigurationError
from immortus.finder import find_strategy
from immortus.status import JobStatus, State, isoformat
from immortus.store_strategy import StoreStrategy
from immortus.stores.base import Store
from immortus.terminal import LiveBoard, jobs_table, make_console, require_rich
from immortus.validation import check_job_class, check_job_id
from immortus.watching import (
    PlainBoard,
    Target,
    counts_text,
    duration_text,
    elapsed,
    error_text,
    follow,
    history_lines,
    one_line,
    percent_text,
    safe_text,
)

__all__ = [
    "demo",
    "describe",
    "jobs",
    "prepare",
    "prune",
    "refuse_a_missing_store_file",
    "status",
    "watch",
]


def prepare(args: argparse.Namespace) -> Origins:
    """Load the app and apply the command line's settings; return where each came from.

    Raises:
        ConfigurationError: as :func:`immortus.cli.app.setup`.
    """
    return setup(
        app=args.app,
        django_settings=args.django_settings,
        store=args.store,
        strategy=args.strategy,
    )


def refuse_a_missing_store_file() -> None:
    """Refuse to read an SQLite store file that does not exist.

    Opening it would create an empty file wherever a typo pointed, and every job would then look
    "unknown".

    Raises:
        ConfigurationError: the configured store is an SQLite file that does not exist.
    """
    url = immortus.get_config().store
    path = sqlite_file(url) if isinstance(url, str) else None
    if path is not None and not path.exists():
        raise ConfigurationError(
            f"no immortus store at {path}: nothing has been tracked there yet; "
            f"check --store, --app or ${STORE_ENV}"
        )


def _prepare_to_ask(args: argparse.Namespace) -> None:
    """Check the names, load the app; refuse a missing store file if the job's strategy reads it.

    A job answered by its queue or by a strategy of the app's needs no store file.
    """
    _check_names(args)
    prepare(args)
    if isinstance(find_strategy(args.job_class), StoreStrategy):
        refuse_a_missing_store_file()


def _store() -> Store:
    store = immortus.get_store()
    if store is None:  # only when the app or a strategy has disabled store tracking
        raise ConfigurationError("store tracking is disabled; give --store URL")
    return store


def _check_names(args: argparse.Namespace) -> None:
    check_job_id(args.job_id)
    if args.job_class is not None:
        check_job_class(args.job_class)


def describe(status: JobStatus) -> str:
    """Everything ``immortus status`` shows about a job, on one line, safe for a terminal."""
    parts = [status.job_id, status.job_class or "-", status.state.value]
    if status.progress is not None:
        message = status.progress.message
        counts = f"{percent_text(status.progress)} ({counts_text(status.progress)})".lstrip(" ")
        parts.append(counts + (f" {one_line(message)}" if message else ""))
    parts.append(f"attempts {status.attempts}")
    if status.error is not None:
        parts.append(f"error {error_text(status)}")
    for name in ("enqueued_at", "started_at", "finished_at"):
        moment = getattr(status, name)
        if moment is not None:
            parts.append(f"{name.removesuffix('_at')} {isoformat(moment)}")
    if not status.certain:
        parts.append("(uncertain)")
    return safe_text("  ".join(parts))


def status(args: argparse.Namespace) -> int:
    """``immortus status JOB_ID``: one line, or the verify body with ``--json``.

    With ``--history``, the job's past events follow as a timeline (or a ``"history"`` key).
    """
    _prepare_to_ask(args)
    answer = immortus.status(args.job_id, args.job_class, history=args.history)
    known = answer.state is not State.UNKNOWN
    if args.json:
        print(json.dumps(answer.to_dict(history=args.history)))
    elif known:
        print(describe(answer))
        for line in history_lines(answer):
            print(f"  {line}")
    else:
        print(safe_text(f"{answer.job_id}  unknown: nobody has a record of this job"))
    return EXIT_OK if known else EXIT_NOT_OK


def watch(args: argparse.Namespace) -> int:
    """``immortus watch JOB_ID``: follow the job until it completes or ``--timeout`` passes."""
    _prepare_to_ask(args)
    target = Target(args.job_id, args.job_class)
    board = LiveBoard(make_console()) if sys.stdout.isatty() else PlainBoard()
    with board:
        seen = follow([target], board, interval=args.interval, timeout=args.timeout)
    last = seen.get(args.job_id) or JobStatus.unknown(args.job_id, args.job_class)
    job = safe_text(args.job_id)
    if not last.completed:
        message = f"gave up after {args.timeout:g}s: job {job} is still {last.state}"
        return fail(message, EXIT_TIMEOUT)
    took = duration_text(elapsed(last))
    if last.success:
        print(f"job {job} finished" + (f" in {took}" if took else ""))
        return EXIT_OK
    reason = f": {error_text(last)}" if last.error is not None else ""
    print(f"job {job} {last.state}{reason}")
    return EXIT_NOT_OK


def jobs(args: argparse.Namespace) -> int:
    """``immortus jobs``: a page of recent jobs, newest first, as a table or ``--json``."""
    state = None if args.state is None else State.parse(args.state)
    if not args.json:
        require_rich()
    prepare(args)
    refuse_a_missing_store_file()
    page = _store().list_jobs(state=state, limit=args.limit, cursor=args.cursor)
    if args.json:
        listed = [job.to_dict() for job in page.jobs]
        print(json.dumps({"jobs": listed, "next_cursor": page.next_cursor}))
        return EXIT_OK
    console = make_console()
    if page.jobs:
        console.print(jobs_table(page.jobs, width=console.width))
    else:
        console.print("no jobs" + ("" if state is None else f" in state {state}"), markup=False)
    if page.next_cursor is not None:
        options = "" if state is None else f" --state {state}"
        options += "" if args.limit == 20 else f" --limit {args.limit}"
        print(safe_text(f"next page: immortus jobs{options} --cursor {page.next_cursor}"))
    return EXIT_OK


def prune(args: argparse.Namespace) -> int:
    """``immortus prune``: record lost jobs, then delete expired records."""
    prepare(args)
    refuse_a_missing_store_file()
    store = _store()
    lost = store.reap_lost()  # first: a reaped record's retention starts now
    if lost:
        print(f"recorded {lost} job{'' if lost == 1 else 's'} lost: no heartbeat from the worker")
    count = store.prune()
    print(f"pruned {count} expired job record{'' if count == 1 else 's'}")
    return EXIT_OK


def demo(args: argparse.Namespace) -> int:
    """``immortus demo``: the web demo, ``--smoke`` or ``--terminal``; it brings its own app."""
    if args.app or args.django_settings:
        return fail("demo runs its own sample app; it takes no --app", EXIT_USAGE)
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
