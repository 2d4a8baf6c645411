"""``immortus demo --smoke``: run every sample end to end through the web demo's HTTP API.

It serves the same site as ``immortus demo`` (:class:`~immortus.demo.server.DemoSite`) on a free
port of 127.0.0.1 and, with nothing but :mod:`urllib.request`, does what the page does: fetches
the page and the JavaScript client, starts every sample, cancels the long one once it has made
progress, and follows each job's verify endpoint (with its token) until it is completed. It
prints one line per job and exits 0 only if each ended as expected: ``finished``, ``failed`` at
60 %, ``finished`` after 2 attempts, ``cancelled``.

The samples run :data:`SMOKE_SPEED` times faster than in the demo, except the one it cancels,
which keeps its pace so that it is still running when the cancel arrives.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from typing import IO, Any, Final

from immortus.demo.hints import shown_store
from immortus.demo.queue import Pace
from immortus.demo.samples import RETRY_DELAY, SAMPLES, Sample
from immortus.demo.server import DemoSite, listen, make_server
from immortus.demo.web import CSRF_HEADER
from immortus.status import State

__all__ = ["SMOKE_SPEED", "run_smoke"]

#: How much faster than the demo the samples run.
SMOKE_SPEED: Final = 20.0
#: Seconds each wait (the server to start, a job to progress or complete) may take at most.
PATIENCE: Final = 60.0
#: Seconds between two polls of a job's verify endpoint.
POLL_INTERVAL: Final = 0.05
#: Seconds one HTTP request may take.
REQUEST_TIMEOUT: Final = 10.0

_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
_SCRIPT_TAG = '<script src="/immortus/immortus.js"></script>'


class _Failed(Exception):
    """The smoke run cannot go on; the message says why (never leaves this module)."""


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    #: By lower-case name.
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise _Failed(f"expected JSON, got {self.body[:80]!r}") from exc


def _lower(headers: Message) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


class _Client:
    """A few HTTP calls to the demo, with :mod:`urllib.request`."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.csrf_token = ""

    def request(self, method: str, path: str, data: object = None) -> _Answer:
        body = None if data is None else json.dumps(data).encode()
        headers = {"Accept": "application/json"}
        if body is not None:
            headers |= {"Content-Type": "application/json", CSRF_HEADER: self.csrf_token}
        request = urllib.request.Request(  # noqa: S310 - always http://127.0.0.1:port/ here
            self.base_url + path.lstrip("/"), data=body, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:  # noqa: S310
                return _Answer(response.status, _lower(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return _Answer(exc.code, _lower(exc.headers), exc.read())
        except (urllib.error.URLError, OSError) as exc:
            raise _Failed(f"{method} {path} failed: {exc}") from exc

    def verify(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """GET the job's verify body, with its token; fail on anything but 200."""
        quote = urllib.parse.quote
        path = f"/immortus/verify/{quote(job['job_id'], safe='')}/{quote(job['job_class'])}"
        answer = self.request("GET", f"{path}?token={quote(job['token'], safe='')}")
        if answer.status != 200:
            raise _Failed(f"GET {path} answered {answer.status}: {answer.body[:200]!r}")
        body: dict[str, Any] = answer.json()
        return body


def smoke_pace(speed: float) -> Pace:
    """Return the samples' pace ``speed`` times faster, except the cancellable ones'."""
    return lambda sample: sample.pace if sample.cancellable else sample.pace / speed


def run_smoke(
    *, speed: float = SMOKE_SPEED, store: str | None = None, stream: IO[str] | None = None
) -> int:
    """Run the smoke test; print one line per sample; return 0 if all ended as expected, else 1.

    Raises:
        InvalidStoreURL, StoreUnavailable: the store cannot be opened.
    """
    out = stream or sys.stdout
    sock = listen("127.0.0.1", 0)
    with contextlib.closing(sock):
        site = DemoSite(store=store, pace=smoke_pace(speed), retry_delay=RETRY_DELAY / speed)
        with site:
            assert site.app is not None  # noqa: S101 - set on entry
            server = make_server(site.app, sock)
            thread = threading.Thread(
                target=server.run, kwargs={"sockets": [sock]}, name="immortus-demo-smoke"
            )
            thread.start()
            try:
                host, port = sock.getsockname()[:2]
                url = f"http://{host}:{port}/"
                where = " (temporary)" if site.temporary_store else ""
                print(
                    f"smoke: the demo serves {url}; store: {shown_store(site.store)}{where}",
                    file=out,
                )
                _wait_for(lambda: server.started or not thread.is_alive(), "the server to start")
                return _check_all(_Client(url), out)
            except _Failed as exc:
                print(f"smoke: FAILED: {exc}", file=out)
                return 1
            finally:
                server.should_exit = True
                thread.join()


def _wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            raise _Failed(f"gave up waiting {PATIENCE:g} s for {what}")
        time.sleep(POLL_INTERVAL)


def _check_page(client: _Client, out: IO[str]) -> None:
    """The page and the JavaScript client are served; keep the page's CSRF token."""
    page = client.request("GET", "/")  # fails if the server's thread died before it started
    text = page.body.decode("utf-8", "replace")
    if page.status != 200 or _SCRIPT_TAG not in text:
        raise _Failed(f"GET / answered {page.status} without the client's script tag")
    found = _CSRF_META.search(text)
    if found is None:
        raise _Failed("the page carries no csrf-token meta tag")
    client.csrf_token = found.group(1)
    script = client.request("GET", "/immortus/immortus.js")
    if script.status != 200 or "javascript" not in script.headers.get("content-type", ""):
        raise _Failed(
            f"GET /immortus/immortus.js answered {script.status}: the JavaScript client is not "
            "installed, so the page cannot follow jobs"
        )
    print("page: GET / 200, GET /immortus/immortus.js 200", file=out)


def _start(client: _Client, sample: Sample) -> dict[str, Any]:
    answer = client.request("POST", f"/jobs/{sample.slug}", {})
    job = answer.json()
    if answer.status != 200 or not isinstance(job, dict) or not job.get("token"):
        raise _Failed(f"POST /jobs/{sample.slug} answered {answer.status}: {job!r}")
    return job


def _cancel_once_running(client: _Client, job: Mapping[str, Any], out: IO[str]) -> None:
    """Wait until the job has reported progress, then cancel it (with its token)."""
    _wait_for(lambda: client.verify(job)["progress"] is not None, f"{job['job_class']} to start")
    refused = client.request(
        "POST", f"/jobs/{job['job_id']}/cancel", {"job_class": job["job_class"]}
    )
    if refused.status != 404:
        raise _Failed(f"a cancel without the job's token answered {refused.status}, not 404")
    print("tokens: a cancel without the job's token answered 404", file=out)
    answer = client.request(
        "POST",
        f"/jobs/{job['job_id']}/cancel",
        {"job_class": job["job_class"], "token": job["token"]},
    )
    if answer.status != 202:
        raise _Failed(f"the cancel answered {answer.status}: {answer.body[:200]!r}")


def _check_all(client: _Client, out: IO[str]) -> int:
    _check_page(client, out)
    # The cancellable sample goes first, so a worker runs it at once.
    order = sorted(SAMPLES, key=lambda sample: not sample.cancellable)
    jobs = {sample.slug: _start(client, sample) for sample in order}
    for sample in order:
        if sample.cancellable:
            _cancel_once_running(client, jobs[sample.slug], out)
    final: dict[str, dict[str, Any]] = {}

    def all_completed() -> bool:
        for slug, job in jobs.items():
            if slug not in final and (body := client.verify(job))["completed"]:
                final[slug] = body
        return len(final) == len(jobs)

    _wait_for(all_completed, "every job to complete")
    surprises = 0
    for sample in SAMPLES:
        line, fine = _describe(sample, final[sample.slug])
        surprises += not fine
        print(line, file=out)
    print(
        "every sample ended as expected"
        if not surprises
        else f"{surprises} sample(s) did not end as expected",
        file=out,
    )
    return 0 if not surprises else 1


def _describe(sample: Sample, body: Mapping[str, Any]) -> tuple[str, bool]:
    """One line about the job's end, and whether it is the expected one."""
    state, attempts = body["status"], body["attempts"]
    progress = body.get("progress") or {}
    percent = progress.get("percent")
    error = body.get("error")
    if sample.cancellable:
        expected = f"{State.CANCELLED} after 1 attempt, part-way"
        fine = state == State.CANCELLED and attempts == 1 and percent is not None and percent < 100
    else:
        expected = f"{sample.expected} at {sample.ends_at:g} % after {sample.attempts} attempt(s)"
        fine = (
            state == sample.expected and attempts == sample.attempts and percent == sample.ends_at
        )
    shown = "-" if percent is None else f"{percent:g} %"
    reason = "" if not error else f"  {error['type'].rpartition('.')[2]}: {error['message']}"
    verdict = "as expected" if fine else f"NOT as expected: {expected}"
    return (
        f"{sample.slug:<14} {state:<9} attempts {attempts}  progress {shown:<7} {verdict}{reason}",
        fine,
    )
