"""The terminal demo (``immortus demo --terminal``): real tracked jobs, end to end, no server.

The four samples (:mod:`immortus.demo.samples`) run in a thread pool that plays the queue
(:mod:`immortus.demo.runner`): one succeeds, one fails at 60 %, one fails its first attempt and
succeeds on the retry, and a long one reports meta. Every event goes to a store, by default a
fresh SQLite file in a temporary directory, and the screen follows the jobs by asking
:func:`immortus.status` (through the store, exactly as a web page would), never the runner.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING

import immortus
from immortus.demo.hints import cli_hint, shown_store
from immortus.demo.runner import Runner
from immortus.demo.samples import RETRY_DELAY, SAMPLES, TICK
from immortus.status import JobStatus
from immortus.terminal import LiveBoard, make_console, state_text
from immortus.watching import PlainBoard, Target, counts_text, follow, percent_text

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["run_terminal_demo"]


def run_terminal_demo(
    *, speed: float = 1.0, store: str | None = None, stream: IO[str] | None = None
) -> int:
    """Run the terminal demo; return 0 if every sample job ended as expected, else 1.

    ``store`` is a store URL (default: a new SQLite file in a temporary directory, deleted at
    the end). The screen is live progress bars on a terminal, else one line per change.

    Raises:
        MissingDependency: rich is not installed.
        InvalidStoreURL, StoreUnavailable: the store cannot be opened.
    """
    console = make_console(stream)
    temporary = store is None
    with contextlib.ExitStack() as stack:
        if store is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="immortus-")))
            store = f"sqlite:///{(folder / 'demo.sqlite3').as_posix()}"
        previous = immortus.get_config()
        stack.callback(
            immortus.configure, store=previous.store, progress_interval=previous.progress_interval
        )
        immortus.configure(store=store, progress_interval=TICK / speed)
        immortus.get_store()  # open it now: a bad URL fails before any job runs
        console.print(
            f"[bold]immortus demo[/]: {len(SAMPLES)} tracked jobs, 3 worker threads; each bar "
            "reads its job's status from the store, as a web page would."
        )
        where = " (a temporary file, deleted when the demo ends)" if temporary else ""
        console.print(f"store: {shown_store(store)}{where}", markup=False, highlight=False)
        with Runner(workers=3, retry_delay=RETRY_DELAY / speed) as runner:
            for sample in SAMPLES:
                runner.submit(
                    sample.function,
                    max_attempts=sample.retries + 1,
                    kwargs={"pace": sample.pace / speed},
                )
            watch = runner.submitted[2]
            console.print(
                "from another terminal, while it runs:\n"
                f"  {cli_hint(store, 'jobs')}\n"
                f"  {cli_hint(store, f'watch {watch.job_id}')}",
                markup=False,
                highlight=False,
            )
            targets = [Target(job.job_id, job.job_class, job.job_class) for job in runner.submitted]
            board = LiveBoard(console) if console.is_terminal else PlainBoard(stream, step=25)
            with board:
                final = follow(targets, board, interval=max(0.02, TICK / speed))
        return _report(console, targets, final)


def _report(console: Console, targets: list[Target], final: Mapping[str, JobStatus]) -> int:
    """Print the table of outcomes; return the exit code."""
    from rich.table import Table  # noqa: PLC0415 - make_console() checked that rich is there
    from rich.text import Text  # noqa: PLC0415

    table = Table(
        title="outcome", title_justify="left", header_style="bold", box=None, pad_edge=False
    )
    for name in ("job", "job id", "state", "attempts", "progress", "as expected", "error"):
        table.add_column(name, no_wrap=name != "error")
    surprises = 0
    for sample, target in zip(SAMPLES, targets, strict=True):
        status = final[target.job_id]
        error = status.error and f"{status.error.type.rpartition('.')[2]}: {status.error.message}"
        progress = " ".join(
            filter(None, (percent_text(status.progress), counts_text(status.progress)))
        )
        fine = status.state is sample.expected and status.attempts == sample.attempts
        surprises += not fine
        verdict = (
            Text("yes", "green")
            if fine
            else Text(f"no: expected {sample.expected} after {sample.attempts} attempt(s)", "red")
        )
        table.add_row(
            target.job_class,
            target.job_id[:8],
            state_text(status, attempt=False),
            str(status.attempts),
            progress,
            verdict,
            error or "",
        )
    console.print()
    console.print(table)
    console.print(
        "every job ended as expected"
        if not surprises
        else f"{surprises} job(s) did not end as expected",
        style="green" if not surprises else "red",
    )
    return 0 if not surprises else 1
