"""The site of ``bench/peer/``: the peer project under gunicorn, and its answers.

:func:`site` serves ``bench/peer/project.py`` with gunicorn, 2 worker processes of the
``gthread`` class (4 threads each): the production WSGI server Django's deployment docs start
with, in the threaded mode ``docs/django.md`` recommends for immortus's stream route. It keeps
connections alive, as a polling browser does (the ``sync`` class closes each after one answer,
so every request would pay a TCP handshake). Both routes go through the same processes,
middleware and Celery app. :class:`Site` reads the CPU time its worker processes used, a steadier
figure than the wall clock on a machine shared with other work.

:func:`check_answers` checks, before anything is timed, that both routes answer what each task
did.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

from bench.common import BenchError, log
from bench.peer.seed import EXPECTED, SeededJob, environment
from devservices import end_process, free_port, tail
from devservices.processes import ROOT, tree_cpu_seconds

__all__ = [
    "SIDES",
    "Deployment",
    "Site",
    "answer_problem",
    "check_answers",
    "fetch",
    "path_of",
    "site",
]

#: The two routes compared, by the name of their package: ours first.
SIDES: Final = ("immortus", "celery-progress")


@dataclass(frozen=True, slots=True)
class Deployment:
    """How gunicorn serves the project."""

    workers: int = 2
    threads: int = 4

    def describe(self) -> str:
        """One line for the report."""
        return (
            f"gunicorn {version('gunicorn')}, {self.workers} workers x {self.threads} threads "
            "(gthread)"
        )


@dataclass(frozen=True, slots=True)
class Site:
    """The running server: its base URL and its master process."""

    url: str
    process: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """CPU seconds (user and system) the server's processes have used so far."""
        return tree_cpu_seconds(self.process.pid)


def path_of(job: SeededJob, side: str) -> str:
    """The path of ``job``'s status on ``side`` (one of :data:`SIDES`)."""
    return job.ours if side == "immortus" else job.theirs


@contextlib.contextmanager
def site(
    redis_url: str, store_url: str, folder: Path, deployment: Deployment | None = None
) -> Iterator[Site]:
    """Serve the peer project with gunicorn on a free port; yield it.

    Raises:
        BenchError: gunicorn exited, or did not answer within 60 s.
    """
    deployment = deployment or Deployment()
    port = free_port()
    log_file = folder / "peer-gunicorn.log"
    command = [
        sys.executable, "-m", "gunicorn", "django.core.wsgi:get_wsgi_application()",
        "--bind", f"127.0.0.1:{port}", "--workers", str(deployment.workers),
        "--worker-class", "gthread", "--threads", str(deployment.threads),
        "--log-level", "warning",
    ]  # fmt: skip
    with log_file.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment(redis_url, store_url),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _answers(url):
            if process.poll() is not None:
                raise BenchError(f"gunicorn exited with {process.returncode}:\n{tail(log_file)}")
            if time.monotonic() > deadline:
                raise BenchError(f"gunicorn did not answer within 60 s:\n{tail(log_file)}")
            time.sleep(0.1)
        yield Site(url, process)
    finally:
        code = end_process(process, 60)
        if code != 0:
            log(f"gunicorn exited with {code}:\n{tail(log_file)}")


def _answers(url: str) -> bool:
    """Tell whether the server answers (a JSON 404 for an id nobody has)."""
    try:
        status, _ = fetch(url, "/immortus/verify/nobody")
    except OSError:
        return False
    return status == 404


def fetch(url: str, path: str) -> tuple[int, Any]:
    """GET ``url + path``; return the status and the decoded JSON body."""
    try:
        with urllib.request.urlopen(url + path, timeout=10) as answer:  # noqa: S310 - ours
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def check_answers(url: str, jobs: Sequence[SeededJob], sample: int = 40) -> dict[str, Any]:
    """Check both routes answer what each of ``sample`` jobs (of every kind) did.

    Returns both bodies of the first in-progress job, by side.

    Raises:
        BenchError: a route answered something else than 200 and the task's state.
    """
    for job in jobs[:: max(1, len(jobs) // sample)]:
        for side in SIDES:
            status, body = fetch(url, path_of(job, side))
            problem = answer_problem(job, side, status, body)
            if problem:
                raise BenchError(f"{side} on task {job.number} ({job.kind}): {problem}: {body}")
    first = next(job for job in jobs if job.kind == "in_progress")
    return {side: fetch(url, path_of(first, side))[1] for side in SIDES}


def answer_problem(job: SeededJob, side: str, status: int, body: Any) -> str:
    """Return what is wrong with ``side``'s answer about ``job`` (``""``: nothing)."""
    if status != 200 or not isinstance(body, dict):
        return f"status {status}"
    progress = body.get("progress") or {}
    if job.kind == "in_progress" and (progress.get("current"), progress.get("total")) != (
        job.row,
        100,
    ):
        return f"progress is not {job.row} of 100"
    return _their_problem(job, body) if side == "celery-progress" else _our_problem(job, body)


def _their_problem(job: SeededJob, body: dict[str, Any]) -> str:
    celery_state = EXPECTED[job.kind][1]
    result = {
        "in_progress": None,
        "finishes": {"rows": job.number},
        "fails": f"row {job.number} is malformed",
    }[job.kind]
    if body.get("state") != celery_state or body.get("result") != result:
        return f"not {celery_state} with result {result!r}"
    return ""


def _our_problem(job: SeededJob, body: dict[str, Any]) -> str:
    state = EXPECTED[job.kind][0]
    if body.get("job_id") != job.job_id or body.get("status") != state.value:
        return f"not {state.value}"
    error = body.get("error") or {}
    if (job.kind == "fails") != (error.get("type") == "ValueError"):
        return "the error is wrong"
    if body.get("enqueued_at") is None or body.get("started_at") is None:
        return "no enqueued_at or started_at"
    return ""
