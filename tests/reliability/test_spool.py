"""Held events that outlive their process, and heartbeats held through an outage.

Real parts: a private redis-server (append-only, fsynced) killed and restarted, and worker
subprocesses (``tests.reliability.spool_worker``) that hold events while it is down. The spool
directory of each test is its own (``IMMORTUS_SPOOL_DIR``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import immortus
from immortus import outbox, runtime
from immortus.status import JobError, Progress, State
from immortus.stores import spool
from immortus.stores.redis import RedisStore
from immortus.stores.spool import SPOOL_DIR_ENV, Spool, decode_event, encode_event
from immortus.stores.sqlite import SQLiteStore
from immortus.transitions import Event, EventKind, utcnow
from tests.queues.scenarios import wait_for
from tests.queues.workers import ROOT, WorkerProcess, running_worker, worker_environment
from tests.services import RedisServer
from tests.support import pristine_immortus

#: Generous: the machine may be loaded.
TIMEOUT = 90.0


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A Redis of this test's own, which it may kill and start again."""
    with RedisServer(append_only=True) as server:
        yield server


def run_worker(mode: str, folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.reliability.spool_worker", mode, str(folder)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_events_held_by_a_process_that_ends_with_os_exit_are_written_by_the_next(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    env = worker_environment(redis_server.url, **{SPOOL_DIR_ENV: str(spool)})
    redis_server.kill()
    before = utcnow()

    held = run_worker("exit", tmp_path, env)

    assert held.returncode == 0, held.stderr
    assert held.stdout == "held 5\n"  # started, progress, meta, progress, finished
    (left,) = spool.iterdir()  # the dead process's file, private to its user
    assert (spool.stat().st_mode & 0o777, left.stat().st_mode & 0o777) == (0o700, 0o600)

    back = utcnow()
    redis_server.start()
    after = run_worker("adopt", tmp_path, env)

    assert (after.returncode, after.stdout) == (0, "adopted\n"), after.stderr
    pid = left.name.split(".")[1]
    assert f"process {pid} ended with 5 tracking events" in after.stderr
    assert list(spool.iterdir()) == []  # taken over and deleted
    store = RedisStore(redis_server.url)
    try:
        status = store.get("job-x")
        assert status is not None
        assert (status.state, status.attempts, dict(status.meta)) == (
            State.FINISHED,
            1,
            {"rows": 37},
        )
        assert status.progress == Progress(current=2, total=2, message="second half")
        assert status.finished_at is not None
        assert before < status.finished_at < back  # when it ended, not when it was written
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_live_job_reaped_lost_during_an_outage_comes_back_to_started(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = worker_environment(redis_server.url, **{SPOOL_DIR_ENV: str(tmp_path / "spool")})
    worker = WorkerProcess(
        "the long job",
        [sys.executable, "-m", "tests.reliability.spool_worker", "long", str(tmp_path)],
        env=env,
        log=tmp_path / "worker.log",
    )
    store = RedisStore(redis_server.url)
    with running_worker(worker):
        worker.wait_until_ready((tmp_path / "started").exists, TIMEOUT)

        def state() -> State | None:
            status = store.get("job-long")
            return None if status is None else status.state

        wait_for(lambda: state() is State.STARTED, TIMEOUT, "the job to read started")

        # The store goes away for longer than the lease: nobody can renew it.
        redis_server.kill()
        wait_for(lambda: worker.log.read_text().count("heartbeat of 1 running job") > 0, TIMEOUT)
        worker.send_signal(signal.SIGSTOP)  # so the reaper surely runs before any new beat
        try:
            redis_server.start()
            wait_for(lambda: state() is State.LOST, TIMEOUT, "the lease to lapse")
            assert store.reap_lost() == 1  # `immortus prune` writes the presumption down
        finally:
            worker.send_signal(signal.SIGCONT)

        # Alive after all: its held beat goes first, and the job is running again.
        wait_for(lambda: state() is State.STARTED, TIMEOUT, "the job to come back to started")
        status = store.get("job-long")
        assert status is not None
        assert (status.attempts, status.error, status.finished_at) == (1, None, None)

        (tmp_path / "finish").touch()
        wait_for(lambda: state() is State.FINISHED, TIMEOUT, "the job to finish")
        wait_for(worker.exited, TIMEOUT, "the worker to end")  # it ends with its job
    store.close()
    assert "Traceback" not in worker.log.read_text()


# -- the spool file on its own ----------------------------------------------------------------


@pytest.fixture
def sqlite_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SQLiteStore]:
    """A real SQLite store, its spool directory private to the test, on default settings."""
    monkeypatch.setenv(SPOOL_DIR_ENV, str(tmp_path / "spool"))
    with pristine_immortus():
        store = SQLiteStore(tmp_path / "jobs.sqlite3")
        immortus.configure(store=store)
        yield store
        store.close()


def test_an_event_survives_the_spool_as_it_was() -> None:
    event = Event(
        kind=EventKind.FAILED,
        job_id="j 1",
        job_class="reports.build",
        attempt=2,
        progress=Progress(current=7, total=5, message="over", allow_overshoot=True),
        error=JobError(type="ValueError", message="boom", traceback="Traceback ...\n"),
        meta={"rows": [1, {"a": None}]},
        alive_until=utcnow(),
    )
    again = decode_event(json.loads(json.dumps(encode_event(event))))
    assert again == event
    assert again.error is not None
    assert again.error.traceback == "Traceback ...\n"  # compare=False: checked apart


def test_an_adoption_writes_only_what_was_never_acknowledged(sqlite_store: SQLiteStore) -> None:
    kept = Spool.create(sqlite_store)
    assert kept is not None
    numbers = [
        kept.append(Event(kind=kind, job_id="j1", at=at))
        for kind, at in [
            (EventKind.ENQUEUED, utcnow()),
            (EventKind.STARTED, utcnow()),
            (EventKind.FINISHED, utcnow()),
        ]
    ]
    kept.acknowledge(numbers[0])  # written before its process died
    with kept.path.open("ab") as file:
        file.write(b'{"n":4,"event":{"kind":"fail')  # a torn last line
    kept._close()  # as the death of its process would
    runtime.part(spool.Spools).open.discard(kept)

    assert outbox.adopt(sqlite_store) == 2
    status = sqlite_store.get("j1")
    assert status is not None
    assert (status.state, status.enqueued_at) == (State.FINISHED, None)  # not written again
    assert not kept.path.exists()
    assert outbox.adopt(sqlite_store) == 0


_HOLDER = """
import sys
from immortus.stores.spool import Spool
from immortus.stores.sqlite import SQLiteStore
from immortus.transitions import Event, EventKind
held = Spool.create(SQLiteStore(sys.argv[1]))
held.append(Event(kind=EventKind.FINISHED, job_id="theirs"))
print(held.path, flush=True)
sys.stdin.read()  # until the test lets it end
"""


def test_a_live_process_keeps_its_spool_until_it_ends(sqlite_store: SQLiteStore) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(sqlite_store.path)],
        cwd=ROOT,
        env=os.environ.copy(),  # the test's spool directory
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        path = Path(holder.stdout.readline().strip())
        assert path.exists()
        assert outbox.adopt(sqlite_store) == 0  # its process holds it
        assert path.exists()
    finally:
        assert holder.stdin is not None
        assert holder.stdout is not None
        holder.stdin.close()
        holder.wait(TIMEOUT)
        holder.stdout.close()
    assert outbox.adopt(sqlite_store) == 1  # it ended without writing: ours now
    status = sqlite_store.get("theirs")
    assert status is not None
    assert status.state is State.FINISHED


def test_a_directory_others_may_write_to_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv(SPOOL_DIR_ENV, str(shared))
    assert spool.spool_dir() is None
    assert "other users may write to it" in caplog.text
    monkeypatch.setenv(SPOOL_DIR_ENV, "off")
    assert spool.spool_dir() is None
