"""``immortus demo`` in a process of its own, for the demo's browser test and the screenshots."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import immortus
from immortus.config import STORE_ENV

SRC = str(Path(immortus.__file__).resolve().parents[1])


def _read(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


@contextlib.contextmanager
def running_demo(*options: str, temporary: Path | None = None) -> Iterator[str]:
    """Run ``immortus demo --port 0 *options`` until the block ends (then Ctrl-C); its URL.

    ``temporary`` is where its temporary folder goes (default: the system's).
    """
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop(STORE_ENV, None)
    if temporary is not None:
        env["TMPDIR"] = str(temporary)
    command = [sys.executable, "-m", "immortus", "demo", "--port", "0", *options]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read, args=(process.stdout, lines), daemon=True).start()
    try:
        line = ""
        while not line.startswith("immortus demo: open "):
            line = lines.get(timeout=60)
        yield line.split()[3].rstrip("/")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()
