"""Real outages: the store's server goes away while a worker's jobs run, and nothing is lost.

Each test runs a server of its own (never the session's, which other tests share): Redis with an
fsynced append-only file, killed with SIGKILL; PostgreSQL, stopped with ``pg_ctl stop -m fast``.
The worker is a real subprocess (``tests.reliability.outage_worker``) running tracked jobs in
threads; this process serves the verify route over HTTP (uvicorn, Starlette adapter) on the same
store, as the web app would. The jobs report half their progress with the store up, go on and
end while it is down, and must read their true final state once it is back.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

import immortus
from immortus.transitions import utcnow
from immortus.web.asgi import immortus_routes
from tests.queues.scenarios import wait_for
from tests.queues.workers import WorkerProcess, running_worker, worker_environment
from tests.services import PostgresServer, RedisServer
from tests.support import pristine_immortus
from tests.web.http_contract import body_of
from tests.web.servers import serve_asgi

#: Generous: the machine may be loaded.
TIMEOUT = 90.0
JOBS = 6
STEPS = 20


@dataclass(frozen=True)
class Backend:
    """A private store server and how this test takes it down and brings it back."""

    url: str
    take_down: Callable[[], None]
    bring_back: Callable[[], None]


@pytest.fixture(
    params=[
        pytest.param("redis", marks=[pytest.mark.redis, pytest.mark.slow]),
        pytest.param("postgresql", marks=[pytest.mark.postgresql, pytest.mark.slow]),
    ]
)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "redis":
        with RedisServer(append_only=True) as redis_server:
            yield Backend(redis_server.url, redis_server.kill, redis_server.start)
    else:
        with PostgresServer() as postgres_server:
            yield Backend(postgres_server.url, postgres_server.stop, postgres_server.start)


def job_ids() -> list[str]:
    return [f"job-{number}" for number in range(JOBS)]


def verify(http: httpx.Client, job_id: str) -> tuple[int, dict[str, Any]]:
    response = http.get(f"/immortus/verify/{job_id}")
    return response.status_code, body_of(response)


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.timeout(600)
def test_jobs_run_through_a_store_outage_and_end_in_their_true_state(
    backend: Backend, tmp_path: Path
) -> None:
    worker = WorkerProcess(
        "the outage worker",
        [
            sys.executable,
            "-m",
            "tests.reliability.outage_worker",
            str(tmp_path),
            f"{JOBS}",
            f"{STEPS}",
        ],
        env=worker_environment(backend.url, IMMORTUS_SPOOL_DIR=str(tmp_path / "spool")),
        log=tmp_path / "worker.log",
        stop_signal=signal.SIGINT,
    )
    app = Starlette(routes=[immortus_routes()])
    with (
        pristine_immortus(),
        running_worker(worker),
        serve_asgi(app) as base,
        httpx.Client(base_url=base, timeout=TIMEOUT) as http,
    ):
        immortus.configure(store=backend.url, open_endpoints=True)

        # Half way, with the store up: every job reads "started" at 50 %.
        halfway = [tmp_path / f"{job_id}.half" for job_id in job_ids()]
        wait_for(lambda: worker.exited() or all(map(Path.exists, halfway)), TIMEOUT, "half way")
        assert not worker.exited(), "the worker died"
        for job_id in job_ids():
            code, body = verify(http, job_id)
            assert (code, body["status"], body["progress"]["current"]) == (200, "started", 10)

        # The store goes away; the jobs go on and end: their side effect happens.
        backend.take_down()
        down_at = utcnow()
        (tmp_path / "resume").touch()
        done = [tmp_path / f"{job_id}.done" for job_id in job_ids()]
        wait_for(lambda: worker.exited() or all(map(Path.exists, done)), TIMEOUT, "the jobs")
        assert not worker.exited(), "the worker died"
        for job_id in job_ids():  # verify cannot answer, and says so for the job asked about
            code, body = verify(http, job_id)
            assert (code, body["job_id"], body["error"]["type"]) == (
                503,
                job_id,
                "StoreUnavailable",
            )

        # The store is back: the worker writes what it held, in order, with the true times.
        back_at = utcnow()
        backend.bring_back()

        def all_completed() -> bool:
            return all(verify(http, job_id)[1].get("completed") for job_id in job_ids())

        wait_for(all_completed, TIMEOUT, "every job to read its final state")
        for number, job_id in enumerate(job_ids()):
            code, body = verify(http, job_id)
            assert code == 200
            assert body["progress"]["current"] == STEPS  # not stuck at an older progress
            assert body["progress"]["percent"] == 100.0
            assert body["progress"]["message"] == f"step {STEPS}"
            assert body["attempts"] == 1
            assert down_at < moment(body["finished_at"]) < back_at  # when it ended, not replayed
            if number == JOBS - 1:
                assert (body["status"], body["success"]) == ("failed", False)
                assert body["error"]["type"] == "ValueError"
                assert body["error"]["message"] == "boom at the end"
            else:
                assert (body["status"], body["success"], body["error"]) == (
                    "finished",
                    True,
                    None,
                )

    log = worker.log.read_text()
    assert "is unreachable" in log
    assert "held tracking events in order (0 dropped during the outage)" in log
    assert "buffered=0, dropped=0" in log.rsplit("stopping;", 1)[1]
    assert "Traceback" not in log  # no store error reached a job, nor immortus's notify
    assert "lost" not in log
