"""SQLite under heavy concurrent writers: no "database is locked" reaches a job or a request.

Several writer processes, each running tracked jobs in several threads (every progress call
written), share one SQLite file with this process, whose threads read it (``get``,
``get_many``, ``list_jobs``) and ask the verify route of a real uvicorn server about the same
jobs. At the end every job must be there, ended, at its last progress.

Once with the store's own lock timeout (5 s): the writers wait for the lock. Once with a lock
timeout of 0, so that every write that meets the lock fails at once with ``StoreUnavailable``:
the outbox must hold those events and write them, in order, when the lock is free.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

import immortus
from immortus import config, outbox
from immortus.status import Progress, State
from immortus.stores.spool import SPOOL_DIR_ENV
from immortus.stores.sqlite import SQLiteStore
from immortus.web.asgi import immortus_routes
from tests.support import pristine_immortus
from tests.web.servers import serve_asgi

SPAWN = multiprocessing.get_context("spawn")
#: Generous: the machine may be loaded.
TIMEOUT = 120.0
PROCESSES = 4
THREADS = 4
JOBS = 4  # per thread
STEPS = 30


def job_ids() -> list[str]:
    return [
        f"p{process}-t{thread}-j{job}"
        for process in range(PROCESSES)
        for thread in range(THREADS)
        for job in range(JOBS)
    ]


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.levelname} {record.getMessage()}")


def _write_jobs(path: str, process: int, lock_timeout: float, go: Any, report: str) -> None:
    """In a spawned process: run THREADS x JOBS tracked jobs; write what happened to ``report``."""
    kept = _Kept()
    logging.getLogger("immortus").addHandler(kept)
    store = SQLiteStore(path, timeout=lock_timeout)
    immortus.configure(store=store, progress_interval=0)
    seen: list[str] = []  # what the job code saw raised

    def run(thread: int) -> None:
        for job in range(JOBS):
            try:
                with immortus.running(f"p{process}-t{thread}-j{job}", None):
                    for step in range(1, STEPS + 1):
                        immortus.progress(step, STEPS, f"step {step}")
            except Exception as exc:  # noqa: BLE001 - what the test checks is that none comes
                seen.append(repr(exc))

    assert go.wait(TIMEOUT)
    threads = [threading.Thread(target=run, args=(number,)) for number in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flushed = outbox.flush(TIMEOUT)
    stats = outbox.stats()
    Path(report).write_text(
        json.dumps(
            {
                "raised": seen,
                "flushed": flushed,
                "stats": {
                    "outages": stats.outages,
                    "replayed": stats.replayed,
                    "dropped": stats.dropped,
                },
                "logged": kept.records,
            }
        )
    )


class Traffic:
    """Threads of this process reading the file and asking the verify route, until stopped.

    Counts what they get: every store error and every HTTP status.
    """

    def __init__(self, reader: SQLiteStore, base_url: str, ids: list[str]) -> None:
        self.reader = reader
        self.http = httpx.Client(base_url=base_url, timeout=TIMEOUT)
        self.ids = ids
        self.reads = 0
        self.read_errors: list[str] = []
        self.answers: Counter[int] = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(self._read,)) for _ in range(2)]
        self._threads += [threading.Thread(target=self._loop, args=(self._ask,)) for _ in range(2)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(TIMEOUT)
        self.http.close()

    def _loop(self, action: Callable[[], None]) -> None:
        while not self._stop.is_set():
            action()

    def _read(self) -> None:
        try:
            self.reader.get(random.choice(self.ids))
            self.reader.get_many(random.sample(self.ids, 50))
            self.reader.list_jobs(state=random.choice([None, State.STARTED, State.FINISHED]))
            self.reads += 3
        except Exception as exc:  # noqa: BLE001 - counted, and the test fails on any
            self.read_errors.append(repr(exc))

    def _ask(self) -> None:
        job_id = random.choice(self.ids)
        self.answers[self.http.get(f"/immortus/verify/{job_id}").status_code] += 1


def run_writers(path: Path, lock_timeout: float) -> list[Any]:
    """Run the writer processes, started together once all are up; return their reports."""
    go = SPAWN.Event()
    reports = [path.parent / f"writer-{process}.json" for process in range(PROCESSES)]
    writers = [
        SPAWN.Process(
            target=_write_jobs, args=(str(path), process, lock_timeout, go, str(reports[process]))
        )
        for process in range(PROCESSES)
    ]
    for writer in writers:
        writer.start()
    go.set()
    for writer in writers:
        writer.join(TIMEOUT * 2)
    assert [writer.exitcode for writer in writers] == [0] * PROCESSES
    return [json.loads(report.read_text()) for report in reports]


def count_listed(store: SQLiteStore) -> int:
    listed, cursor = 0, None
    while True:
        page = store.list_jobs(limit=1000, cursor=cursor)
        listed += len(page.jobs)
        if (cursor := page.next_cursor) is None:
            return listed


@pytest.fixture
def path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv(SPOOL_DIR_ENV, str(tmp_path / "spool"))  # the writers' held events
    with pristine_immortus():
        yield tmp_path / "immortus.sqlite3"


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("lock_timeout", [5.0, 0.0], ids=["waits-for-the-lock", "never-waits"])
def test_heavy_concurrent_writers_lose_nothing_and_readers_never_see_a_lock(
    path: Path, lock_timeout: float
) -> None:
    ids = job_ids()
    reader = SQLiteStore(path)  # creates the file, as the web app would before the workers
    config.configure(store=f"sqlite:///{path}", open_endpoints=True)
    app = Starlette(routes=[immortus_routes()])
    with serve_asgi(app) as base, Traffic(reader, base, ids) as traffic:
        results = run_writers(path, lock_timeout)

    for result in results:
        assert result["raised"] == []  # the job API returned normally, every time
        assert result["flushed"] is True
        assert result["stats"]["dropped"] == 0
        untracked = [line for line in result["logged"] if "untracked" in line]
        assert untracked == []  # no event was lost on its way to the store
    assert traffic.read_errors == []
    assert traffic.reads > 0
    assert set(traffic.answers) <= {200, 404}, traffic.answers  # never 503 nor 500 for a lock
    assert traffic.answers[200] > 0

    found = reader.get_many(ids)
    assert len(found) == len(ids) == PROCESSES * THREADS * JOBS
    for status in found.values():
        assert (status.state, status.attempts) == (State.FINISHED, 1)
        assert status.progress == Progress(current=STEPS, total=STEPS, message=f"step {STEPS}")
    assert count_listed(reader) == len(ids)
    outages = sum(result["stats"]["outages"] for result in results)
    if lock_timeout == 0:
        assert outages > 0, "no write met the lock: the outbox was not exercised"
    replayed = sum(result["stats"]["replayed"] for result in results)
    print(
        f"\nlock timeout {lock_timeout:g} s: {len(ids) * (STEPS + 2)} events written by "
        f"{PROCESSES} processes x {THREADS} threads, {outages} outages, {replayed} events "
        f"replayed; {traffic.reads} reads, {traffic.answers.total()} verify requests "
        f"{dict(traffic.answers)}"
    )
    reader.close()
