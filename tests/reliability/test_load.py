"""Issue 7 item 5: 1 000 pollers for 60 s and 200 SSE streams against the ASGI adapter.

Each test runs ``bench/load/`` for real against one store: a uvicorn process serving
``immortus_routes("/jobs")``, ``wrk`` holding 1 000 keep-alive connections that poll random
seeded jobs, 200 SSE clients following jobs that a writer thread starts, moves and ends during the
run, and the writer moving the progress of the polled running jobs all along. See the tool's
docstring for what is counted and how.

Asserted: zero errors (every poll answered 200, no socket error or timeout, every stream ended
with its job's final ``completed`` frame and no error frame, every write taken, nothing logged
on either side, the warm-up included) and the server's memory, idle after the run, at most
:data:`MEMORY_GROWTH_LIMIT` above what it was idle after the warm-up. Latency is printed, never
asserted. ``pytest -s`` shows the table; the figures also go to ``bench/results/latest.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest

from bench.load import LoadPlan, LoadReport, render, run_load, save
from tests.support import pristine_immortus

#: The issue's sizes: 1 000 pollers for 60 s, 200 streams.
PLAN: Final = LoadPlan(pollers=1000, duration=60.0, streams=200)
MIB: Final = 1 << 20
#: The most the idle server may grow between the end of the warm-up and the end of the run.
#:
#: The warm-up has already run the same load (1 000 connections, 200 streams) for 10 s, so the
#: server's buffers, thread pool, store connections and SQLite page cache are at their working
#: size when the start is read; what the run may add is allocator fragmentation: 0.6-0.7 MiB
#: measured (of some 60-70 MiB; up to 6 MiB after a 5 s warm-up on a busy machine, which had not
#: reached the working size). A leak grows with the requests: the run makes 35 000 (Redis, on a
#: busy machine) to 100 000 (SQLite) of them, so 16 MiB (25 % of the start) catches a leak of
#: 500 bytes a request, less than one verify body with its dict.
MEMORY_GROWTH_LIMIT: Final = 16 * MIB

pytestmark = [pytest.mark.slow, pytest.mark.alone, pytest.mark.timeout(300)]


def _check(report: LoadReport) -> None:
    """Print and save ``report``'s figures, then assert the run saw no error and no leak."""
    print()
    print(render([report]))
    save([report])
    polls, streams, memory = report.polls, report.streams, report.memory
    assert polls.requests > 0, "wrk answered no request"
    assert polls.statuses == {"200": polls.requests}, f"polls not answered 200: {polls.statuses}"
    assert not any(polls.socket_errors.values()), f"wrk socket errors: {polls.socket_errors}"
    assert streams.errors == {}, f"streams that went wrong: {streams.errors}"
    assert streams.completed == streams.streams == PLAN.streams
    assert report.writes > 0
    assert report.writer_errors == 0, f"{report.writer_errors} writes refused by the store"
    assert report.writer_log == [], "immortus logged in the writer:\n" + "\n".join(
        report.writer_log
    )
    assert report.server_log == [], "the server logged:\n" + "\n".join(report.server_log)
    assert report.warmup_errors == 0, f"{report.warmup_errors} errors in the warm-up"
    assert memory.growth_bytes < MEMORY_GROWTH_LIMIT, (
        f"the server grew by {memory.growth_bytes / MIB:.1f} MiB "
        f"({memory.start_bytes / MIB:.1f} -> {memory.end_bytes / MIB:.1f} MiB)"
    )


def test_sqlite_store_under_load(tmp_path: Path) -> None:
    with pristine_immortus():
        report = run_load(
            PLAN, f"sqlite:///{tmp_path / 'jobs.sqlite3'}", name="sqlite", folder=tmp_path
        )
    _check(report)


def test_redis_store_under_load(redis_url: str, tmp_path: Path) -> None:
    with pristine_immortus():
        report = run_load(PLAN, redis_url, name="redis", folder=tmp_path)
    _check(report)
