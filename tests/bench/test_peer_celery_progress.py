"""The peer benchmark's site works, so its figures cannot rot: a tiny run of every step.

A real Celery worker runs a few of ``bench/peer/project.py``'s tasks on the session's
redis-server; gunicorn serves the project; both status routes must answer what each task did,
and a short ``wrk`` load must measure both. Nothing here times anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.common import BenchError
from bench.peer.deployment import (
    SIDES,
    Deployment,
    Site,
    answer_problem,
    check_answers,
    fetch,
    site,
)
from bench.peer.measure import GROUPS, Load, measure
from bench.peer.report import render
from bench.peer.seed import SeededJob, seed
from devservices import RedisServer
from tests.support import pristine_immortus

#: Celery 5.7's Redis result backend stores an expiring result with redis-py's ``setex``, which
#: redis-py 8 deprecates: Celery's warning to fix, not ours.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning"),
]

#: The Redis database of these tests (Celery's broker and result backend): no other test uses it.
PEER_DB = 6
#: Tasks seeded: every kind twice (half of them in progress).
JOBS = 8


@pytest.fixture(scope="module")
def seeded(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[SeededJob], str, str, Path]:
    """The seeded tasks, the Redis URL, immortus's store URL and the folder of their files."""
    redis_server.ensure_running()
    url = redis_server.url.rpartition("/")[0] + f"/{PEER_DB}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    folder = tmp_path_factory.mktemp("peer")
    with pristine_immortus():
        jobs, store_url = seed(url, folder, JOBS)
    return jobs, url, store_url, folder


@pytest.fixture(scope="module")
def server(seeded: tuple[list[SeededJob], str, str, Path]) -> Iterator[Site]:
    """The peer project under gunicorn (one worker, two threads: a small machine's share)."""
    _, url, store_url, folder = seeded
    with site(url, store_url, folder, Deployment(workers=1, threads=2)) as running:
        yield running


def _job(jobs: list[SeededJob], kind: str) -> SeededJob:
    return next(job for job in jobs if job.kind == kind)


def test_the_tasks_ran_as_seeded(seeded: tuple[list[SeededJob], str, str, Path]) -> None:
    jobs = seeded[0]
    assert [job.kind for job in jobs] == ["in_progress", "finishes", "in_progress", "fails"] * 2
    assert len({job.job_id for job in jobs}) == JOBS
    assert all(job.token.startswith("v1.") for job in jobs)


def test_both_routes_answer_a_task_in_progress(
    seeded: tuple[list[SeededJob], str, str, Path], server: Site
) -> None:
    job = _job(seeded[0], "in_progress")
    assert fetch(server.url, job.theirs) == (
        200,
        {
            "state": "PROGRESS",
            "complete": False,
            "success": None,
            "progress": {
                "pending": False,
                "current": job.row,
                "total": 100,
                "percent": float(job.row),
                "description": f"row {job.row}",
            },
        },
    )
    status, ours = fetch(server.url, job.ours)
    assert status == 200
    assert {key: ours[key] for key in ("job_id", "job_class", "status", "completed")} == {
        "job_id": job.job_id,
        "job_class": "bench.peer.project.in_progress",
        "status": "started",
        "completed": False,
    }
    assert ours["progress"] == {
        "current": job.row,
        "total": 100,
        "percent": float(job.row),
        "message": f"row {job.row}",
    }
    assert ours["enqueued_at"] is not None
    assert ours["started_at"] is not None


def test_both_routes_answer_an_ended_task(
    seeded: tuple[list[SeededJob], str, str, Path], server: Site
) -> None:
    finished, failed = _job(seeded[0], "finishes"), _job(seeded[0], "fails")
    status, theirs = fetch(server.url, finished.theirs)
    assert (status, theirs["state"], theirs["result"]) == (200, "SUCCESS", {"rows": 1})
    status, theirs = fetch(server.url, failed.theirs)
    assert (status, theirs["state"], theirs["result"]) == (200, "FAILURE", "row 3 is malformed")
    status, ours = fetch(server.url, finished.ours)
    assert (status, ours["status"], ours["success"]) == (200, "finished", True)
    status, ours = fetch(server.url, failed.ours)
    assert (status, ours["status"], ours["error"]) == (
        200,
        "failed",
        {"type": "ValueError", "message": "row 3 is malformed"},
    )
    assert ours["finished_at"] is not None


def test_the_benchmark_checks_every_answer(
    seeded: tuple[list[SeededJob], str, str, Path], server: Site
) -> None:
    jobs = seeded[0]
    bodies = check_answers(server.url, jobs, sample=JOBS)
    assert bodies["celery-progress"]["state"] == "PROGRESS"
    assert bodies["immortus"]["status"] == "started"
    # The check fails on a wrong answer: the body of a task in progress for an ended one.
    finished = _job(jobs, "finishes")
    for side in SIDES:
        assert answer_problem(finished, side, 200, bodies[side]) != ""
        assert answer_problem(finished, side, 404, {}) == "status 404"


def test_our_route_refuses_a_task_without_its_token(
    seeded: tuple[list[SeededJob], str, str, Path], server: Site
) -> None:
    job = _job(seeded[0], "in_progress")
    status, body = fetch(server.url, job.ours.partition("?")[0])
    assert (status, body["status"]) == (404, "unknown")


def test_a_short_load_measures_both_routes_on_every_group(
    seeded: tuple[list[SeededJob], str, str, Path], server: Site
) -> None:
    jobs, _, _, folder = seeded
    load = Load(connections=2, rounds=1, seconds=1, warm_up=1)
    figures = measure(server, jobs, folder, load)
    for group in GROUPS:
        for side in SIDES:
            (run,) = figures.runs[group, side]
            assert run.requests > 0
            assert run.rate > 0
            assert run.p99_ms > 0
            assert run.cpu_rate > 0  # the server's CPU time was read
    bodies = {side: {"side": side} for side in SIDES}
    report = render(figures, bodies, jobs=JOBS, deployment=Deployment(1, 2), load=load)
    assert "ours / theirs on all tasks, req/s:" in report
    assert set(figures.as_json()) == set(GROUPS)


def test_a_route_answering_errors_voids_the_figures(
    seeded: tuple[list[SeededJob], str, str, Path], server: Site
) -> None:
    jobs, _, _, folder = seeded
    wrong = [
        SeededJob(job.job_id, job.kind, job.number, job.job_class, "v1.0.forged") for job in jobs
    ]  # every answer of ours is then a 404
    with pytest.raises(BenchError, match="Non-2xx"):
        measure(server, wrong, folder, Load(connections=1, rounds=1, seconds=1, warm_up=1))
