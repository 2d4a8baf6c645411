"""The processes tests and benchmarks start: wait for them, read their logs and CPU, end them.

Every reader here takes a process id and looks in ``/proc`` (Linux): the benchmarks measure
servers and workers they did not write, from the outside.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

#: The repository's root: where tests and benchmarks start their servers and workers.
ROOT: Final = Path(__file__).resolve().parents[1]
#: Clock ticks a second, the unit of the CPU times in ``/proc/<pid>/stat``.
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


def python_path() -> str:
    """``PYTHONPATH`` for a child process: the repository's root first, then this one's."""
    return os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of the log file at ``path``, or a note that it has none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def pid_alive(pid: int) -> bool:
    """Tell whether process ``pid`` exists and is not a zombie."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        # No /proc: fall back to a signal probe (which counts zombies as alive).
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # The state follows the parenthesised command name, which may itself contain spaces.
    return stat_line.rpartition(")")[2].split()[0] != "Z"


def end_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """Stop a server or worker: SIGTERM, then SIGKILL after ``timeout`` s; return its exit code."""
    if process.poll() is None:
        process.terminate()
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def children(pid: int) -> list[int]:
    """The ids of ``pid``'s child processes (none if it is gone)."""
    try:
        listed = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in listed.split()]


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User plus system CPU seconds of process ``pid`` (all its threads), or of its thread ``tid``.

    Raises:
        OSError: the process (or thread) is gone.
    """
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text(encoding="ascii").rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (proc(5): 14, 15)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by process ``pid`` and its children (a child gone counts 0).

    Raises:
        OSError: ``pid`` itself is gone.
    """
    total = cpu_seconds(pid)
    for child in children(pid):
        try:
            total += cpu_seconds(child)
        except OSError:
            continue  # ended between the listing and the reading
    return total


def memory(pid: int) -> tuple[int, int]:
    """Return the process's resident memory now and its peak so far (``VmHWM``), in bytes.

    Raises:
        OSError: the process is gone.
    """
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            found[name] = int(value.split()[0]) * 1024
    return found["VmRSS"], found["VmHWM"]
