"""Hostile arguments to the ``immortus`` command: any argument list, never a crash.

Hypothesis runs ``main(argv)`` in-process for ``status``, ``watch``, ``jobs`` and ``config``
with argument lists mixing the commands' own options with arbitrary text (lone surrogates
included: what Python makes of undecodable bytes in ``sys.argv``), over a real SQLite store in
``tmp_path``.
Each run must return a documented exit code and print no traceback. ``--store``,
``--strategy``, ``--app`` and ``--django-settings`` are never fuzzed: the store must stay the
local file, and a strategy or an app named on the command line is imported by design.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import immortus
from immortus import Progress, lifecycle
from immortus.cli import main
from tests.support import pristine_immortus

JOB_CLASS = "reports.build"
#: The exit codes a working store allows: ok, not ok, usage, --timeout passed.
EXIT_CODES = {0, 1, 2, 4}
#: Importable modules this process has not imported: an argument naming one must not load it.
MODULE_NAMES = ("mailbox", "wave", "xml.dom.minidom", "tabnanny")

FUZZ = settings(
    max_examples=120,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
words = st.one_of(
    any_text,
    st.sampled_from(
        [
            "job-1",
            "done",
            JOB_CLASS,
            "--json",
            "--job-class",
            "--state",
            "--limit",
            "--cursor",
            "--interval",
            "--timeout",
            "--help",
            "--debug",
            "--version",
            "-h",
            "--",
            "-",
            "0",
            "-1",
            "1e309",
            "nan",
            "inf",
            "201",
            "finished",
            "started",
            *MODULE_NAMES,
            *(f"{name}:main" for name in MODULE_NAMES),
        ]
    ),
)


#: The options that name a store or code to import.
UNFUZZED = ("--store", "--strategy", "--app", "--django-settings")


def _names_a_store_or_code(word: str) -> bool:
    """Whether argparse would read ``word`` as one of :data:`UNFUZZED` (or a prefix of one)."""
    option = word.partition("=")[0]
    return len(option) > 2 and any(name.startswith(option) for name in UNFUZZED)


arguments = st.lists(words.filter(lambda word: not _names_a_store_or_code(word)), max_size=6)


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[str]:
    """An SQLite store in ``tmp_path``: ``job-1`` started, ``done`` finished."""
    url = f"sqlite:///{(tmp_path / 'jobs.sqlite3').as_posix()}"
    with pristine_immortus():
        immortus.configure(store=url, progress_interval=0)

        @immortus.track(name=JOB_CLASS)
        def build() -> None: ...

        lifecycle.job_enqueued("job-1", JOB_CLASS)
        lifecycle.job_started("job-1", JOB_CLASS)
        lifecycle.job_progress("job-1", Progress(current=1, total=3, message="one"), JOB_CLASS)
        lifecycle.job_enqueued("done", JOB_CLASS)
        lifecycle.job_finished("done", JOB_CLASS)
        yield url


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> int:
    before = set(sys.modules)
    code = main(argv)
    out, err = capsys.readouterr()
    assert type(code) is int
    assert code in EXIT_CODES, (argv, code, err)
    assert "Traceback" not in out + err
    assert not (set(sys.modules) - before) & set(MODULE_NAMES)
    event(f"exit {code}")  # --hypothesis-show-statistics: how the runs ended
    return code


@FUZZ
@given(args=arguments)
def test_status_with_any_arguments(
    store_url: str, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    _run(capsys, ["--store", store_url, "status", *args])


@FUZZ
@given(args=arguments)
def test_jobs_with_any_arguments(
    store_url: str, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    _run(capsys, ["--store", store_url, "jobs", *args])


@FUZZ
@given(args=arguments)
def test_watch_with_any_arguments_gives_up_in_time(
    store_url: str, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    # Given last, the bounds win over any fuzzed --timeout or --interval; after a fuzzed "--"
    # they are stray positionals, a usage error: either way the command cannot run long.
    _run(capsys, ["--store", store_url, "watch", *args, "--interval", "0.01", "--timeout", "0.05"])


@FUZZ
@given(args=arguments)
def test_config_with_any_arguments(
    store_url: str, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    _run(capsys, ["--store", store_url, "config", *args])
