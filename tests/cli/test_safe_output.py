"""Job data never drives the terminal: every printer shows hostile text as inert characters.

Job ids, classes, progress messages, errors and meta come from jobs and stores, not from the
person at the terminal. Printed by ``status``, ``watch`` (plain and live), ``jobs`` and the
error messages, no escape sequence, C1 control, bidirectional override or lone surrogate may
reach the screen, and rich markup in them is shown, never interpreted. ``--json`` stays exact
JSON (its escapes keep control characters inert).
"""

from __future__ import annotations

import io
import json
import sys
import unicodedata
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

import immortus
from immortus import lifecycle
from immortus.cli import describe
from immortus.status import JobError, JobStatus, Progress, State
from immortus.terminal import LiveBoard, jobs_table
from immortus.watching import PlainBoard, Target, safe_text
from tests.cli.helpers import JOB_CLASS, failed, run

#: Pieces an attacker would put in a job's text.
HOSTILE = [
    "\x1b[2J",  # clear the screen
    "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\",  # an OSC 8 hyperlink
    "\x1b]0;new title\x07",  # set the window title
    "\x9b31m",  # C1 CSI: red, without ESC
    "\x85",  # C1 next line
    "\u202e",  # right-to-left override
    "\u2066",  # left-to-right isolate
    "\x7f\x08\x07",  # DEL, backspace, bell
    "\r\n\t\v\f\u2028",
    "[link=http://x]y[/link]",
    "[bold red]",
    "[/]",
    ":thumbs_up:",
    "é漢字👍",
]
#: Characters that must never be printed (line feeds between lines aside).
BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
MARKUP_ID = "[link=http://x]y[/link]"

hostile = st.lists(
    st.one_of(st.sampled_from(HOSTILE), st.text(max_size=4)), min_size=1, max_size=4
).map("".join)
#: What validation lets through as a job id: printable, so only markup can be hostile.
printable_ids = (
    st.lists(st.sampled_from(["[link=http://x]", "y", "[/link]", "[bold]", "[", "]", "\\", "é"]))
    .map("".join)
    .filter(lambda text: bool(text) and text == text.strip())
)
PROPERTY = settings(
    max_examples=80,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def assert_inert(output: str) -> None:
    """No character in ``output`` is one a terminal acts on (apart from line feeds)."""
    for char in output:
        assert char == "\n" or unicodedata.category(char) not in {"Cc", "Cs"}, repr(char)
        assert char not in BIDI, repr(char)


def hostile_status(job_id: str, text: str) -> JobStatus:
    moment = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    return JobStatus(
        job_id=job_id,
        state=State.FAILED,
        job_class=text[:255],
        progress=Progress(current=1, total=2, message=text),
        error=JobError(type=text, message=text),
        attempts=2,
        enqueued_at=moment,
        updated_at=moment,
        meta={text: text},
    )


def test_safe_text_shows_what_it_holds() -> None:
    assert safe_text("plain text, é漢字👍 [b]kept[/b]") == "plain text, é漢字👍 [b]kept[/b]"
    assert safe_text("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert safe_text("\x9b31m\x7f\u202eevil\u2066") == "\\x9b31m\\x7f\\u202eevil\\u2066"
    assert safe_text("line\r\nnext\ttab\x85\u2028") == "line  next tab  "
    assert safe_text("lone \ud800") == "lone \\ud800"
    assert safe_text(safe_text("\x1b")) == "\\x1b"  # escaping twice changes nothing more


@PROPERTY
@given(job_id=st.one_of(printable_ids, hostile), text=hostile)
def test_every_printer_prints_hostile_text_inert(job_id: str, text: str) -> None:
    status = hostile_status(job_id, text)
    line = describe(status)
    assert_inert(line)
    assert "\n" not in line
    plain = io.StringIO()
    PlainBoard(plain).show(Target(job_id, label=text), status)
    PlainBoard(plain).show(Target(job_id), replace(status, state=State.RETRYING))
    assert_inert(plain.getvalue())
    screen = io.StringIO()
    console = Console(file=screen, width=400, color_system=None)
    console.print(jobs_table([status, JobStatus.unknown(job_id)]))
    with LiveBoard(console) as board:
        board.show(Target(job_id), status)
        board.note(text)
    assert_inert(screen.getvalue())
    if job_id.isprintable():
        assert safe_text(job_id) in screen.getvalue()  # markup shown as typed


def test_a_markup_job_id_is_no_link_on_a_colour_terminal() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=160, color_system="truecolor")
    status = hostile_status(MARKUP_ID, "[link=http://x]y[/link]")
    console.print(jobs_table([status]))
    with LiveBoard(console) as board:
        board.show(Target(MARKUP_ID), status)
    output = screen.getvalue()
    assert "\x1b]8;" not in output  # rich writes a hyperlink as OSC 8
    assert MARKUP_ID in output


def test_argument_errors_are_inert(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "status", "job-1", "\x1b]0;pwned\x07", "--\u202eevil")
    assert (code, out) == (2, "")
    assert "unrecognized arguments: \\x1b]0;pwned\\x07 --\\u202eevil" in err
    assert_inert(err)


@pytest.fixture
def hostile_jobs(url: str) -> str:
    """Jobs whose ids are markup and whose messages, meta and errors are hostile."""
    message = "".join(HOSTILE)
    lifecycle.job_enqueued(MARKUP_ID, JOB_CLASS)
    with immortus.running(MARKUP_ID, JOB_CLASS, attempt=1):
        immortus.progress(1, 2, message[:1000])
        immortus.update_meta(note=message)
    failed("[bold]broken[/bold]", message)
    return url


@pytest.mark.parametrize(
    "argv",
    [
        ["status", MARKUP_ID],
        ["status", "[bold]broken[/bold]"],
        ["watch", MARKUP_ID],
        ["watch", "[bold]broken[/bold]"],
        ["jobs"],
    ],
)
def test_the_commands_print_hostile_jobs_inert(
    hostile_jobs: str, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = run(capsys, "--store", hostile_jobs, *argv)
    assert code in {0, 1}
    assert_inert(out + err)
    assert "\\x1b[2J" in out
    assert MARKUP_ID in out or "[bold]broken[/bold]" in out


def test_json_stays_exact(hostile_jobs: str, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["status", "--json", "[bold]broken[/bold]"], ["jobs", "--json"]):
        code, out, _ = run(capsys, "--store", hostile_jobs, *argv)
        assert code == 0
        assert_inert(out)
        body = json.loads(out)
        jobs = body.get("jobs", [body])
        assert [immortus.status(job["job_id"]).to_dict() for job in jobs] == jobs


def test_an_error_message_is_inert(
    url: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "hostile_app.py").write_text(f"raise RuntimeError({''.join(HOSTILE)!r})\n")
    monkeypatch.syspath_prepend(tmp_path)
    try:
        code, _, err = run(capsys, "--app", "hostile_app", "--store", url, "status", "x")
    finally:
        sys.modules.pop("hostile_app", None)
    assert code == 2
    assert "cannot load the app 'hostile_app': RuntimeError: \\x1b[2J" in err
    assert_inert(err)
