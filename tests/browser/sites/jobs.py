"""What every test site shares: the jobs, the pages, the custom verify body and the settings.

A job runs in a thread of the site's process inside ``immortus.running``; it waits at each
step until the test releases it (``POST /jobs/{id}/step``), so the test decides exactly what
the browser can see and when.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import os
import socket
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import immortus
from immortus import lifecycle
from immortus.web import get_verifier

#: The job class of each kind of job a test can start.
JOB_CLASSES: Final = {"steps": "browser.steps", "fails": "browser.fails", "slow": "browser.slow"}
#: The secret that signs tokens in every site: tokens are always on.
SECRET_KEY: Final = "immortus-browser-tests-secret"  # noqa: S105  # test sites only
#: What the failing job raises.
FAILURE_MESSAGE: Final = "boom at 60 %"

PAGES: Final = Path(__file__).resolve().parents[1]
CSRF_PLACEHOLDER: Final = "<!-- csrf-meta -->"
BLANK_PAGE: Final = "<!doctype html><html><head><title>blank</title></head><body></body></html>"


class JobFailed(RuntimeError):
    """What the ``fails`` job raises (its error type on the wire is the qualified name)."""


def _steps(step: Callable[[], None]) -> None:
    """Report progress 1/3, 2/3, 3/3 (one per step), then finish at the fourth step."""
    for number in (1, 2, 3):
        step()
        immortus.progress(number, 3, f"step {number}")
    step()


def _fails(step: Callable[[], None]) -> None:
    """Report 60 % at the first step, then raise at the second."""
    step()
    immortus.progress(60, 100, "60 %")
    step()
    raise JobFailed(FAILURE_MESSAGE)


def _slow(step: Callable[[], None]) -> None:
    """Finish at the first step."""
    step()


_BODIES: Final = {"steps": _steps, "fails": _fails, "slow": _slow}
for _kind, _body in _BODIES.items():
    immortus.track(name=JOB_CLASSES[_kind], cancellable=True)(_body)


class JobBoard:
    """The jobs of this process: each a thread waiting on its own gate."""

    def __init__(self) -> None:
        self._gates: dict[str, threading.Semaphore] = {}
        self._lock = threading.Lock()

    def start(self, kind: str) -> tuple[str, str]:
        """Start a job of ``kind``; return ``(job_id, job_class)`` once it is tracked as started.

        Raises:
            ValueError: ``kind`` is no kind of job.
        """
        if kind not in _BODIES:
            raise ValueError(f"unknown kind of job {kind!r}")
        job_id, job_class = uuid.uuid4().hex, JOB_CLASSES[kind]
        gate, started = threading.Semaphore(0), threading.Event()
        with self._lock:
            self._gates[job_id] = gate
        thread = threading.Thread(
            target=self._run, args=(kind, job_id, gate, started), name=f"job-{job_id}", daemon=True
        )
        thread.start()
        if not started.wait(10):
            raise RuntimeError(f"job {job_id} did not start")
        return job_id, job_class

    def step(self, job_id: str) -> bool:
        """Let job ``job_id`` take its next step; ``False`` if there is no such job."""
        with self._lock:
            gate = self._gates.get(job_id)
        if gate is None:
            return False
        gate.release()
        return True

    @staticmethod
    def _run(kind: str, job_id: str, gate: threading.Semaphore, started: threading.Event) -> None:
        def step() -> None:
            gate.acquire()

        with contextlib.suppress(JobFailed), immortus.running(job_id, JOB_CLASSES[kind]):
            started.set()
            _BODIES[kind](step)


#: The jobs of this site's process.
BOARD: Final = JobBoard()


def start_job(body: Any) -> tuple[str, str]:
    """Start the job a ``POST /jobs`` body (``{"kind": ...}``) asks for.

    Raises:
        ValueError: the body names no kind of job.
    """
    kind = body.get("kind") if isinstance(body, dict) else None
    return BOARD.start(str(kind))


def cancel_job(job_id: str, body: Any) -> bool:
    """End job ``job_id`` ``cancelled`` if ``body`` (``{job_class, token}``) opens it.

    Its thread still waits at its step; whatever it reports later cannot change a job that
    has ended.
    """
    if not isinstance(body, dict):
        return False
    job_class = body.get("job_class")
    if get_verifier().verify(job_id, job_class, body.get("token")).status != 200:
        return False
    return lifecycle.job_cancelled(job_id, job_class)


def page(name: str, csrf_token: str | None = None) -> str | None:
    """Return the test page ``name`` (``page``, ``module`` or ``blank``), or ``None``.

    With ``csrf_token``, the page carries it in ``<meta name="csrf-token">``.
    """
    if name == "blank":
        return BLANK_PAGE
    if name not in ("page", "module"):
        return None
    text = (PAGES / f"{name}.html").read_text(encoding="utf-8")
    meta = (
        ""
        if csrf_token is None
        else f'<meta name="csrf-token" content="{html.escape(csrf_token)}">'
    )
    return text.replace(CSRF_PLACEHOLDER, meta)


def custom_verify(job_id: str) -> tuple[int, dict[str, Any]]:
    """Answer the site's own verify endpoint: ``(status, {job_id, completed, success, ...})``."""
    job = immortus.status(job_id)
    body = {
        "job_id": job.job_id,
        "completed": job.completed,
        "success": job.success,
        "state": job.state.value,
        "custom": True,
    }
    return (404 if job.state is immortus.State.UNKNOWN else 200), body


def parse_arguments() -> argparse.Namespace:
    """Read the site's command line: ``--port-file PATH --store URL``."""
    parser = argparse.ArgumentParser(description="an immortus test site")
    parser.add_argument("--port-file", type=Path, required=True, help="where to write the port")
    parser.add_argument("--store", required=True, help="the immortus store URL")
    return parser.parse_args()


def settings(store: str) -> dict[str, Any]:
    """Return the immortus settings of every site (tokens on, progress written at once)."""
    return {"store": store, "secret_key": SECRET_KEY, "progress_interval": 0}


def listening_socket() -> socket.socket:
    """Return a socket listening on a free port of 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def announce(port_file: Path, port: int) -> None:
    """Tell the test which port the site listens on (written whole, then renamed)."""
    partial = port_file.with_suffix(".partial")
    partial.write_text(str(port), encoding="utf-8")
    os.replace(partial, port_file)
