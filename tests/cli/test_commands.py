"""The ``immortus`` command, run in-process with ``main([...])`` and, for ``watch``, as a process.

Every test works on a SQLite file in ``tmp_path`` filled through the public API, exactly as a
worker would fill it.
"""

from __future__ import annotations

import io
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import immortus
from immortus import lifecycle
from immortus.cli import main
from immortus.config import STORE_ENV
from immortus.status import JobStatus, Progress
from immortus.terminal import LiveBoard
from immortus.watching import (
    Target,
    ago_text,
    counts_text,
    duration_text,
    follow,
    one_line,
    percent_text,
)
from tests.cli.helpers import JOB_CLASS, SRC, WAIT, failed, finished, run, started
from tests.services import RedisServer

UNREACHABLE = "redis://127.0.0.1:1/0"


class Exploding:
    """A strategy (by import path) whose status question raises."""

    def completed(self, job_id: str) -> bool:
        raise RuntimeError("the backend exploded")


# -- status ------------------------------------------------------------------------------------


def test_status_of_a_started_job(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    started("job-1")
    code, out, _ = run(capsys, "--store", url, "status", "job-1")
    assert code == 0
    assert out.count("\n") == 1
    for part in ("job-1", JOB_CLASS, "started", "37% (37/100) row 37", "attempts 1", "enqueued 20"):
        assert part in out


def test_status_json_is_the_verify_body(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    started("job-1")
    code, out, _ = run(capsys, "--store", url, "status", "job-1", "--json")
    assert code == 0
    body = json.loads(out)
    assert body == immortus.status("job-1").to_dict()
    assert body["status"] == "started"
    assert body["progress"] == {"current": 37, "total": 100, "percent": 37.0, "message": "row 37"}


def test_status_of_finished_and_failed_jobs(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    finished("done")
    failed("broken")
    code, out, _ = run(capsys, "--store", url, "status", "done")
    assert code == 0
    assert "finished" in out
    assert "100% (10/10) all rows" in out
    code, out, _ = run(capsys, "--store", url, "status", "broken")
    assert code == 0
    assert "failed" in out
    assert "error ValueError: boom" in out
    code, out, _ = run(capsys, "--store", url, "status", "broken", "--json")
    body = json.loads(out)
    assert (code, body["status"], body["success"]) == (0, "failed", False)
    assert body["error"] == {"type": "ValueError", "message": "boom"}


def test_status_of_an_unknown_job(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--store", url, "status", "nobody")
    assert code == 1
    assert "unknown" in out
    code, out, _ = run(capsys, "--store", url, "status", "nobody", "--json")
    assert code == 1
    assert json.loads(out)["status"] == "unknown"


DUE = datetime(2030, 1, 1, tzinfo=UTC)


def _retried_then_failed(job_id: str, message: str = "slow") -> None:
    lifecycle.job_enqueued(job_id, JOB_CLASS)
    lifecycle.job_started(job_id, JOB_CLASS, attempt=1)
    lifecycle.job_retrying(job_id, TimeoutError(message), JOB_CLASS, attempt=1, retry_at=DUE)
    lifecycle.job_started(job_id, JOB_CLASS, attempt=2)
    lifecycle.job_failed(job_id, ValueError("bad row"), JOB_CLASS, attempt=2)


def test_status_history_prints_the_timeline(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    _retried_then_failed("job-h")
    code, out, _ = run(capsys, "--store", url, "status", "job-h", "--history")
    assert code == 0
    first, *timeline = out.splitlines()
    assert "failed" in first
    assert "error ValueError: bad row" in first
    assert [line.split()[1:4] for line in timeline] == [
        ["enqueued", "attempt", "0"],
        ["started", "attempt", "1"],
        ["retrying", "attempt", "1"],
        ["started", "attempt", "2"],
        ["failed", "attempt", "2"],
    ]
    assert "TimeoutError: slow  retry at 2030-01-01T00:00:00.000Z" in timeline[2]
    assert timeline[4].endswith("ValueError: bad row")
    code, out, _ = run(capsys, "--store", url, "status", "job-h")
    assert out.count("\n") == 1  # no history unless asked


def test_status_history_is_inert(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    _retried_then_failed("job-h", "\x1b[2J\u202eevil\nline")
    code, out, _ = run(capsys, "--store", url, "status", "job-h", "--history")
    assert code == 0
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert "TimeoutError: \\x1b[2J\\u202eevil line" in out
    assert len(out.splitlines()) == 6


def test_status_json_history(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    _retried_then_failed("job-h")
    code, out, _ = run(capsys, "--store", url, "status", "job-h", "--json", "--history")
    assert code == 0
    body = json.loads(out)
    assert body == immortus.status("job-h", history=True).to_dict(history=True)
    assert [entry["event"] for entry in body["history"]] == [
        "enqueued",
        "started",
        "retrying",
        "started",
        "failed",
    ]
    assert body["history"][2]["error"] == {"type": "TimeoutError", "message": "slow"}
    assert body["history"][2]["retry_at"] == "2030-01-01T00:00:00.000Z"
    code, out, _ = run(capsys, "--store", url, "status", "job-h", "--json")
    assert "history" not in json.loads(out)


@pytest.mark.parametrize(
    ("job_id", "message"),
    [("x" * 300, "limit is 255"), ("bad\x07id", "non-printable"), (" padded", "spaces")],
)
def test_status_refuses_malformed_ids(
    url: str, capsys: pytest.CaptureFixture[str], job_id: str, message: str
) -> None:
    code, out, err = run(capsys, "--store", url, "status", job_id)
    assert code == 2
    assert out == ""
    assert message in err


def test_status_refuses_a_malformed_job_class(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--store", url, "status", "job-1", "--job-class", "has space")
    assert code == 2
    assert "job class" in err


@pytest.mark.parametrize(
    ("store", "message"), [("nope://x", "no store handles"), ("jobs.db", "has no scheme")]
)
def test_bad_store_urls(capsys: pytest.CaptureFixture[str], store: str, message: str) -> None:
    code, _, err = run(capsys, "--store", store, "status", "job-1")
    assert code == 2
    assert message in err


@pytest.mark.parametrize(
    "store",
    [
        "worker:pw-123@db.internal/jobs",  # no scheme: refused, and echoed
        "worker:pw-123@db.internal/jobs?password=pw-123",
        "redis://worker:pw-123@127.0.0.1:1/0",
        "postgresql://worker:pw-123@127.0.0.1:1/jobs",
        "nope://worker:pw-123@db.internal/jobs",
    ],
)
@pytest.mark.parametrize("argv", [["status", "job-1"], ["jobs", "--json"], ["prune"]])
def test_no_message_shows_a_store_password(
    capsys: pytest.CaptureFixture[str], store: str, argv: list[str]
) -> None:
    code, out, err = run(capsys, "--store", store, *argv)
    assert (code in {2, 3}, out) == (True, "")
    assert "pw-123" not in err
    assert main(["--debug", "--store", store, *argv]) == code
    out, err = capsys.readouterr()
    assert "Traceback" in err
    assert "pw-123" not in out + err


@pytest.mark.parametrize(
    "argv", [["status", "job-1"], ["watch", "job-1"], ["jobs", "--json"], ["prune"]]
)
def test_a_missing_sqlite_file_is_refused_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    typo = tmp_path / "jbos.sqlite3"
    code, out, err = run(capsys, "--store", f"sqlite:///{typo.as_posix()}", *argv)
    assert (code, out) == (2, "")
    assert f"no immortus store at {typo}" in err
    assert not typo.exists()


@pytest.mark.parametrize("argv", [["status", "job-1"], ["jobs", "--json"], ["prune"]])
def test_an_unreachable_store_exits_3(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run(capsys, "--store", UNREACHABLE, *argv)
    assert code == 3
    assert out == ""
    assert "store is unavailable" in err


def test_the_store_comes_from_the_environment(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    finished("job-1")
    monkeypatch.setenv(STORE_ENV, url)
    assert run(capsys, "status", "job-1")[0] == 0
    monkeypatch.setenv(STORE_ENV, UNREACHABLE)
    assert run(capsys, "status", "job-1")[0] == 3
    assert run(capsys, "status", "--store", url, "job-1")[0] == 0  # --store after the command


def test_a_strategy_given_by_name(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    finished("job-1")
    assert run(capsys, "--store", url, "--strategy", "store", "status", "job-1")[0] == 0
    code, _, err = run(capsys, "--store", url, "--strategy", "no.such:Thing", "status", "job-1")
    assert code == 2
    assert "no tracking strategy found" in err
    code, _, err = run(capsys, "--store", url, "--strategy", f"{__name__}:Exploding", "status", "x")
    assert code == 5
    assert "failed on job 'x'" in err


def test_status_works_without_rich(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started("job-1")
    finished("done")
    monkeypatch.setitem(sys.modules, "rich", None)  # import rich now raises ImportError
    assert run(capsys, "--store", url, "status", "job-1")[0] == 0
    assert run(capsys, "--store", url, "watch", "done")[0] == 0  # not a terminal: plain lines
    assert run(capsys, "--store", url, "status", "job-1", "--json")[0] == 0
    assert run(capsys, "--store", url, "jobs", "--json")[0] == 0
    code, _, err = run(capsys, "--store", url, "jobs")
    assert code == 2
    assert 'pip install "immortus[cli]"' in err


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["status"], ["watch"]):
        code, out, _ = run(capsys, *argv, "--help")
        assert code == 0
        assert "exit codes:" in out
        assert "130  interrupted" in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys)[0] == 2
    assert run(capsys, "frobnicate")[0] == 2
    assert run(capsys, "jobs", "--limit", "0")[0] == 2
    assert run(capsys, "watch", "job-1", "--interval", "-1")[0] == 2


def test_text_helpers() -> None:
    assert percent_text(Progress(current=2, total=3)) == "66%"  # never rounded up to done
    assert percent_text(Progress(current=5)) == ""
    assert counts_text(Progress(current=2.5, total=10)) == "2.5/10"
    assert counts_text(Progress(current=7)) == "7"
    assert [duration_text(s) for s in (None, 4.25, 185, 7260)] == ["", "4.2s", "3m05s", "2h01m"]
    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    ago = [ago_text(now - timedelta(seconds=s), now) for s in (-3, 12, 300, 7200)]
    assert ago == ["0s ago", "12s ago", "5m ago", "2h ago"]
    assert ago_text(None, now) == "-"
    assert one_line("a\n  b\tc ") == "a b c"


# -- jobs and prune ----------------------------------------------------------------------------


def test_jobs_lists_newest_first_and_filters_by_state(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    finished("a")
    failed("b")
    started("c")
    finished("d")
    code, out, _ = run(capsys, "--store", url, "jobs", "--json")
    assert code == 0
    page = json.loads(out)
    assert [job["job_id"] for job in page["jobs"]] == ["d", "c", "b", "a"]
    assert page["next_cursor"] is None
    code, out, _ = run(capsys, "--store", url, "jobs", "--state", "finished", "--json")
    assert [job["job_id"] for job in json.loads(out)["jobs"]] == ["d", "a"]
    code, out, _ = run(capsys, "--store", url, "jobs", "--state", "failed")
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0][:2] == ["job", "id"]
    assert rows[1][:3] == ["b", JOB_CLASS, "failed"]
    assert len(rows) == 2


def test_jobs_pages_with_the_printed_cursor(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    for number in range(5):
        finished(f"job-{number}")
    seen: list[str] = []
    argv = ["--store", url, "jobs", "--limit", "2"]
    for _ in range(5):
        code, out, _ = run(capsys, *argv)
        assert code == 0
        seen += [line.split()[0] for line in out.splitlines()[1:] if line.startswith("job-")]
        found = re.search(r"--cursor (\S+)", out)
        if found is None:
            break
        argv = ["--store", url, "jobs", "--limit", "2", "--cursor", found.group(1)]
    assert seen == ["job-4", "job-3", "job-2", "job-1", "job-0"]
    code, out, _ = run(capsys, "--store", url, "jobs", "--limit", "2", "--json")
    cursor = json.loads(out)["next_cursor"]
    code, out, _ = run(capsys, "--store", url, "jobs", "--limit", "2", "--cursor", cursor, "--json")
    assert [job["job_id"] for job in json.loads(out)["jobs"]] == ["job-2", "job-1"]


def test_jobs_shows_each_error_cut_to_the_width(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    failed("broken", "the upstream server answered 502 " * 10)
    finished("fine")
    monkeypatch.setenv("COLUMNS", "100")  # rich's width when standard output is not a terminal
    code, out, _ = run(capsys, "--store", url, "jobs")
    assert code == 0
    header, newest, oldest = out.splitlines()
    assert header.split()[-1] == "error"
    assert newest.split()[:3] == ["fine", JOB_CLASS, "finished"]
    assert newest.rstrip().endswith("-")
    assert oldest.split()[:3] == ["broken", JOB_CLASS, "failed"]
    assert "ValueError: the upstream server answered 502 the upstream" in oldest
    assert oldest.rstrip().endswith("…")
    assert max(len(line) for line in out.splitlines()) <= 160


def test_jobs_on_an_empty_store(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--store", url, "jobs", "--state", "lost")
    assert (code, out.strip()) == (0, "no jobs in state lost")


def test_jobs_refuses_bad_states_and_cursors(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--store", url, "jobs", "--state", "done")
    assert code == 2
    assert out == ""
    assert "unknown state 'done'" in err
    assert "created, started, retrying, finished, failed, cancelled, lost, unknown" in err
    code, _, err = run(capsys, "--store", url, "jobs", "--cursor", "not-a-cursor")
    assert code == 2
    assert "malformed page cursor" in err


def test_prune_deletes_expired_records(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    finished("kept")
    immortus.configure(ttl=0.05)  # records written from now on expire almost at once
    finished("old-1")
    failed("old-2")
    while immortus.status("old-2").state != "unknown":  # expired: invisible, not yet deleted
        time.sleep(0.02)
    code, out, _ = run(capsys, "--store", url, "prune")
    assert (code, out.strip()) == (0, "pruned 2 expired job records")
    assert run(capsys, "--store", url, "prune")[1].strip() == "pruned 0 expired job records"
    assert run(capsys, "--store", url, "status", "kept")[0] == 0


def test_prune_first_records_the_jobs_whose_heartbeat_stopped(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    for job_id in ("dead-1", "dead-2"):  # their workers' leases ran out a second ago
        lifecycle.job_started(job_id, JOB_CLASS, alive_until=past)
    started("alive")
    assert immortus.status("dead-1").state == "lost"  # presumed by every read already
    code, out, _ = run(capsys, "--store", url, "prune")
    assert (code, out.splitlines()) == (
        0,
        ["recorded 2 jobs lost: no heartbeat from the worker", "pruned 0 expired job records"],
    )
    assert run(capsys, "--store", url, "prune")[1].strip() == "pruned 0 expired job records"
    assert immortus.status("dead-2").error is not None
    assert immortus.status("alive").state == "started"


# -- watch, in-process -------------------------------------------------------------------------


def test_watch_a_job_that_already_ended(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    finished("done")
    failed("broken")
    code, out, _ = run(capsys, "--store", url, "watch", "done")
    assert code == 0
    assert "done  finished  100%  10/10  all rows" in out
    assert out.splitlines()[-1].startswith("job done finished in ")
    code, out, _ = run(capsys, "--store", url, "watch", "broken")
    assert code == 1
    assert out.splitlines()[-1] == "job broken failed: ValueError: boom"


def test_the_live_board_draws_bars_and_states(url: str) -> None:
    from rich.console import Console

    finished("done")
    failed("broken")
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system="standard")
    targets = [Target("done", label="the good one"), Target("broken"), Target("ghost")]
    with LiveBoard(console) as board:
        seen = follow(targets, board, interval=0.01, timeout=0.05)
        board.note("a note above the bars")
    assert {job_id: status.state.value for job_id, status in seen.items()} == {
        "done": "finished",
        "broken": "failed",
        "ghost": "unknown",
    }
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "a note above the bars" in text
    last = text.rsplit("a note above the bars", 1)[1]
    assert re.search(r"the good one +finished .* 100% +10/10 .* all rows", last)
    assert re.search(r"broken +failed .* 60% +6/10 .* ValueError: boom", last)
    assert re.search(r"ghost +unknown .* waiting for the first record", last)


def test_watch_gives_up_at_the_timeout(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "--store", url, "watch", "nobody", "--timeout", "0.2", "--interval", "0.05"
    )
    assert code == 4
    assert out.count("\n") == 1
    assert "nobody  unknown  waiting for the first record of this job" in out
    assert "gave up after 0.2s: job nobody is still unknown" in err


def test_watch_retries_an_unreachable_store_then_exits_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "--store", UNREACHABLE, "watch", "job-1", "--interval", "0.01")
    assert code == 3
    assert err.count("retry ") == 5
    assert "retry 5/5" in err
    assert err.rstrip().splitlines()[-1].startswith("immortus: the store is unavailable")


def test_watch_refuses_a_malformed_id(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--store", url, "watch", "x" * 300)
    assert (code, out) == (2, "")
    assert "limit is 255" in err


# -- watch, as a separate process while this one runs the job ----------------------------------


def containing(text: str) -> Callable[[str], bool]:
    return lambda line: text in line


class Watcher:
    """``python -m immortus watch`` in a subprocess, its output read line by line."""

    def __init__(self, url: str, job_id: str, *extra: str, merge_stderr: bool = False) -> None:
        env = {**os.environ, "PYTHONPATH": SRC}
        env.pop(STORE_ENV, None)
        command = [sys.executable, "-m", "immortus", "--store", url, "watch", job_id, *extra]
        stderr = subprocess.STDOUT if merge_stderr else subprocess.PIPE
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, predicate: Callable[[str], bool]) -> str:
        """Return the first new line that satisfies ``predicate``."""
        while True:
            line = self._queue.get(timeout=WAIT)
            assert line is not None, f"watch ended without the line; output: {self.lines}"
            self.lines.append(line)
            if predicate(line):
                return line

    def finish(self) -> tuple[int, str, str]:
        """Wait for the end; return the exit code, every line of stdout, and stderr."""
        while (line := self._queue.get(timeout=WAIT)) is not None:
            self.lines.append(line)
        code = self.process.wait(timeout=WAIT)
        err = "" if self.process.stderr is None else self.process.stderr.read()
        return code, "\n".join(self.lines), err

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=WAIT)
        self._reader.join(timeout=WAIT)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def watcher(url: str) -> Iterator[Callable[..., Watcher]]:
    made: list[Watcher] = []

    def make(job_id: str, *extra: str) -> Watcher:
        made.append(Watcher(url, job_id, "--interval", "0.05", *extra))
        return made[-1]

    yield make
    for watch in made:
        watch.close()


class Driver:
    """Runs one job in a thread of this process, a progress step each time it is told to."""

    def __init__(self, job_id: str, steps: int, *, fail_at: int | None = None) -> None:
        self.job_id, self.steps, self.fail_at = job_id, steps, fail_at
        self.go = threading.Semaphore(0)
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run)
        lifecycle.job_enqueued(job_id, JOB_CLASS)

    def _run(self) -> None:
        try:
            with immortus.running(self.job_id, JOB_CLASS, attempt=1):
                for step in range(1, self.steps + 1):
                    assert self.go.acquire(timeout=WAIT)
                    if step == self.fail_at:
                        raise RuntimeError("disk full")
                    immortus.progress(step, self.steps, f"step {step}")
                assert self.go.acquire(timeout=WAIT)
        except RuntimeError as exc:
            if str(exc) != "disk full":
                self.errors.append(exc)
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.errors.append(exc)

    def step(self) -> None:
        self.go.release()

    def join(self) -> None:
        self.thread.join(timeout=WAIT)
        assert not self.thread.is_alive()
        assert self.errors == []


@pytest.mark.slow
def test_watch_follows_a_job_to_its_end(watcher: Callable[..., Watcher]) -> None:
    watch = watcher("live-1")
    watch.expect(containing("waiting for the first record"))
    driver = Driver("live-1", 4)
    driver.thread.start()
    watch.expect(containing("live-1  started"))
    for step, percent in ((1, "25%"), (2, "50%"), (3, "75%"), (4, "100%")):
        driver.step()
        watch.expect(containing(f"{percent}  {step}/4  step {step}"))
    driver.step()
    code, out, err = watch.finish()
    driver.join()
    assert (code, err) == (0, "")
    assert re.search(r"live-1  finished  100%  4/4  step 4", out)
    assert out.splitlines()[-1].startswith("job live-1 finished in ")
    assert all(line.startswith("[+") for line in out.splitlines()[:-1])


@pytest.mark.slow
def test_watch_exits_1_when_the_job_fails(watcher: Callable[..., Watcher]) -> None:
    watch = watcher("live-2")
    watch.expect(containing("waiting for the first record"))
    driver = Driver("live-2", 4, fail_at=3)
    driver.thread.start()
    for percent in ("25%", "50%"):
        driver.step()
        watch.expect(containing(percent))
    driver.step()
    code, out, err = watch.finish()
    driver.join()
    assert (code, err) == (1, "")
    assert "live-2  failed  50%  2/4  RuntimeError: disk full" in out
    assert out.splitlines()[-1] == "job live-2 failed: RuntimeError: disk full"


@pytest.mark.slow
def test_watch_times_out_on_an_unknown_job(watcher: Callable[..., Watcher]) -> None:
    code, out, err = watcher("never", "--timeout", "0.5").finish()
    assert code == 4
    assert "never  unknown  waiting for the first record of this job" in out
    assert "gave up after 0.5s: job never is still unknown" in err


@pytest.mark.slow
def test_watch_survives_a_short_store_outage(redis_server: RedisServer, redis_url: str) -> None:
    immortus.configure(store=redis_url, progress_interval=0)
    watch = Watcher(redis_url, "outage", "--interval", "0.2", merge_stderr=True)
    try:
        driver = Driver("outage", 2)
        driver.thread.start()
        driver.step()
        watch.expect(containing("50%  1/2"))
        redis_server.stop()
        watch.expect(containing("store unavailable"))
        redis_server.start()  # empty again: the server keeps nothing on disk
        watch.expect(containing("the store answers again"))
        driver.step()
        driver.step()
        code, out, _ = watch.finish()
        driver.join()
    finally:
        watch.close()
    assert code == 0, out
    assert "retry 1/5" in out
    assert out.splitlines()[-1].startswith("job outage finished")


def test_status_reads_what_another_process_sees(url: str) -> None:
    """The status a watcher prints comes from the store, not from this process's memory."""
    finished("job-1")
    expected: JobStatus = immortus.status("job-1")
    env = {**os.environ, "PYTHONPATH": SRC}
    result = subprocess.run(
        [sys.executable, "-m", "immortus", "--store", url, "status", "--json", "job-1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected.to_dict()
