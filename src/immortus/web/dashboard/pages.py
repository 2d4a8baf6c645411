"""The dashboard's HTML: every value from a job escaped, no inline script or style.

Pages are plain server-rendered HTML that works without JavaScript; ``dashboard.js`` adds live
updates. Each function returns the ``<main>`` of a page; :func:`layout` wraps it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from html import escape
from urllib.parse import quote

from immortus import outbox
from immortus.status import HistoryEntry, JobStatus, State, isoformat
from immortus.web.dashboard.chart import throughput_svg
from immortus.web.dashboard.counts import Counts, queue_of
from immortus.web.dashboard.filters import PERIODS, JobFilter
from immortus.web.dashboard.listing import ListPage

__all__ = ["error_main", "job_main", "layout", "list_main", "overview_main", "row", "rows"]

_STATES = tuple(state for state in State if state is not State.UNKNOWN)
_STATE_VALUES = frozenset(state.value for state in State)


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _when(moment: datetime | None) -> str:
    text = isoformat(moment)
    return "—" if text is None else f'<time datetime="{text}">{text[:19].replace("T", " ")}</time>'


def job_href(prefix: str, job_id: str) -> str:
    """The job page's address (the id percent-encoded)."""
    return f"{prefix}/jobs/{quote(job_id, safe='')}"


def layout(prefix: str, title: str, main: str, *, live: Mapping[str, str] | None = None) -> str:
    """A whole page: header, navigation, ``main`` and the stylesheet and script."""
    data = "".join(f' data-{_e(name)}="{_e(value)}"' for name, value in (live or {}).items())
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · immortus</title>"
        f'<link rel="stylesheet" href="{prefix}/static/dashboard.css">'
        f'<script defer src="{prefix}/static/dashboard.js"></script></head>'
        f'<body data-prefix="{_e(prefix)}"{data}><header class="top"><nav aria-label="Dashboard">'
        f'<a class="brand" href="{prefix}/">immortus</a>'
        f'<a href="{prefix}/">Overview</a><a href="{prefix}/jobs">Jobs</a></nav></header>'
        f'<main id="main">{main}</main></body></html>'
    )


def _badge(state: State) -> str:
    return f'<span class="badge state-{state.value}">{state.value}</span>'


def _table(title: str, counts: Mapping[str, Mapping[State, int]], kind: str, prefix: str) -> str:
    head = "".join(f'<th scope="col">{state.value}</th>' for state in _STATES)
    body = []
    for name, states in counts.items():
        link = f"{prefix}/jobs?{kind}={quote(name, safe='')}" if name != "-" else None
        label = f'<a href="{_e(link)}">{_e(name)}</a>' if link else _e(name)
        cells = "".join(f"<td>{states.get(state, 0)}</td>" for state in _STATES)
        body.append(f'<tr><th scope="row">{label}</th>{cells}</tr>')
    rows_html = "".join(body) or f'<tr><td colspan="{len(_STATES) + 1}">no jobs</td></tr>'
    return (
        f'<section class="card wide"><h2>{_e(title)}</h2><div class="scroll">'
        f'<table><thead><tr><th scope="col">{kind}</th>{head}</tr></thead>'
        f"<tbody>{rows_html}</tbody></table></div></section>"
    )


def overview_main(prefix: str, counts: Counts, csrf: tuple[str, str]) -> str:
    """The overview: counts by state, throughput, losses, outbox backlog, by queue and class."""
    tiles = "".join(
        f'<li class="tile"><a href="{prefix}/jobs?state={state.value}">{_badge(state)}'
        f'<span class="number">{counts.by_state.get(state, 0)}</span></a></li>'
        for state in _STATES
    )
    note = (
        f'<p class="note" role="status">Counts are approximate: read from the {counts.counted} '
        "most recent jobs, because this store keeps no counters.</p>"
        if counts.approximate
        else ""
    )
    stats = outbox.stats()
    ended = sum(bucket.finished + bucket.failed for bucket in counts.buckets)
    failed = sum(bucket.failed for bucket in counts.buckets)
    rate = f"{failed / ended:.0%}" if ended else "—"
    return (
        f"<h1>Overview</h1>{note}"
        f'<section class="card wide"><h2>Jobs by state</h2><ul class="tiles">{tiles}</ul></section>'
        '<div class="grid">'
        f'<section class="card"><h2>Throughput, last hour</h2>{throughput_svg(counts.buckets)}'
        f'<p class="legend"><span class="key key-ok"></span>finished '
        f'<span class="key key-failed"></span>failed, lost or cancelled · failure rate {rate}</p>'
        "</section>"
        f'<section class="card"><h2>Lost in the last hour</h2>'
        f'<p class="number">{counts.lost_last_hour}</p>'
        f'<h2>Outbox backlog</h2><p class="number">{stats.buffered}</p>'
        f'<p class="note">Events held by this dashboard\'s own process only ({stats.dropped} '
        "dropped); each worker reports its own backlog in its metrics.</p></section>"
        f'<section class="card"><h2>Maintenance</h2>'
        f'<form method="post" action="{prefix}/prune">{_hidden(csrf)}'
        '<button type="submit">Prune expired records</button></form></section></div>'
        f"{_table('By queue', counts.by_queue, 'queue', prefix)}"
        f"{_table('By job class', counts.by_class, 'class', prefix)}"
    )


def _hidden(csrf: tuple[str, str]) -> str:
    name, value = csrf
    return f'<input type="hidden" name="{_e(name)}" value="{_e(value)}">'


def _progress(job: JobStatus) -> str:
    if job.progress is None:
        return ""
    percent = job.progress.percent
    label = f"{percent:g} %" if percent is not None else f"{job.progress.current:g}"
    bar = (
        f'<progress max="100" value="{percent:g}" aria-label="progress">{label}</progress>'
        if percent is not None
        else ""
    )
    return f"{bar} {_e(label)}"


def row(prefix: str, job: JobStatus) -> str:
    """One job's row of the list (its ``data-job`` attribute lets the page replace it live)."""
    return (
        f'<tr data-job="{_e(job.job_id)}"><td class="id">'
        f'<a href="{_e(job_href(prefix, job.job_id))}">'
        f'{_e(job.job_id)}</a></td><td data-label="State">{_badge(job.state)}</td>'
        f'<td data-label="Class">{_e(job.job_class or "—")}</td>'
        f'<td data-label="Queue">{_e(queue_of(job.job_class))}</td>'
        f'<td data-label="Progress">{_progress(job) or "—"}</td>'
        f'<td data-label="Enqueued">{_when(job.enqueued_at)}</td></tr>'
    )


def rows(prefix: str, jobs: Iterable[JobStatus]) -> str:
    """The rows of ``jobs``."""
    return "".join(row(prefix, job) for job in jobs)


def _select(name: str, label: str, choices: Sequence[str], chosen: str | None) -> str:
    options = '<option value="">any</option>' + "".join(
        f'<option value="{_e(choice)}"{" selected" if choice == chosen else ""}>'
        f"{_e(choice)}</option>"
        for choice in choices
    )
    return f'<label>{label} <select name="{name}">{options}</select></label>'


def list_main(prefix: str, flt: JobFilter, page: ListPage) -> str:
    """The list: the filter form, the jobs, a link to the next page."""
    form = (
        f'<form class="filters" method="get" action="{prefix}/jobs">'
        f"{_select('state', 'State', [s.value for s in _STATES], flt.state and flt.state.value)}"
        f'<label>Queue <input name="queue" value="{_e(flt.queue or "")}"></label>'
        f'<label>Class <input name="class" value="{_e(flt.job_class or "")}"></label>'
        f"{_select('since', 'Enqueued within', list(PERIODS), flt.since)}"
        f'<label>Job id <input name="id" type="search" value="{_e(flt.job_id or "")}"></label>'
        '<button type="submit">Filter</button></form>'
    )
    body = rows(prefix, page.jobs) or '<tr><td colspan="6">no jobs match</td></tr>'
    table = (
        '<div class="scroll"><table class="jobs"><thead><tr><th scope="col">Job id</th>'
        '<th scope="col">State</th><th scope="col">Class</th><th scope="col">Queue</th>'
        '<th scope="col">Progress</th><th scope="col">Enqueued</th></tr></thead>'
        f'<tbody id="rows">{body}</tbody></table></div>'
    )
    more = ""
    if page.stopped_early:
        more += (
            '<p class="note">Few jobs match: the search stopped early; the next page goes on.</p>'
        )
    if page.next_cursor is not None:
        after = _e(flt.query(cursor=page.next_cursor))
        more += f'<p><a rel="next" href="{prefix}/jobs{after}">Next page</a></p>'
    if flt.cursor is not None:
        more += f'<p><a href="{prefix}/jobs{_e(flt.query(cursor=None))}">First page</a></p>'
    return f'<h1>Jobs</h1><section class="card wide">{form}{table}{more}</section>'


def _event(entry: HistoryEntry) -> str:
    """One history entry as a timeline item: the event, when, the attempt, its error and retry."""
    event = entry.event.value
    label = (
        _badge(State(event))
        if event in _STATE_VALUES
        else f'<span class="event">{_e(event.replace("_", " "))}</span>'
    )
    error = entry.error
    text = f': <span class="error">{_e(error.type)}: {_e(error.message)}</span>' if error else ""
    retry = f" — next attempt due {_when(entry.retry_at)}" if entry.retry_at is not None else ""
    attempt = f" · attempt {_e(entry.attempt)}" if entry.attempt else ""
    return f"<li>{label} {_when(entry.at)}{attempt}{text}{retry}</li>"


def _timeline(job: JobStatus) -> str:
    """The job's history (oldest first) as a timeline; its record's times when it has none."""
    items = [_event(entry) for entry in job.history]
    if not items:
        for label, moment in (
            ("enqueued", job.enqueued_at),
            (f"attempt {job.attempts} started", job.started_at),
            (job.state.value, job.finished_at),
        ):
            if moment is not None:
                items.append(f"<li>{_when(moment)} {_e(label)}</li>")
    return f'<ol class="timeline">{"".join(items) or "<li>nothing recorded yet</li>"}</ol>'


def job_main(prefix: str, job: JobStatus, csrf: tuple[str, str]) -> str:
    """One job: the record, progress, meta, the attempts, the error with its traceback.

    A job not yet ended has a cancel button (a form carrying the ``csrf`` field).
    """
    fields = [
        ("State", _badge(job.state) + ("" if job.certain else " (uncertain)")),
        ("Class", _e(job.job_class or "—")),
        ("Queue", _e(queue_of(job.job_class))),
        ("Attempts", _e(job.attempts)),
        ("Progress", _progress(job) or "—"),
        ("Progress message", _e(job.progress.message or "—") if job.progress else "—"),
        ("Enqueued", _when(job.enqueued_at)),
        ("Started", _when(job.started_at)),
        ("Finished", _when(job.finished_at)),
        ("Updated", _when(job.updated_at)),
    ]
    record = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in fields)
    meta = "".join(f"<dt>{_e(key)}</dt><dd>{_e(value)}</dd>" for key, value in job.meta.items())
    error = ""
    if job.error is not None:
        trace = job.error.traceback
        error = (
            f'<section class="card wide"><h2>Error</h2><p class="error">{_e(job.error.type)}: '
            f"{_e(job.error.message)}</p>"
            + (f'<pre class="trace" tabindex="0">{_e(trace)}</pre>' if trace else "")
            + "</section>"
        )
    cancel = (
        ""
        if job.completed
        else f'<form method="post" action="{_e(job_href(prefix, job.job_id))}/cancel">'
        f'{_hidden(csrf)}<button type="submit">Cancel this job</button></form>'
    )
    return (
        f'<h1>Job <span class="id">{_e(job.job_id)}</span></h1>{cancel}<div class="grid">'
        f'<section class="card"><h2>Record</h2><dl>{record}</dl></section>'
        f'<section class="card"><h2>Attempts</h2>{_timeline(job)}</section>'
        f'<section class="card"><h2>Meta</h2><dl>{meta or "<dt>none</dt><dd>—</dd>"}</dl></section>'
        f"</div>{error}"
    )


def error_main(title: str, message: str) -> str:
    """An error page's body; ``message`` is escaped."""
    return f'<h1>{_e(title)}</h1><section class="card wide"><p>{_e(message)}</p></section>'
