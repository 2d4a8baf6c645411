"""The Starlette adapter, served by a real uvicorn server in a thread: the contract, and more."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

import immortus
from immortus import JobStatus, State, TrackingStrategy, lifecycle
from immortus.exceptions import EndpointsNotSecured
from immortus.stores.base import Store
from immortus.web import Verifier
from immortus.web import starlette as starlette_adapter
from immortus.web.asgi import immortus_routes, render_job_response
from immortus.web.stream_limits import StreamLimits
from tests.support import import_error_without, modules_loaded_by
from tests.web.http_contract import (
    JSON_TYPE,
    REPORT,
    SECRET,
    ContractFixtures,
    HTTPContract,
    body_of,
    frames_of,
    token_of_rendered_job,
)
from tests.web.servers import serve_asgi
from tests.web.tracing import TracingVerifier


class BodyMeter:
    """ASGI middleware counting the request body bytes the app was handed."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.read = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            message = await receive()
            self.read += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


# -- what a user writes (docs/web.md shows the same) -------------------------------------


async def start_report(request: Request) -> JSONResponse:
    """An enqueue view: the job is 'enqueued' here, the browser gets what it needs to follow."""
    job_id = request.path_params["job_id"]
    lifecycle.job_enqueued(job_id, REPORT)
    return render_job_response(job_id, REPORT)


async def report_status(request: Request) -> JSONResponse:
    """A custom verify endpoint, followed by the JS client through ``verify_job_url``."""
    job = await immortus.astatus(request.path_params["job_id"], REPORT)
    body = {"job_id": job.job_id, "completed": job.completed, "success": job.success}
    return JSONResponse(
        body, status_code=404 if job.state is State.UNKNOWN else 200, headers=NO_STORE
    )


def user_of(request: Request) -> str | None:
    """The subject tokens are bound to: here the user a header names (a real app: its session)."""
    return request.headers.get("X-User")


async def user_of_async(request: Request) -> str | None:
    """The same subject, read by a coroutine function (an app awaiting its session store)."""
    return user_of(request)


async def start_bound_report(request: Request) -> JSONResponse:
    """An enqueue view binding the job's token to the user who enqueued it."""
    job_id = request.path_params["job_id"]
    lifecycle.job_enqueued(job_id, REPORT)
    return render_job_response(job_id, REPORT, subject=user_of(request))


#: A foreign origin: no answer invites it to read (no CORS headers).
EVIL = "http://evil.example"

NO_STORE = {"Cache-Control": "no-store"}
PREFIXES = ("immortus", "bound")
TRACING = TracingVerifier(interval=0.01)
APP = Starlette(
    routes=[
        immortus_routes(),
        immortus_routes("/traced/", verifier=TRACING),
        immortus_routes("/bound", subject=user_of),
        immortus_routes("/bound-async", subject=user_of_async),
        immortus_routes("/short", streams=StreamLimits.asgi(lifetime=0.5)),
        Route("/reports/{job_id}", start_report, methods=["POST"]),
        Route("/bound-reports/{job_id}", start_bound_report, methods=["POST"]),
        Route("/reports/{job_id}/status", report_status, name="report_status"),
    ]
)
METER = BodyMeter(APP)


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """A uvicorn server of ``METER(APP)``."""
    with serve_asgi(METER) as url:
        yield url


@pytest.fixture
def base_url(server_url: str) -> str:
    """The immortus prefix on the running server: what the contract needs."""
    return f"{server_url}/immortus"


@pytest.fixture
def short_lived_url(server_url: str) -> str:
    """A prefix whose streams live half a second: what the contract needs too."""
    return f"{server_url}/short"


class TestStarletteContract(HTTPContract):
    """The shared HTTP contract, against Starlette."""


class TestStarlette(ContractFixtures):
    """What only the ASGI adapter promises, or what needs its internals to check."""

    def test_the_event_loop_never_waits_for_a_strategy(
        self, http: httpx.Client, jobs: Store
    ) -> None:
        gate, asked = threading.Event(), threading.Event()

        class Gated(TrackingStrategy):
            def status(self, job_id: str) -> JobStatus:
                asked.set()
                assert gate.wait(10)
                return JobStatus(job_id=job_id, state=State.FINISHED)

        immortus.track(name="asgi.gated", strategy=Gated())(lambda: None)
        lifecycle.job_enqueued("job-2", REPORT)
        blocked: list[str] = []

        def follow_gated() -> None:
            with httpx.Client(base_url=http.base_url, timeout=10) as other:
                blocked.append(other.get("verify/slow/asgi.gated").json()["status"])

        waiter = threading.Thread(target=follow_gated)
        waiter.start()
        try:
            assert asked.wait(10)  # a worker thread of the server now blocks in the strategy
            with (
                http.stream("GET", f"stream/job-1/{REPORT}") as first,
                http.stream("GET", f"stream/job-2/{REPORT}") as second,
            ):
                one, two = frames_of(first), frames_of(second)
                assert next(one)[1] == body_of(http.get(f"verify/job-1/{REPORT}"))
                assert next(two)[1]["status"] == "created"  # type: ignore[index]
                lifecycle.job_finished("job-1", REPORT)
                lifecycle.job_started("job-2", REPORT)
                assert next(one)[1]["status"] == "finished"  # type: ignore[index]
                assert next(two)[1]["status"] == "started"  # type: ignore[index]
                assert list(one) == []
            assert not blocked
        finally:
            gate.set()
            waiter.join(10)
        assert blocked == ["finished"]

    def test_a_client_leaving_ends_the_stream_generator(self, server_url: str, jobs: Store) -> None:
        TRACING.started.clear()
        TRACING.ended.clear()
        with (
            httpx.Client(base_url=f"{server_url}/traced/", timeout=10) as client,
            client.stream("GET", f"stream/job-1/{REPORT}") as response,
        ):
            frames = frames_of(response)  # kept: closing it would close the connection
            assert next(frames)[1]["status"] == "started"  # type: ignore[index]
            assert TRACING.started.is_set()
            assert not TRACING.ended.is_set()
        assert TRACING.ended.wait(10)

    def test_the_app_reads_no_more_than_the_batch_cap(
        self, http: httpx.Client, jobs: Store
    ) -> None:
        METER.read = 0
        response = http.post("verify", content=b"[" + b" " * (8 * 1024 * 1024), headers=JSON_TYPE)
        assert response.status_code == 400
        assert METER.read < 1024 * 1024

    def test_the_script_is_served_from_the_static_directory(
        self, http: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(starlette_adapter, "STATIC_DIR", tmp_path)
        missing = http.get("immortus.js")
        assert missing.status_code == 404
        assert body_of(missing)["error"]["type"] == "NotFound"
        script = b"export const Immortus = {};\n"
        (tmp_path / "immortus.js").write_bytes(script)
        response = http.get("immortus.js")
        assert response.status_code == 200
        assert response.content == script
        assert response.headers["content-type"] == "application/javascript"
        assert response.headers["cache-control"] == "public, max-age=3600"
        assert response.headers["etag"]

    def test_a_path_under_the_prefix_that_is_no_route_is_a_404_json(
        self, http: httpx.Client
    ) -> None:
        for path in ("nothing", "verify/", "verify/a/b/c", "stream/", "verify/job-1/"):
            response = http.get(path)
            assert response.status_code == 404, path
            assert body_of(response)["error"]["type"] == "NotFound"

    def test_the_routes_are_named_for_url_for(self) -> None:
        assert APP.url_path_for("immortus:verify", job_id="a") == "/immortus/verify/a"
        assert APP.url_path_for("immortus:stream_class", job_id="a", job_class="b.c") == (
            "/immortus/stream/a/b.c"
        )
        assert APP.url_path_for("immortus:script") == "/immortus/immortus.js"
        assert APP.url_path_for("immortus:module") == "/immortus/immortus.mjs"
        assert immortus_routes("").path == ""
        assert immortus_routes("jobs/").path == "/jobs"

    def test_a_prefix_keeps_to_its_own_routes(self, server_url: str) -> None:
        response = httpx.get(f"{server_url}/elsewhere/verify/job-1")
        assert response.status_code == 404
        assert response.text == "Not Found"  # the app's own 404, not immortus's

    def test_an_enqueue_view_renders_the_job(
        self, server_url: str, jobs: Store, secret: Verifier
    ) -> None:
        token = token_of_rendered_job(httpx.post(f"{server_url}/reports/job-9"), "job-9", secret)
        verify = httpx.get(f"{server_url}/immortus/verify/job-9/{REPORT}", params={"token": token})
        assert body_of(verify)["status"] == "created"

    @pytest.mark.parametrize("prefix", ["bound", "bound-async"])
    def test_tokens_bound_to_the_user_open_for_that_user_only(
        self, server_url: str, jobs: Store, secret: Verifier, prefix: str
    ) -> None:
        alice, bob = {"X-User": "alice"}, {"X-User": "bob"}
        rendered = httpx.post(f"{server_url}/bound-reports/job-9", headers=alice)
        token = body_of(rendered)["token"]
        assert secret.tokens is not None
        assert secret.tokens.check(token, "job-9", REPORT, "alice")
        verify = f"{server_url}/{prefix}/verify/job-9/{REPORT}"
        assert body_of(httpx.get(verify, params={"token": token}, headers=alice))["status"] == (
            "created"
        )
        forged = httpx.get(verify, params={"token": "v1.1.forged"}, headers=alice)
        unknown = JobStatus.unknown("job-9", REPORT).to_dict()
        assert (forged.status_code, body_of(forged)) == (404, unknown)
        for refused in (
            httpx.get(verify, params={"token": token}, headers={**bob, "Origin": EVIL}),
            httpx.get(verify, params={"token": token}),  # no user: no subject
            httpx.get(f"{server_url}/immortus/verify/job-9/{REPORT}", params={"token": token}),
        ):
            assert (refused.status_code, refused.content) == (404, forged.content)
            assert refused.headers["cache-control"] == "no-store"
            assert not [h for h in refused.headers if h.startswith("access-control-")]
        batch = {"jobs": [{"job_id": "job-9", "job_class": REPORT, "token": token}]}
        mine, theirs = (
            body_of(httpx.post(f"{server_url}/{prefix}/verify", json=batch, headers=user))["jobs"]
            for user in (alice, bob)
        )
        assert (mine[0]["status"], theirs) == ("created", [unknown])
        lifecycle.job_finished("job-9", REPORT)
        stream = f"{server_url}/{prefix}/stream/job-9/{REPORT}"
        with httpx.stream("GET", stream, params={"token": token}, headers=alice) as response:
            [(kind, body)] = frames_of(response)  # one frame: the job is completed
            assert (kind, body and body["status"]) == ("data", "finished")
        with httpx.stream("GET", stream, params={"token": token}, headers=bob) as response:
            assert response.status_code == 404
            assert list(frames_of(response)) == [("error", unknown)]

    def test_an_unbound_token_opens_only_where_no_user_is_known(
        self, server_url: str, jobs: Store, secret: Verifier
    ) -> None:
        token = token_of_rendered_job(httpx.post(f"{server_url}/reports/job-9"), "job-9", secret)
        params = {"token": token}
        plain, bound = (f"{server_url}/{prefix}/verify/job-9/{REPORT}" for prefix in PREFIXES)
        assert body_of(httpx.get(plain, params=params))["status"] == "created"
        assert body_of(httpx.get(bound, params=params))["status"] == "created"  # no user
        assert httpx.get(bound, params=params, headers={"X-User": "alice"}).status_code == 404

    def test_render_job_response(self, jobs: Store) -> None:
        response = render_job_response({"id": 42}, REPORT)
        assert response.status_code == 200
        assert response.body == b'{"job_id":"42","job_class":"contract.report"}'
        assert response.headers["cache-control"] == "no-store"
        failed = render_job_response(object(), verifier=Verifier(secret_key=SECRET))
        assert (failed.status_code, failed.body) == (500, b"{}")

    def test_an_unsecured_verifier_is_refused_when_the_routes_are_made(self) -> None:
        with pytest.raises(EndpointsNotSecured, match=r"open_endpoints=True"):
            immortus_routes(verifier=Verifier())
        immortus_routes(verifier=Verifier(open_endpoints=True))
        immortus_routes()  # the settings' verifier: asked per request (configure may come later)

    def test_a_custom_verify_endpoint_works_as_verify_job_url(
        self, server_url: str, jobs: Store
    ) -> None:
        url = str(APP.url_path_for("report_status", job_id="job-1"))
        assert httpx.get(f"{server_url}{url}").json() == {
            "job_id": "job-1",
            "completed": False,
            "success": None,
        }
        lifecycle.job_finished("job-1", REPORT)
        assert httpx.get(f"{server_url}{url}").json()["completed"] is True


def test_importing_the_web_core_imports_no_framework() -> None:
    assert modules_loaded_by("import immortus.web", {"starlette", "anyio"}) == []


def test_a_missing_starlette_says_which_extra_to_install() -> None:
    error = import_error_without("immortus.web.asgi", "starlette")
    assert error.startswith("MissingDependency: ")
    assert 'pip install "immortus[starlette]"' in error
