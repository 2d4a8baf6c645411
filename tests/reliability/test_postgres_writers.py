"""PostgreSQL under many writers: 32 worker processes on one server lose no update, never deadlock.

32 worker processes each run four jobs through the job API with every progress call
written, and between two steps write to the next worker's jobs as a second process would
(see :mod:`tests.reliability.postgres_writers_roles`); a janitor process reaps and prunes
meanwhile. At the end every job holds exactly the record the ordering rules give: the state,
the attempt, the last progress of the attempt that owns it, every meta key of both writers.
No process raised, held or dropped an event, nothing was logged, PostgreSQL counted no
deadlock, and the table holds the workers' records and nothing else.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from immortus.status import State
from immortus.stores.spool import SPOOL_DIR_ENV
from immortus.stores.sql import SQLStore
from tests.reliability import postgres_writers_roles as roles
from tests.support import pristine_immortus

#: Each process is a fork of a clean server process that imported immortus, SQLAlchemy and
#: psycopg once (spawning 33 interpreters costs more CPU than the test's writes).
PROCESSES = multiprocessing.get_context("forkserver")
PROCESSES.set_forkserver_preload([roles.__name__, "psycopg"])
WORKERS = 32


def _database_counters(dsn: str) -> dict[str, int]:
    """PostgreSQL's deadlock and rollback counters of the database, once no one else is on it.

    A backend adds its counts to the shared statistics when its client goes, so this waits for
    the workers' connections to end first.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + roles.TIMEOUT
        others = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        while True:
            row = conn.execute(others + " AND pid <> pg_backend_pid()").fetchone()
            if (row is not None and row[0] == 0) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT deadlocks, xact_rollback, xact_commit FROM pg_stat_database"
            " WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return {"deadlocks": row[0], "rollbacks": row[1], "commits": row[2]}


def _start(target: Any, *args: Any) -> Any:
    process = PROCESSES.Process(target=target, args=args)
    process.start()
    return process


@pytest.fixture
def url(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv(SPOOL_DIR_ENV, str(tmp_path / "spool"))  # events a worker would hold
    with pristine_immortus():
        yield postgres_url


@pytest.mark.slow
@pytest.mark.alone
@pytest.mark.timeout(600)
def test_32_writer_processes_lose_no_update_and_never_deadlock(
    url: str, postgres_server: Any, tmp_path: Path
) -> None:
    store = SQLStore(url)
    store.prune()  # creates the table before the workers race to
    store.engine.dispose()  # the counters wait for every other connection to end
    before = _database_counters(postgres_server.dsn)

    go, stop = PROCESSES.Event(), PROCESSES.Event()
    janitor_report = tmp_path / "janitor.json"
    janitor = _start(roles.janitor, url, go, stop, str(janitor_report))
    reports = [tmp_path / f"worker-{worker}.json" for worker in range(WORKERS)]
    workers = [
        _start(roles.work, url, worker, WORKERS, go, str(reports[worker]))
        for worker in range(WORKERS)
    ]
    go.set()
    for process in workers:
        process.join(roles.TIMEOUT * 2)
    stop.set()
    janitor.join(roles.TIMEOUT)
    assert [process.exitcode for process in [*workers, janitor]] == [0] * (WORKERS + 1)
    results = [json.loads(report.read_text()) for report in reports]
    swept = json.loads(janitor_report.read_text())

    for result in results:
        assert result["raised"] == []
        assert result["logged"] == []  # no event failed, none went untracked
        assert result["flushed"] is True
        assert result["meddled"] is True
        assert result["stats"] == {"buffered": 0, "dropped": 0, "replayed": 0, "outages": 0}
    assert (swept["raised"], swept["logged"]) == ([], [])
    assert swept["pruned"] == swept["written"] > 0

    found = store.get_many([roles.job_id(w, kind) for w in range(WORKERS) for kind in roles.KINDS])
    assert len(found) == WORKERS * len(roles.KINDS)
    for worker in range(WORKERS):
        meddler = results[(worker - 1) % WORKERS]  # the worker that meddles with this one's jobs
        for kind in roles.KINDS:
            status = found[roles.job_id(worker, kind)]
            ending = State.FAILED if kind == "failed" else State.FINISHED
            attempts = 2 if kind == "retried" else 1
            assert (status.state, status.attempts) == (ending, attempts), status
            assert status.progress == roles.expected_progress(kind), status
            assert status.enqueued_at is not None
            if kind == "failed":
                assert status.error is not None
                assert status.error.type == "ValueError"
            else:
                assert status.error is None
        plain = found[roles.job_id(worker, "plain")]
        assert dict(plain.meta) == {
            **roles.owner_meta(),
            **{key: number for number, key in enumerate(meddler["meta_sent"], 1)},
        }

    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(store.table)).scalar_one()
    assert rows == WORKERS * len(roles.KINDS)  # the throwaway records are all pruned
    store.close()

    after = _database_counters(postgres_server.dsn)
    assert after["deadlocks"] == before["deadlocks"]
    rounds = sum(result["rounds"] for result in results)
    slowest = max(result["seconds"] for result in results)
    print(
        f"\n{WORKERS} workers: {rounds} meddling rounds, {swept['reaped']} jobs reaped, "
        f"{swept['pruned']} pruned; {after['commits'] - before['commits']} transactions "
        f"committed, {after['rollbacks'] - before['rollbacks']} rolled back; slowest worker "
        f"{slowest:.1f} s"
    )
