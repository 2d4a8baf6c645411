"""The server under load: one uvicorn process, its memory read from outside, its log kept."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.common import BenchError
from bench.load.plan import (
    STARTUP_SECONDS,
)
from devservices import HOST, end_process, free_port, tail
from devservices.processes import ROOT, memory, python_path


@dataclass(frozen=True, slots=True)
class Server:
    """The uvicorn process: its base URL, its pid, and the file its stderr goes to."""

    url: str
    pid: int
    log: Path


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - our own server
            status: int = answer.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@contextlib.contextmanager
def serve(store_url: str, secret: str, folder: Path, probe: str) -> Iterator[Server]:
    """Run uvicorn with ``bench.load.app:app`` until the block ends; yield it once ``probe``
    (a path) answers 200.

    Raises:
        BenchError: the server exited, or did not answer 200 in time.
    """
    port = free_port()
    env = {
        **os.environ,
        "IMMORTUS_LOAD_STORE": store_url,
        "IMMORTUS_LOAD_SECRET": secret,
        "PYTHONPATH": python_path(),
    }
    command = [
        sys.executable, "-m", "uvicorn", "bench.load.app:app",
        "--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log",
        "--backlog", "4096", "--timeout-graceful-shutdown", "5",
    ]  # fmt: skip
    log_path = folder / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
        )
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while (status := _status(url + probe)) != 200:
            if process.poll() is not None:
                raise BenchError(f"uvicorn exited with {process.returncode}: {tail(log_path)}")
            if time.monotonic() > deadline:
                raise BenchError(f"uvicorn answered {status}, not 200, for {STARTUP_SECONDS} s")
            time.sleep(0.1)
        yield Server(url, process.pid, log_path)
    finally:
        end_process(process, 15)


@contextlib.contextmanager
def sampling(pid: int, every: float) -> Iterator[list[int]]:
    """Read ``pid``'s resident memory every ``every`` seconds in the block; yield the readings."""
    readings: list[int] = []
    halt = threading.Event()

    def read() -> None:
        while not halt.wait(every):
            with contextlib.suppress(OSError, KeyError):
                readings.append(memory(pid)[0])

    reader = threading.Thread(target=read, name="load-memory", daemon=True)
    reader.start()
    try:
        yield readings
    finally:
        halt.set()
        reader.join()


def raise_open_files_limit(needed: int) -> None:
    """Raise this process's soft limit of open files to ``needed`` (children inherit it).

    Raises:
        BenchError: the hard limit is lower than ``needed``.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise BenchError(
            f"the load needs {needed} open files per process, but the hard limit is {hard}: "
            "raise it (ulimit -Hn, or LimitNOFILE for a service)"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


class LogLines(logging.Handler):
    """Keeps what is logged at WARNING or above, formatted, while installed on a logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")

    @contextlib.contextmanager
    def installed(self, logger: logging.Logger) -> Iterator[list[str]]:
        """Collect ``logger``'s records in the block; yield the list they go to."""
        logger.addHandler(self)
        try:
            yield self.lines
        finally:
            logger.removeHandler(self)
