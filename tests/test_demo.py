"""The terminal demo (``immortus demo --terminal``): run for real, and its little queue."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import immortus
from immortus.cli import main
from immortus.config import STORE_ENV
from immortus.demo.pacing import pause
from immortus.demo.runner import Runner
from immortus.demo.samples import SAMPLES
from immortus.jobs import job_class_of
from immortus.status import State

SRC = str(Path(immortus.__file__).resolve().parents[1])
EXPECTED = {
    "demo.import_rows": ("finished", "1"),
    "demo.resize_images": ("failed", "1"),
    "demo.build_report": ("finished", "1"),
    "demo.fetch_rates": ("finished", "2"),
}


@pytest.fixture(autouse=True)
def _reset_config() -> Iterator[None]:
    yield
    immortus.config.reset()


def run_demo(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop(STORE_ENV, None)
    return subprocess.run(
        [sys.executable, "-m", "immortus", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def outcome_rows(output: str) -> dict[str, list[str]]:
    """The rows of the final table, by job class."""
    lines = [line.rstrip() for line in output.splitlines()]
    table = lines[lines.index("outcome") + 1 :]
    return {row.split()[0]: row.split() for row in table if row.split()[:1] != ["job"] and row}


def test_the_samples_are_the_documented_ones() -> None:
    assert {job_class_of(sample.function) for sample in SAMPLES} == set(EXPECTED)
    for sample in SAMPLES:
        assert sample.job_class == job_class_of(sample.function)
        assert (sample.expected.value, str(sample.attempts)) == EXPECTED[sample.job_class]


@pytest.mark.slow
def test_demo_runs_every_job_to_its_expected_end() -> None:
    result = run_demo("demo", "--terminal", "--speed", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    rows = outcome_rows(result.stdout)
    for job_class, (state, attempts) in EXPECTED.items():
        row = rows[job_class]
        assert row[2:4] == [state, attempts], row
        assert row[6] == "yes", row  # after the two words of progress
    assert "CorruptImage: photo_031.jpg is truncated" in " ".join(rows["demo.resize_images"])
    assert "every job ended as expected" in result.stdout
    for job_class in EXPECTED:  # the board followed every job (its lines depend on timing)
        assert f"] {job_class}  " in result.stdout


@pytest.mark.slow
def test_demo_writes_to_the_store_it_is_given(tmp_path: Path) -> None:
    url = f"sqlite:///{(tmp_path / 'demo.sqlite3').as_posix()}"
    result = run_demo("--store", url, "demo", "--terminal", "--speed", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"store: {url}" in result.stdout
    immortus.configure(store=url)
    store = immortus.get_store()
    assert store is not None
    jobs = store.list_jobs().jobs
    found = {job.job_class: (job.state.value, str(job.attempts)) for job in jobs}
    assert found == EXPECTED
    report = next(job for job in jobs if job.job_class == "demo.build_report")
    assert report.meta == {"stage": "done", "pages": 50, "path": "reports/2026-Q3.pdf"}


def test_demo_refuses_a_bad_store(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--terminal", "--store", "nope://x"]) == 2
    assert main(["demo", "--terminal", "--store", "redis://127.0.0.1:1/0"]) == 3
    err = capsys.readouterr().err
    assert "no store handles nope://" in err
    assert "Traceback" not in err


@immortus.track(name="tests.demo.sleeper")
def sleeper(seconds: float) -> None:
    pause(seconds)


def test_stopping_the_runner_cancels_running_and_waiting_jobs() -> None:
    immortus.configure(store="memory://")
    runner = Runner(workers=1)
    running = runner.submit(sleeper, kwargs={"seconds": 60})
    waiting = runner.submit(sleeper, kwargs={"seconds": 60})
    while immortus.status(running.job_id).state is not State.STARTED:
        time.sleep(0.01)
    runner.close(cancel=True)  # what leaving its with block by Ctrl-C does
    assert immortus.status(running.job_id).state is State.CANCELLED
    assert immortus.status(waiting.job_id).state is State.CANCELLED
    assert immortus.status(waiting.job_id).attempts == 0


def test_the_demo_never_prints_a_store_password() -> None:
    from immortus.demo.hints import cli_hint, shown_store

    url = "redis://:s3cret@127.0.0.1:6379/0"  # a fake password to hide
    assert "s3cret" not in shown_store(url)
    assert cli_hint(url, "jobs") == 'immortus --store "$IMMORTUS_STORE" jobs'
    assert cli_hint("sqlite:///tmp/a b.sqlite3", "jobs") == (
        "immortus --store 'sqlite:///tmp/a b.sqlite3' jobs"
    )
