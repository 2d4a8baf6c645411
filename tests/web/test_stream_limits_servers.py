"""Bounded streams on real servers: gunicorn ``gthread`` (4 threads) for Flask and Django, uvicorn.

Each WSGI server runs in a subprocess of its own, with one worker of four threads: the shape in
which unbounded streams took every thread (``/health`` timed out). The apps are written to a
temporary directory; the test process and the server share a SQLite store, so the test drives
the jobs and the server's change feed sees them. The routes require tokens (a secret key) bound
to a subject (the ``X-User`` header), with the default WSGI limits: two streams per process,
one per token and per subject. Django's ASGI side runs under uvicorn in a subprocess too;
Starlette under uvicorn in a thread of the test process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request

import immortus
from immortus import lifecycle
from immortus.web import Verifier
from immortus.web.asgi import immortus_routes
from immortus.web.django.settings import derive_secret_key
from immortus.web.stream import retry_frame
from immortus.web.stream_limits import WSGI_LIMITS, StreamLimits, get_limiter
from tests.services.base import HOST, free_port, tail, wait_until
from tests.web.servers import serve_asgi

SECRET = "stream-limits-secret"  # noqa: S105  # a test key, never deployed
DEADLINE = 10.0  # generous: the machine may be loaded
ROOT = Path(__file__).resolve().parents[2]

FLASK_APP = """
import os
from flask import Flask, request
import immortus
from immortus.web.flask import immortus_blueprint
from immortus.web.stream_limits import StreamLimits

immortus.configure(store=os.environ["STORE"], secret_key=os.environ["SECRET"], progress_interval=0)
app = Flask(__name__)
app.register_blueprint(immortus_blueprint(subject=lambda: request.headers.get("X-User")))
short = StreamLimits.wsgi(lifetime=float(os.environ["LIFETIME"]))
app.register_blueprint(immortus_blueprint("/short", name="short", streams=short))


@app.get("/health")
def health():
    return "ok"
"""

DJANGO_APP = """
import os
from django.conf import settings

settings.configure(
    SECRET_KEY=os.environ["SECRET"],
    ALLOWED_HOSTS=["127.0.0.1"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["immortus.web.django"],
    DATABASES={},
    USE_TZ=True,
    IMMORTUS={
        "store": os.environ["STORE"],
        "progress_interval": 0,
        "streams": {
            "lifetime": float(os.environ["LIFETIME"]),
            **({"max_open": int(os.environ["MAX_OPEN"])} if "MAX_OPEN" in os.environ else {}),
        },
    },
    IMMORTUS_SUBJECT=__name__ + ".user_of",
)
import django

django.setup()
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse
from django.urls import include, path


def user_of(request):
    return request.headers.get("X-User")


def health(request):
    return HttpResponse("ok")


urlpatterns = [path("immortus/", include("immortus.web.django.urls")), path("health", health)]
application = get_wsgi_application()
asgi = get_asgi_application()
"""

APPS = {"flask": (FLASK_APP, "app"), "django": (DJANGO_APP, "application")}


class Server:
    """A gunicorn server of one app, and the tokens it accepts."""

    def __init__(self, url: str, kind: str) -> None:
        self.url = url
        key = derive_secret_key(SECRET) if kind == "django" else SECRET
        self.signer = Verifier(secret_key=key)

    def stream_url(self, job_id: str, user: str | None, prefix: str = "immortus") -> str:
        token = self.signer.token_for(job_id, subject=user)
        return f"{self.url}/{prefix}/stream/{job_id}?token={token}"


@contextmanager
def serve(
    tmp_path: Path, kind: str, *, lifetime: float = 600.0, asgi: dict[str, str] | None = None
) -> Iterator[Server]:
    """Serve the ``kind`` app with gunicorn, one ``gthread`` worker of 4 threads; yield it.

    With ``asgi`` (more environment variables), the Django app's ASGI side with uvicorn instead.
    """
    source, name = APPS[kind]
    folder = tmp_path / f"{kind}-{lifetime:g}-{'asgi' if asgi else 'wsgi'}"
    folder.mkdir()
    (folder / f"{kind}_streams.py").write_text(textwrap.dedent(source))
    port = free_port()
    log = folder / "server.log"
    command = [
        *(sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--threads", "4"),
        *("--workers", "1", "--bind", f"{HOST}:{port}", "--chdir", str(folder)),
        *("--graceful-timeout", "1", "--log-level", "warning", f"{kind}_streams:{name}"),
    ]
    if asgi is not None:
        command = [
            *(sys.executable, "-m", "uvicorn", "--host", HOST, "--port", str(port)),
            *("--app-dir", str(folder), "--log-level", "warning", f"{kind}_streams:asgi"),
        ]
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT / "src"), str(ROOT)]),
        "STORE": f"sqlite:///{tmp_path / 'jobs.db'}",
        "SECRET": SECRET,
        "LIFETIME": str(lifetime),
        **(asgi or {}),
    }
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=environment, stdout=output, stderr=output)
    url = f"http://{HOST}:{port}"
    try:
        assert wait_until(lambda: answers(f"{url}/health"), 30, interval=0.1), tail(log)
        yield Server(url, kind)
    finally:
        process.terminate()
        try:
            process.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(DEADLINE)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=DEADLINE).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def opened(url: str, user: str | None) -> Iterator[tuple[httpx.Response, Iterator[bytes]]]:
    """Open a stream; yield the response and its frames (the first already read if 200)."""
    with (
        httpx.Client(timeout=DEADLINE) as client,
        client.stream("GET", url, headers={"X-User": user or ""}) as response,
    ):
        frames = raw_frames(response)
        yield response, frames


def raw_frames(response: httpx.Response) -> Iterator[bytes]:
    """Yield each SSE frame of ``response`` as it arrives, with its blank line."""
    buffer = b""
    for chunk in response.iter_bytes():
        buffer += chunk
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            yield frame + b"\n\n"


@pytest.fixture
def jobs(tmp_path: Path) -> None:
    """The store the servers read: jobs 1 to 9 are running."""
    immortus.configure(store=f"sqlite:///{tmp_path / 'jobs.db'}", progress_interval=0)
    for number in range(1, 10):
        lifecycle.job_started(f"job-{number}")


@pytest.fixture(params=["flask", "django"])
def server(request: pytest.FixtureRequest, tmp_path: Path, jobs: None) -> Iterator[Server]:
    with serve(tmp_path, request.param) as started:
        yield started


def refused(response: httpx.Response, status: int) -> None:
    """Check a stream refused by the limits: ``status``, JSON, ``Retry-After``."""
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"] == str(WSGI_LIMITS.retry_after)
    response.read()
    assert response.json()["error"]["type"] == "TooManyStreams"


def test_past_the_limits_streams_are_refused_and_health_answers(server: Server) -> None:
    with ExitStack() as held:
        first, frames = held.enter_context(opened(server.stream_url("job-1", "ann"), "ann"))
        assert first.status_code == 200
        assert next(frames).startswith(b"data: ")
        with opened(server.stream_url("job-2", "ann"), "ann") as (same_user, _):
            refused(same_user, 429)  # one per subject
        second, frames = held.enter_context(opened(server.stream_url("job-2", "bob"), "bob"))
        assert second.status_code == 200
        assert next(frames).startswith(b"data: ")
        with opened(server.stream_url("job-3", "cat"), "cat") as (third, _):
            refused(third, 503)  # two per process
        # Two of the four threads stream: the others answer everything else.
        for _ in range(8):
            assert httpx.get(f"{server.url}/health", timeout=DEADLINE).text == "ok"
    # The clients left: their slots come back (at the next keep-alive write).
    assert wait_until(lambda: admitted(server, "job-3", "cat"), DEADLINE, interval=0.1)


def admitted(server: Server, job_id: str, user: str) -> bool:
    with opened(server.stream_url(job_id, user), user) as (response, _):
        return response.status_code == 200


def test_hit_and_run_clients_do_not_hold_threads(server: Server) -> None:
    """Clients that read the first frame and leave, four at a time, while health is probed."""
    probes: list[int | str] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            try:
                probes.append(httpx.get(f"{server.url}/health", timeout=5).status_code)
            except httpx.TransportError as exc:
                probes.append(type(exc).__name__)

    def hit_and_run(number: int) -> None:
        user = f"user-{number}"
        with opened(server.stream_url(f"job-{number}", user), user) as (response, frames):
            if response.status_code == 200:
                next(frames)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for _ in range(3):
            runners = [threading.Thread(target=hit_and_run, args=(n,)) for n in range(1, 5)]
            for runner in runners:
                runner.start()
            for runner in runners:
                runner.join(DEADLINE)
    finally:
        done.set()
        prober.join(DEADLINE)
    assert probes
    assert set(probes) == {200}
    # Every slot came back: two streams open at once again.
    assert wait_until(lambda: both_admitted(server), DEADLINE, interval=0.1)


def both_admitted(server: Server) -> bool:
    with ExitStack() as held:
        return all(
            held.enter_context(opened(server.stream_url(job_id, user), user))[0].status_code == 200
            for job_id, user in (("job-5", "dan"), ("job-6", "eve"))
        )


@pytest.mark.parametrize("kind", ["flask", "django"])
def test_the_lifetime_ends_a_stream_with_a_retry_field(
    tmp_path: Path, jobs: None, kind: str
) -> None:
    with serve(tmp_path, kind, lifetime=0.5) as short:
        prefix = "short" if kind == "flask" else "immortus"
        user = None if kind == "flask" else "ann"
        with opened(short.stream_url("job-1", user, prefix), user) as (response, frames):
            assert response.status_code == 200
            seen = list(frames)
    assert seen[0].startswith(b"data: ")
    assert seen[-1] == retry_frame(WSGI_LIMITS.reconnect)
    assert all(frame.startswith(b":") for frame in seen[1:-1])  # keep-alives only


# -- uvicorn ---------------------------------------------------------------------------------


def test_django_under_asgi_frees_the_slot_of_a_client_that_left(tmp_path: Path, jobs: None) -> None:
    with serve(tmp_path, "django", asgi={"MAX_OPEN": "1"}) as server:
        with opened(server.stream_url("job-1", "ann"), "ann") as (first, frames):
            assert first.status_code == 200
            assert next(frames).startswith(b"data: ")
            with opened(server.stream_url("job-2", "bob"), "bob") as (second, _):
                refused(second, 503)
        assert wait_until(lambda: admitted(server, "job-2", "bob"), DEADLINE, interval=0.1)


def user_of(request: Request) -> str | None:
    return request.headers.get("x-user")


@pytest.fixture
def asgi_url(jobs: None) -> Iterator[str]:
    immortus.configure(secret_key=SECRET)
    limits = StreamLimits.asgi(max_open=2, per_subject=1)
    short = StreamLimits.asgi(lifetime=0.2)
    app = Starlette(
        routes=[
            immortus_routes(subject=user_of, streams=limits),
            immortus_routes("/short", streams=short),
        ]
    )
    with serve_asgi(app) as url:
        yield url


def test_uvicorn_streams_are_bounded_and_a_leaving_client_frees_its_slot(asgi_url: str) -> None:
    server = Server(asgi_url, "starlette")
    limiter = get_limiter()
    before = limiter.open
    with ExitStack() as held:
        first, frames = held.enter_context(opened(server.stream_url("job-1", "ann"), "ann"))
        assert first.status_code == 200
        assert next(frames).startswith(b"data: ")
        with opened(server.stream_url("job-2", "ann"), "ann") as (same_user, _):
            assert same_user.status_code == 429
        second, frames = held.enter_context(opened(server.stream_url("job-2", "bob"), "bob"))
        assert second.status_code == 200
        assert next(frames).startswith(b"data: ")
        with opened(server.stream_url("job-3", "cat"), "cat") as (third, _):
            assert third.status_code == 503
            assert third.headers["retry-after"] == "5"
        assert limiter.open == before + 2
    assert wait_until(lambda: limiter.open == before, DEADLINE)
    with opened(server.stream_url("job-3", None, "short"), None) as (response, frames):
        assert response.status_code == 200
        seen = list(frames)
    assert seen[0].startswith(b"data: ")
    assert seen[-1] == retry_frame(StreamLimits.asgi().reconnect)
    assert limiter.open == before
