"""Where a Starlette verify's CPU goes next to the bare route's, under wrk, by sampling.

    .venv/bin/python -m bench.verify.profile [--seconds 4] [--connections 16]

Seeds the verify benchmark's SQLite store, then for each load (``bare``, ``verify``,
``verify_kept``) starts the Starlette app under uvicorn (one process, one event loop, as
``bench.verify`` runs it) with a sampler in the server process: a thread that looks at the event
loop's stack every millisecond (as py-spy would, from inside), while wrk loads the server for
``--seconds``. Each busy sample (the loop not waiting in ``epoll``) is counted under the layer of
its innermost frame: the server (uvicorn and h11), asyncio and the socket, Starlette, immortus's
web layer, its query layer and strategies, its stores, and the SQLite driver. The server's CPU
per request (from ``/proc``) is split by those shares, so the loads compare layer by layer in
µs: what verify adds is the difference to the bare route.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Final

from bench.common import log
from bench.verify.__main__ import JOBS, seed
from bench.verify.common import BODY_SIZE_VARIABLE, STORE_VARIABLE
from bench.verify.load import Load, loads, run_wrk
from bench.verify.servers import Server, http_get
from devservices import end_process, free_port
from devservices.processes import ROOT, python_path

__all__ = ["main"]

#: The loads profiled, each on a server of its own.
PROFILED: Final = ("bare", "verify", "verify_kept")
#: Seconds between two samples of the event loop's stack.
INTERVAL: Final = 0.001
#: Layers, first match wins: (name, a piece of the path of the files that count in it).
LAYERS: Final = (
    ("immortus web", "/immortus/web/"),
    ("immortus stores", "/immortus/stores/"),
    ("immortus query, strategies", "/immortus/"),
    ("starlette", "/starlette/"),
    ("uvicorn, h11", "/uvicorn/"),
    ("uvicorn, h11", "/h11/"),
    ("asyncio, socket", "/asyncio/"),
    ("sqlite3 driver", "/sqlite3/"),
)
#: What the event loop's innermost frame is in while it waits for its sockets (not work).
IDLE: Final = ("selectors.py", "select")


def _layer(frame: FrameType) -> str | None:
    code = frame.f_code
    if code.co_filename.endswith(IDLE[0]) and code.co_name == IDLE[1]:
        return None
    for name, piece in LAYERS:
        if piece in code.co_filename:
            return name
    return "other Python"


def _sample(thread_id: int, counts: Counter[str], stop: threading.Event) -> None:
    """Count the layer of ``thread_id``'s innermost frame every :data:`INTERVAL` until ``stop``."""
    while not stop.wait(INTERVAL):
        frame = sys._current_frames().get(thread_id)
        if frame is not None:
            counts[_layer(frame) or "idle"] += 1


def serve_sampled(port: int, output: str) -> None:
    """Run the benchmark's Starlette app under uvicorn, sampled; write the counts at exit."""
    import uvicorn

    from bench.verify.starlette_app import app

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    # uvicorn stops at SIGTERM, then raises it again under the handler it found: exit cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # The sampler gets the GIL within 10 µs of asking, not 5 ms: at any bytecode, not only
    # where the loop lets go of it (I/O), which would bias the samples towards I/O.
    sys.setswitchinterval(1e-5)
    counts: Counter[str] = Counter()
    stop = threading.Event()
    sampler = threading.Thread(
        target=_sample, args=(threading.get_ident(), counts, stop), daemon=True
    )
    sampler.start()
    try:
        asyncio.run(server.serve())
    finally:
        stop.set()
        sampler.join()
        Path(output).write_text(json.dumps(counts))


def main(argv: Sequence[str] | None = None) -> int:
    """Sample each load on a server of its own; print each layer's CPU µs per request."""
    parser = argparse.ArgumentParser(prog="python -m bench.verify.profile", description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0, help="wrk seconds per load (4)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_sampled(int(args.serve[0]), args.serve[1])
        return 0
    with tempfile.TemporaryDirectory(prefix="immortus-profile-") as tmp:
        folder = Path(tmp)
        store_url = f"sqlite:///{folder / 'jobs.sqlite3'}"
        job_ids, tokens, size = seed(store_url, JOBS)
        by_name = {load.name: load for load in loads(job_ids, job_ids, tokens, kept=True)}
        per_request: dict[str, dict[str, float]] = {}
        for name in PROFILED:
            counts, cpu_us = _profile(folder, store_url, size, by_name[name], args)
            busy = sum(count for layer, count in counts.items() if layer != "idle")
            per_request[name] = {
                layer: cpu_us * count / busy for layer, count in counts.items() if layer != "idle"
            }
            log(f"{name}: {busy} busy samples, {cpu_us:.0f} µs CPU a request")
    print(render(per_request))
    return 0


def _profile(
    folder: Path, store_url: str, size: int, load: Load, args: argparse.Namespace
) -> tuple[dict[str, int], float]:
    """Serve, run ``load`` (a warm-up second, then the run), stop; the counts and CPU µs."""
    port, output = free_port(), folder / f"{load.name}.json"
    env = {
        **os.environ,
        STORE_VARIABLE: store_url,
        BODY_SIZE_VARIABLE: str(size),
        "PYTHONPATH": python_path(),
    }
    command = [sys.executable, "-m", "bench.verify.profile", "--serve", str(port), str(output)]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    server = Server(f"http://127.0.0.1:{port}", process.pid)
    try:
        _wait_for(server, process)
        run_wrk(server, load, folder, seconds=1, connections=args.connections)
        run = run_wrk(server, load, folder, seconds=args.seconds, connections=args.connections)
    finally:
        end_process(process)
    counts: dict[str, int] = json.loads(output.read_text())
    return counts, run.cpu_us_per_job


def _wait_for(server: Server, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            http_get(f"{server.url}/bare/x/y")
        except OSError:
            time.sleep(0.1)
        else:
            return
    raise SystemExit(f"the sampled server did not start ({process.poll()})")


def render(per_request: dict[str, dict[str, float]]) -> str:
    """The table: CPU µs per request per layer, one column per load."""
    names = list(per_request)
    rows = sorted({layer for found in per_request.values() for layer in found})
    lines = [
        "server CPU µs per request, split by the layer of the sampled innermost frame",
        f"{'layer':<28}" + "".join(f"{name:>13}" for name in names),
    ]
    lines += [
        f"{row:<28}" + "".join(f"{per_request[name].get(row, 0.0):>13.1f}" for name in names)
        for row in rows
    ]
    lines.append(
        f"{'total':<28}" + "".join(f"{sum(per_request[name].values()):>13.1f}" for name in names)
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
