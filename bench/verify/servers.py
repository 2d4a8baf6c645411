"""The production servers the verify benchmark runs its three apps under.

- **Starlette**: uvicorn, one process, one event loop (``bench/verify/starlette_app.py``).
- **Flask** and **Django**: gunicorn, one worker process with gthread workers (4 threads;
  keep-alive, so wrk's connections stay open as they do under uvicorn). The sync worker closes
  the connection after every answer: each request would pay a TCP handshake, which would flatter
  the ratio. Never the Werkzeug or ``runserver`` development servers, for the same reason.

:func:`serve` starts one, waits until its bare route answers, and stops it at the end;
:meth:`Server.cpu_seconds` reads the CPU time its processes have used (user + system), so a load
can be judged by the server's CPU per request as well as by its rate: the steadier figure on a
machine shared with other work.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.common import BenchError
from bench.verify.common import BODY_SIZE_VARIABLE, STORE_VARIABLE
from devservices import end_process, free_port
from devservices.processes import ROOT, python_path, tree_cpu_seconds

__all__ = [
    "FRAMEWORKS",
    "GUNICORN_THREADS",
    "Framework",
    "Server",
    "http_get",
    "http_post",
    "serve",
]

#: Threads of the one gunicorn worker process serving Flask and Django.
GUNICORN_THREADS: Final = 4
#: How long a server may take to answer its first request.
START_TIMEOUT: Final = 30.0


@dataclass(frozen=True, slots=True)
class Framework:
    """One web framework: its name, the server that runs it, and the app it serves."""

    name: str
    label: str
    server: str
    app: str

    def command(self, port: int) -> list[str]:
        """The command that serves the app on ``127.0.0.1:port``."""
        if self.server == "uvicorn":
            return [
                sys.executable, "-m", "uvicorn", self.app,
                "--host", "127.0.0.1", "--port", str(port),
                "--log-level", "warning", "--no-access-log", "--workers", "1",
            ]  # fmt: skip
        return [
            sys.executable, "-m", "gunicorn", self.app,
            "--bind", f"127.0.0.1:{port}", "--workers", "1",
            "--worker-class", "gthread", "--threads", str(GUNICORN_THREADS),
            "--keep-alive", "30", "--log-level", "warning",
        ]  # fmt: skip

    def describe(self) -> str:
        """The server and its settings, for the report."""
        if self.server == "uvicorn":
            return "uvicorn, 1 process, 1 event loop"
        return f"gunicorn, 1 worker, gthread x {GUNICORN_THREADS} threads, keep-alive"


FRAMEWORKS: Final = (
    Framework("starlette", "Starlette", "uvicorn", "bench.verify.starlette_app:app"),
    Framework("flask", "Flask", "gunicorn", "bench.verify.flask_app:app"),
    Framework("django", "Django", "gunicorn", "bench.verify.django_app:application"),
)


@dataclass(frozen=True, slots=True)
class Server:
    """A running server: where it answers and its process (gunicorn's master, or uvicorn)."""

    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the server's process and its children.

        Raises:
            BenchError: the process is gone.
        """
        try:
            return tree_cpu_seconds(self.pid)
        except OSError as exc:
            raise BenchError(f"the server process {self.pid} is gone") from exc


def http_get(url: str) -> tuple[int, bytes]:
    """GET ``url``; return the status and the body (error statuses included)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - our own server
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post(url: str, body: str) -> tuple[int, bytes]:
    """POST ``body`` as JSON to ``url``; return the status and the body."""
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(  # noqa: S310 - our own server
        url, data=body.encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - our own server
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def serve(framework: Framework, store_url: str, body_size: int, logs: Path) -> Iterator[Server]:
    """Run ``framework``'s app on a free port; yield the server; stop it at the end.

    The server's output goes to ``logs/<name>.log``.

    Raises:
        BenchError: the server exited, or did not answer within 30 s.
    """
    port = free_port()
    env = {
        **os.environ,
        STORE_VARIABLE: store_url,
        BODY_SIZE_VARIABLE: str(body_size),
        "PYTHONPATH": python_path(),
        "DJANGO_SETTINGS_MODULE": "bench.verify.django_app",
    }
    log_path = logs / f"{framework.name}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            framework.command(port), cwd=ROOT, env=env, stdout=log_file, stderr=log_file
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                output = log_path.read_text(errors="replace")[-2000:]
                raise BenchError(f"{framework.server} exited with {process.returncode}:\n{output}")
            with contextlib.suppress(OSError):
                http_get(f"{url}/bare/x/y")
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{framework.server} did not answer within {START_TIMEOUT:g} s")
            time.sleep(0.1)
        yield Server(url, process.pid)
    finally:
        end_process(process)
