"""The Flask adapter, served by a threaded Werkzeug server in a thread: the contract, and more."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask, Request, Response, jsonify, request, url_for

import immortus
from immortus import JobStatus, State, lifecycle
from immortus.exceptions import EndpointsNotSecured
from immortus.stores.base import Store
from immortus.web import Verifier
from immortus.web import flask as flask_adapter
from immortus.web.flask import immortus_blueprint, render_job_response
from immortus.web.stream_limits import StreamLimits
from tests.support import import_error_without, modules_loaded_by
from tests.web.conftest import routes_declared_open
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
from tests.web.servers import serve_werkzeug
from tests.web.tracing import TracingVerifier, WSGIBodyMeter

# -- what a user writes (docs/flask.md shows the same) -----------------------------------


def start_report(job_id: str) -> Response:
    """An enqueue view: the job is 'enqueued' here, the browser gets what it needs to follow."""
    lifecycle.job_enqueued(job_id, REPORT)
    return render_job_response(job_id, REPORT)


def report_status(job_id: str) -> tuple[Response, int, dict[str, str]]:
    """A custom verify endpoint, followed by the JS client through ``verify_job_url``."""
    job = immortus.status(job_id, REPORT)
    body = {"job_id": job.job_id, "completed": job.completed, "success": job.success}
    status = 404 if job.state is State.UNKNOWN else 200
    return jsonify(body), status, {"Cache-Control": "no-store"}


def start_followed_report(job_id: str) -> Response:
    """An enqueue view handing the browser the custom endpoint's URL instead of a job id."""
    lifecycle.job_enqueued(job_id, REPORT)
    return jsonify(verify_job_url=url_for("report_status", job_id=job_id, _external=True))


def user_of() -> str | None:
    """The subject tokens are bound to: the user a cookie names (a real app: flask.session)."""
    return request.cookies.get("user")


def user_of_request(request: Request) -> str | None:
    """The same subject, read from the request it is given: the shape of every adapter."""
    return request.cookies.get("user")


def start_bound_report(job_id: str) -> Response:
    """An enqueue view binding the job's token to the user who enqueued it."""
    lifecycle.job_enqueued(job_id, REPORT)
    return render_job_response(job_id, REPORT, subject=user_of())


#: A foreign origin: no answer invites it to read (no CORS headers).
EVIL = "http://evil.example"

TRACING = TracingVerifier(interval=0.01, heartbeat=0.01)
APP = Flask(__name__)
with routes_declared_open():
    APP.register_blueprint(immortus_blueprint())
    APP.register_blueprint(immortus_blueprint("/traced/", verifier=TRACING, name="traced"))
    APP.register_blueprint(immortus_blueprint("jobs/", name="jobs"))
    APP.register_blueprint(immortus_blueprint("/bound", name="bound", subject=user_of))
    APP.register_blueprint(
        immortus_blueprint("/bound-request", name="bound_request", subject=user_of_request)
    )
    APP.register_blueprint(
        immortus_blueprint("/short", name="short", streams=StreamLimits.wsgi(lifetime=0.5))
    )
APP.add_url_rule("/reports/<job_id>", view_func=start_report, methods=["POST"])
APP.add_url_rule("/reports/<job_id>/status", view_func=report_status)
APP.add_url_rule("/followed/<job_id>", view_func=start_followed_report, methods=["POST"])
APP.add_url_rule("/bound-reports/<job_id>", view_func=start_bound_report, methods=["POST"])
METER = WSGIBodyMeter(APP.wsgi_app)
APP.wsgi_app = METER  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """The Werkzeug server of ``APP``."""
    with serve_werkzeug(APP) as url:
        yield url


@pytest.fixture
def base_url(server_url: str) -> str:
    """The immortus prefix on the running server: what the contract needs."""
    return f"{server_url}/immortus"


@pytest.fixture
def short_lived_url(server_url: str) -> str:
    """A prefix whose streams live half a second: what the contract needs too."""
    return f"{server_url}/short"


class TestFlaskContract(HTTPContract):
    """The shared HTTP contract, against Flask."""


class TestFlask(ContractFixtures):
    """What only the Flask adapter promises, or what needs its internals to check."""

    def test_a_client_leaving_ends_the_stream_generator(self, server_url: str, jobs: Store) -> None:
        TRACING.started.clear()
        TRACING.ended.clear()
        with (
            httpx.Client(base_url=f"{server_url}/traced/", timeout=10) as client,
            client.stream("GET", f"stream/job-1/{REPORT}") as response,
        ):
            frames = frames_of(response)  # kept: closing it would close the connection
            assert next(frames)[1]["status"] == "started"  # type: ignore[index]
            assert next(frames)[0] == "comment"  # the stream is polling and heart-beating
            assert TRACING.started.is_set()
            assert not TRACING.ended.is_set()
        assert TRACING.ended.wait(10)

    def test_the_app_reads_no_more_than_the_batch_cap(
        self, http: httpx.Client, jobs: Store
    ) -> None:
        METER.read = 0
        response = http.post("verify", content=b"[" + b" " * (8 * 1024 * 1024), headers=JSON_TYPE)
        assert response.status_code == 400
        assert METER.read == immortus.web.MAX_BATCH_BYTES + 1

    def test_a_chunked_batch_is_read_too(self, http: httpx.Client, jobs: Store) -> None:
        chunks = [b'{"jobs": [', b'{"job_id": "job-1"}', b"]}"]
        response = http.post("verify", content=iter(chunks), headers=JSON_TYPE)  # chunked
        assert body_of(response)["jobs"][0]["status"] == "started"

    def test_the_script_is_served_from_the_static_directory(
        self, http: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(flask_adapter, "STATIC_DIR", tmp_path)
        missing = http.get("immortus.js")
        assert missing.status_code == 404
        assert body_of(missing)["error"] == {
            "type": "NotFound",
            "message": "immortus.js is not installed on this server",
        }
        script = b"export const Immortus = {};\n"
        (tmp_path / "immortus.js").write_bytes(script)
        response = http.get("immortus.js")
        assert response.status_code == 200
        assert response.content == script
        assert response.headers["content-type"].split(";")[0] == "application/javascript"
        assert response.headers["cache-control"] == "public, max-age=3600"
        assert response.headers["x-content-type-options"] == "nosniff"
        etag = response.headers["etag"]
        again = http.get("immortus.js", headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == etag

    @pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
    def test_head_and_options_are_a_405_too(
        self, http: httpx.Client, jobs: Store, method: str
    ) -> None:
        for path, allowed in (("verify/job-1", "GET"), ("verify", "POST"), ("immortus.js", "GET")):
            response = http.request(method, path)
            assert response.status_code == 405, path
            assert response.headers["allow"] == allowed
            assert response.headers["content-type"] == "application/json"

    def test_a_path_under_the_prefix_that_is_no_route_is_a_404_json(
        self, server_url: str, http: httpx.Client
    ) -> None:
        for path in ("nothing", "", "verify/", "verify/a/b/c", "stream/", "verify/job-1/"):
            response = http.get(path)
            assert response.status_code == 404, path
            assert body_of(response)["error"]["type"] == "NotFound"
        assert body_of(httpx.get(f"{server_url}/immortus"))["error"]["type"] == "NotFound"
        assert http.delete("nothing/at/all").status_code == 404

    def test_a_prefix_keeps_to_its_own_routes(self, server_url: str) -> None:
        for path in ("elsewhere/verify/job-1", "immortus-not/verify/job-1", "verify/job-1"):
            response = httpx.get(f"{server_url}/{path}")
            assert response.status_code == 404, path
            assert response.headers["content-type"].startswith("text/html")  # the app's own

    def test_the_routes_are_named_for_url_for(self) -> None:
        with APP.test_request_context():
            assert url_for("immortus.verify", job_id="a") == "/immortus/verify/a"
            assert url_for("immortus.verify_class", job_id="a b", job_class="b.c") == (
                "/immortus/verify/a%20b/b.c"
            )
            assert url_for("immortus.batch") == "/immortus/verify"
            assert url_for("immortus.stream", job_id="a") == "/immortus/stream/a"
            assert url_for("immortus.stream_class", job_id="a", job_class="b.c") == (
                "/immortus/stream/a/b.c"
            )
            assert url_for("immortus.script") == "/immortus/immortus.js"
            assert url_for("immortus.module") == "/immortus/immortus.mjs"
            assert url_for("jobs.verify", job_id="a") == "/jobs/verify/a"
            assert url_for("traced.stream", job_id="a") == "/traced/stream/a"

    def test_a_prefix_with_slashes_is_normalised(self, server_url: str, jobs: Store) -> None:
        response = httpx.get(f"{server_url}/jobs/verify/job-1/{REPORT}")
        assert body_of(response)["status"] == "started"
        assert body_of(httpx.get(f"{server_url}/jobs/nothing"))["error"]["type"] == "NotFound"

    def test_an_empty_prefix_mounts_at_the_root_and_keeps_the_app_404(self, jobs: Store) -> None:
        app = Flask(__name__)
        app.register_blueprint(immortus_blueprint(""))
        with app.test_request_context():
            assert url_for("immortus.verify", job_id="a") == "/verify/a"
            assert url_for("immortus.script") == "/immortus.js"
        with serve_werkzeug(app) as url:
            assert body_of(httpx.get(f"{url}/verify/job-1"))["status"] == "started"
            assert httpx.put(f"{url}/verify/job-1").status_code == 405
            elsewhere = httpx.get(f"{url}/nothing")
            assert elsewhere.status_code == 404
            assert elsewhere.headers["content-type"].startswith("text/html")

    def test_an_enqueue_view_renders_the_job(
        self, server_url: str, jobs: Store, secret: Verifier
    ) -> None:
        token = token_of_rendered_job(httpx.post(f"{server_url}/reports/job-9"), "job-9", secret)
        verify = httpx.get(f"{server_url}/immortus/verify/job-9/{REPORT}", params={"token": token})
        assert body_of(verify)["status"] == "created"

    def test_tokens_bound_to_the_user_open_for_that_user_only(
        self, server_url: str, jobs: Store, secret: Verifier
    ) -> None:
        with (
            httpx.Client(base_url=server_url, cookies={"user": "alice"}, timeout=10) as alice,
            httpx.Client(base_url=server_url, cookies={"user": "bob"}, timeout=10) as bob,
        ):
            token = body_of(alice.post("/bound-reports/job-9"))["token"]
            assert secret.tokens is not None
            assert secret.tokens.check(token, "job-9", REPORT, "alice")
            verify, params = f"/bound/verify/job-9/{REPORT}", {"token": token}
            assert body_of(alice.get(verify, params=params))["status"] == "created"
            forged = alice.get(verify, params={"token": "v1.1.forged"})
            unknown = JobStatus.unknown("job-9", REPORT).to_dict()
            assert (forged.status_code, body_of(forged)) == (404, unknown)
            for refused in (
                bob.get(verify, params=params, headers={"Origin": EVIL}),
                httpx.get(f"{server_url}{verify}", params=params),  # no user: no subject
                alice.get(f"/immortus/verify/job-9/{REPORT}", params=params),  # unbound routes
            ):
                assert (refused.status_code, refused.content) == (404, forged.content)
                assert refused.headers["cache-control"] == "no-store"
                assert not [h for h in refused.headers if h.startswith("access-control-")]
            batch = {"jobs": [{"job_id": "job-9", "job_class": REPORT, "token": token}]}
            mine, theirs = (
                body_of(user.post("/bound/verify", json=batch)) for user in (alice, bob)
            )
            assert (mine["jobs"][0]["status"], theirs["jobs"]) == ("created", [unknown])
            lifecycle.job_finished("job-9", REPORT)
            stream = f"/bound/stream/job-9/{REPORT}"
            with alice.stream("GET", stream, params=params) as response:
                [(kind, body)] = frames_of(response)  # one frame: the job is completed
                assert (kind, body and body["status"]) == ("data", "finished")
            with bob.stream("GET", stream, params=params) as response:
                assert response.status_code == 404
                assert list(frames_of(response)) == [("error", unknown)]

    def test_the_subject_function_may_take_the_request(
        self, server_url: str, jobs: Store, secret: Verifier
    ) -> None:
        with (
            httpx.Client(base_url=server_url, cookies={"user": "alice"}, timeout=10) as alice,
            httpx.Client(base_url=server_url, cookies={"user": "bob"}, timeout=10) as bob,
        ):
            token = body_of(alice.post("/bound-reports/job-9"))["token"]
            verify, params = f"/bound-request/verify/job-9/{REPORT}", {"token": token}
            assert body_of(alice.get(verify, params=params))["status"] == "created"
            assert bob.get(verify, params=params).status_code == 404

    def test_routes_that_would_serve_nothing_are_refused_at_registration(self) -> None:
        immortus.configure(open_endpoints=False)
        with pytest.raises(EndpointsNotSecured, match=r"configure\(secret_key=\.\.\.\)"):
            Flask(__name__).register_blueprint(immortus_blueprint())
        open_routes = immortus_blueprint(verifier=Verifier(open_endpoints=True))
        Flask(__name__).register_blueprint(open_routes)
        made_early = immortus_blueprint()  # made before the settings: checked when registered
        immortus.configure(secret_key=SECRET)
        Flask(__name__).register_blueprint(made_early)
        with pytest.raises(EndpointsNotSecured):
            Flask(__name__).register_blueprint(immortus_blueprint(verifier=Verifier()))

    def test_render_job_response(self, jobs: Store) -> None:
        response = render_job_response({"id": 42}, REPORT)  # no request context needed
        assert response.status_code == 200
        assert response.get_data() == b'{"job_id":"42","job_class":"contract.report"}'
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-type"] == "application/json"
        failed = render_job_response(object(), verifier=Verifier(secret_key=SECRET))
        assert (failed.status_code, failed.get_data()) == (500, b"{}")

    def test_a_custom_verify_endpoint_works_as_verify_job_url(
        self, server_url: str, jobs: Store
    ) -> None:
        started = httpx.post(f"{server_url}/followed/job-5")
        url = started.json()["verify_job_url"]
        assert url == f"{server_url}/reports/job-5/status"
        first = httpx.get(url)
        assert first.status_code == 200
        assert first.headers["cache-control"] == "no-store"
        assert first.json() == {"job_id": "job-5", "completed": False, "success": None}
        lifecycle.job_finished("job-5", REPORT)
        assert httpx.get(url).json() == {"job_id": "job-5", "completed": True, "success": True}
        assert httpx.get(f"{server_url}/reports/nobody/status").status_code == 404


def test_importing_the_web_core_imports_no_framework() -> None:
    assert modules_loaded_by("import immortus.web", {"flask", "werkzeug"}) == []


def test_a_missing_flask_says_which_extra_to_install() -> None:
    error = import_error_without("immortus.web.flask", "flask")
    assert error.startswith("MissingDependency: ")
    assert 'pip install "immortus[flask]"' in error
