"""Job statuses drawn with rich (the ``cli`` extra): live progress bars and tables.

Every cell is a rich ``Text`` built from :func:`~immortus.watching.safe_text`, never a markup
string: a job id like ``[link=http://x]y[/link]`` prints as those characters, not as a link.

Used by ``immortus watch``, ``jobs`` and ``demo`` (:mod:`immortus.cli`); rich is imported when a
drawing function is first called. Plain text and the polling loop live in
:mod:`immortus.watching`, which needs only the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, Final

from immortus.exceptions import MissingDependency
from immortus.status import JobStatus, State
from immortus.watching import (
    Target,
    ago_text,
    counts_text,
    detail,
    duration_text,
    elapsed,
    error_text,
    percent_text,
    safe_text,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import Task, TaskID
    from rich.table import Table
    from rich.text import Text

__all__ = ["STATE_STYLES", "LiveBoard", "jobs_table", "make_console", "require_rich", "state_text"]

#: The colour of each state, in rich's style syntax.
STATE_STYLES: Final = {
    State.CREATED: "blue",
    State.STARTED: "cyan",
    State.RETRYING: "yellow",
    State.FINISHED: "green",
    State.FAILED: "red",
    State.CANCELLED: "magenta",
    State.LOST: "red",
    State.UNKNOWN: "bright_black",
}

# -- rich --------------------------------------------------------------------------------------


def require_rich() -> None:
    """Raise :class:`MissingDependency` with the pip command when rich is not installed."""
    try:
        import rich  # noqa: F401, PLC0415
    except ImportError as exc:
        raise MissingDependency("rich", "cli") from exc


def make_console(stream: IO[str] | None = None) -> Console:
    """Return a rich console; off a terminal it is wide, so tables and ids are not cut."""
    require_rich()
    from rich.console import Console  # noqa: PLC0415

    console = Console(file=stream, highlight=False)
    if not console.is_terminal:
        console = Console(file=stream, highlight=False, width=max(console.width, 160))
    return console


def state_text(status: JobStatus, *, attempt: bool = True) -> Text:
    """The state, coloured, with the attempt number from the second attempt (``attempt``)."""
    from rich.text import Text  # noqa: PLC0415

    text = Text(status.state.value, style=STATE_STYLES[status.state])
    if attempt and status.attempts > 1:
        text.append(f" #{status.attempts}", style="dim")
    return text


class LiveBoard:
    """One live progress bar per job, redrawn in place; a context manager."""

    def __init__(self, console: Console | None = None) -> None:
        require_rich()
        from rich.progress import Progress as RichProgress  # noqa: PLC0415
        from rich.progress import ProgressColumn  # noqa: PLC0415
        from rich.progress_bar import ProgressBar  # noqa: PLC0415
        from rich.table import Column  # noqa: PLC0415

        class Cell(ProgressColumn):
            def __init__(self, key: str, column: Column | None = None) -> None:
                super().__init__(column)
                self.key = key

            def render(self, task: Task) -> Text:
                cell: Text = task.fields[self.key]
                return cell

        class Bar(ProgressColumn):
            def render(self, task: Task) -> ProgressBar:
                style = STATE_STYLES[task.fields["state"]]
                total, done = task.fields["bar"]
                return ProgressBar(
                    total=total,
                    completed=done,
                    width=30,
                    pulse=total is None,
                    animation_time=task.get_time(),
                    complete_style=style,
                    finished_style=style,
                )

        self._progress: RichProgress = RichProgress(
            Cell("name", Column(no_wrap=True, max_width=24, overflow="ellipsis")),
            Cell("state_text", Column(no_wrap=True, min_width=11)),
            Bar(),
            Cell("percent", Column(justify="right", no_wrap=True, min_width=4)),
            Cell("counts", Column(justify="right", no_wrap=True)),
            Cell("elapsed", Column(justify="right", no_wrap=True, min_width=6)),
            Cell("detail", Column(no_wrap=True, overflow="ellipsis", ratio=1, min_width=16)),
            console=console,
            expand=True,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> LiveBoard:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def show(self, target: Target, status: JobStatus) -> None:
        """Redraw the job's bar (its row is added the first time)."""
        from rich.text import Text  # noqa: PLC0415

        progress = status.progress
        bar: tuple[float | None, float] = (1, 0)
        if progress is not None:
            bar = (progress.total, progress.current)
        elif status.state is State.FINISHED:
            bar = (1, 1)
        elif status.state in {State.STARTED, State.RETRYING}:
            bar = (None, 0)
        fields: dict[str, Any] = {
            "name": Text(safe_text(target.name), style="bold"),
            "state": status.state,
            "state_text": state_text(status),
            "bar": bar,
            "percent": Text(percent_text(progress)),
            "counts": Text(counts_text(progress), style="dim"),
            "elapsed": Text(duration_text(elapsed(status)), style="dim"),
            "detail": Text(detail(status), style=_DETAIL_STYLES.get(status.state, "")),
        }
        task = self._tasks.get(target.job_id)
        if task is None:
            self._tasks[target.job_id] = self._progress.add_task(target.name, **fields)
        else:
            self._progress.update(task, **fields)

    def note(self, text: str) -> None:
        """Print ``text`` above the bars."""
        from rich.text import Text  # noqa: PLC0415

        self._progress.console.print(Text(safe_text(text), style="yellow"))


_DETAIL_STYLES: Final = {State.FAILED: "red", State.LOST: "red", State.RETRYING: "yellow"}
#: The narrowest the error column of :func:`jobs_table` gets, however wide the others are.
_MIN_ERROR_WIDTH: Final = 8


def jobs_table(
    statuses: Sequence[JobStatus], now: datetime | None = None, *, width: int | None = None
) -> Table:
    """The table ``immortus jobs`` prints: id, class, state, progress, attempts, updated, error.

    The error (``type: message``) is cut with an ellipsis to fit in ``width`` columns (the
    console's width) beside the others.
    """
    require_rich()
    from rich.cells import cell_len  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    headers = ("job id", "class", "state", "progress", "attempts", "updated")
    rows: list[tuple[Text, ...]] = []
    for status in statuses:
        progress = " ".join(
            filter(None, (percent_text(status.progress), counts_text(status.progress)))
        )
        rows.append(
            (
                Text(safe_text(status.job_id)),
                Text(safe_text(status.job_class or "-")),
                state_text(status),
                Text(progress or "-"),
                Text(str(status.attempts)),
                Text(ago_text(status.updated_at, now)),
                Text(error_text(status) or "-", style="red" if status.error else ""),
            )
        )
    error_width = None
    if width is not None:
        used = sum(
            max([cell_len(header)] + [cell_len(row[number].plain) for row in rows])
            for number, header in enumerate(headers)
        )
        error_width = max(_MIN_ERROR_WIDTH, width - used - 2 * len(headers))
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header in headers:
        numeric = header in {"progress", "attempts", "updated"}
        table.add_column(header, no_wrap=True, justify="right" if numeric else "left")
    table.add_column("error", no_wrap=True, overflow="ellipsis", max_width=error_width)
    for row in rows:
        table.add_row(*row)
    return table
