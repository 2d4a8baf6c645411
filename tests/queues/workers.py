"""Worker subprocesses for the queue tests: start one, wait for it, stop it, show its log.

Each queue's test module builds its worker's command line; this module runs it the same way for
all of them: from the repository's root (importable through ``PYTHONPATH``), tracking into the
store ``IMMORTUS_STORE`` names, its output (stdout and stderr) in a log file whose end a failure
shows. A worker is stopped the way an operator stops it, with a signal that lets its running
jobs end first; one that ignores the signal is killed, and fails the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest

from tests.queues.scenarios import TIMEOUT
from tests.services.base import tail, wait_until

#: The repository's root: the workers' working directory, and on their ``PYTHONPATH``.
ROOT = Path(__file__).resolve().parents[2]
#: How many lines of a worker's log a failure shows.
LOG_LINES = 40


def worker_environment(store_url: str, **variables: str) -> dict[str, str]:
    """Return this process's environment for a worker tracking into ``store_url``.

    The repository's root goes first on ``PYTHONPATH`` (the worker imports the test apps), and
    ``variables`` (a broker's URL, say) are added last.
    """
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "IMMORTUS_STORE": store_url, "PYTHONPATH": path, **variables}


class WorkerProcess:
    """One worker subprocess, started at once, its stdout and stderr appended to ``log``.

    ``name`` says which worker a failure is about (``"the rq worker"``); ``stop_signal`` is the
    signal of its graceful shutdown.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: dict[str, str],
        log: Path,
        cwd: Path = ROOT,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.log = log
        self.stop_signal = stop_signal
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.process.pid

    def exited(self) -> bool:
        """Tell whether the worker has exited."""
        return self.process.poll() is not None

    def fail(self, what: str) -> NoReturn:
        """Fail the test: the worker ``what`` (``"did not start"``), and its log's last lines."""
        pytest.fail(f"{self.name} {what}; its log ends with:\n{tail(self.log, LOG_LINES)}")

    def wait_until_ready(self, ready: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        """Wait until ``ready()`` is true (the worker consumes jobs).

        Fails the test if the worker exits first, or is not ready within ``timeout`` seconds.
        """
        if not wait_until(lambda: self.exited() or ready(), timeout):
            self.fail(f"was not ready after {timeout:g} s")
        if self.exited():
            self.fail(f"exited with {self.process.returncode} at start")

    def send_signal(self, number: signal.Signals) -> None:
        """Send the worker the signal ``number``."""
        self.process.send_signal(number)

    def stop(self, timeout: float = TIMEOUT) -> int:
        """Stop the worker with its stop signal unless it has exited; return its exit code.

        Fails the test (after killing the worker) if it does not exit within ``timeout``
        seconds: a worker that ignores its stop signal.
        """
        if not self.exited():
            self.process.send_signal(self.stop_signal)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.fail(f"did not stop on {self.stop_signal.name} within {timeout:g} s")

    def kill(self) -> None:
        """Kill the worker (SIGKILL, as the OOM killer would) and reap it."""
        self.process.kill()
        self.process.wait(timeout=TIMEOUT)


@contextmanager
def running_worker(worker: WorkerProcess, *, clean_exit: bool = True) -> Iterator[WorkerProcess]:
    """Yield ``worker`` (already started); stop it gracefully when the block ends.

    With ``clean_exit``, a worker that exits with another code than 0 fails the test, once the
    block has run without error.
    """
    try:
        yield worker
    finally:
        code = worker.stop()
    if clean_exit and code != 0:
        worker.fail(f"exited with {code}")
