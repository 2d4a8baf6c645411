"""The HTTP contract every framework adapter passes: real requests to a real running server.

An adapter's test module provides one fixture, ``base_url``: the URL of the immortus prefix
(``http://127.0.0.1:PORT/immortus``) on a server of that framework, running **in this process**
(in a thread), with the adapter's routes mounted with the default verifier. Then:

    class TestFlaskContract(HTTPContract):
        pass

In-process matters: the tests change settings with ``immortus.configure``, declare jobs with
``@immortus.track``, drive jobs from the test thread and check that nothing was imported. The
per-test reset of settings and jobs comes from ``tests/web/conftest.py`` (``fresh_immortus``).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

import immortus
from immortus import JobError, JobStatus, Progress, config, lifecycle, web
from immortus.stores.base import Store
from immortus.web import MAX_BATCH, MAX_BATCH_BYTES, Verifier
from tests.web.contract_groups import GroupsContract
from tests.web.contract_jobs import JobsContract

__all__ = [
    "REPORT",
    "SECRET",
    "ContractFixtures",
    "HTTPContract",
    "body_of",
    "frames_of",
    "token_of_rendered_job",
]

SECRET = "contract-secret"  # noqa: S105
#: The tracked job class the contract's jobs belong to (the store strategy tracks it).
REPORT = "contract.report"
#: The exact keys of a verify body without meta.
BODY_KEYS = {
    "job_id",
    "job_class",
    "status",
    "completed",
    "success",
    "progress",
    "error",
    "attempts",
    "enqueued_at",
    "started_at",
    "finished_at",
    "certain",
    "retry_at",
}


#: The header of every batch request.
JSON_TYPE = {"Content-Type": "application/json"}


class EveryJobDone:
    """A global strategy as the Ruby gem immortus wrote them: a plain class, ``completed`` only."""

    def completed(self, job_id: str) -> bool:
        return True

    def meta(self, job_id: str) -> dict[str, str]:
        return {"answered_by": "global"}


def body_of(response: httpx.Response) -> dict[str, Any]:
    """Return a JSON answer's body, checking what every JSON answer must carry."""
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    assert "Traceback" not in response.text
    body: dict[str, Any] = json.loads(response.content)
    assert "job_id" in body or "jobs" in body or body == {}
    return body


def frames_of(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """Yield ``("data" | "error" | "comment", body)`` for each SSE frame as it arrives."""
    buffer = b""
    for chunk in response.iter_bytes():
        buffer += chunk
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            if frame.startswith(b":"):
                yield "comment", None
                continue
            lines = frame.split(b"\n")
            kind = "error" if lines[0] == b"event: error" else "data"
            [data] = lines[1:] if kind == "error" else lines
            assert data.startswith(b"data: ")
            yield kind, json.loads(data[len(b"data: ") :])
    assert buffer == b"", "the stream ended inside a frame"


def token_of_rendered_job(response: httpx.Response, job_id: str, secret: Verifier) -> str:
    """Check an enqueue view's answer for ``job_id`` of ``REPORT``; return the token it carries.

    The answer of ``render_job_response``: a 200 whose body is exactly the job id,
    its class and a token that ``secret`` accepts for that job.
    """
    assert response.status_code == 200
    body = body_of(response)
    assert body == {
        "job_id": job_id,
        "job_class": REPORT,
        "token": body["token"],  # signed now: its expiry is now + max age
    }
    assert secret.tokens is not None
    assert secret.tokens.check(body["token"], job_id, REPORT)
    token: str = body["token"]
    return token


class ContractFixtures:
    """The contract's fixtures alone, for an adapter's own tests: client, store, jobs, secret."""

    @pytest.fixture
    def http(self, base_url: str) -> Iterator[httpx.Client]:
        """A client of the server under test, rooted at its immortus prefix."""
        with httpx.Client(base_url=base_url.rstrip("/") + "/", timeout=10.0) as client:
            yield client

    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        """A real SQLite store in ``tmp_path``, configured as immortus's store."""
        config.configure(store=f"sqlite:///{tmp_path / 'jobs.db'}", progress_interval=0)
        store = immortus.get_store()
        assert store is not None
        return store

    @pytest.fixture
    def jobs(self, store: Store) -> Store:
        """``contract.report`` tracked; job ``job-1`` started with progress 37/100."""

        @immortus.track(name=REPORT)
        def report() -> None: ...

        lifecycle.job_enqueued("job-1", REPORT)
        lifecycle.job_started("job-1", REPORT)
        lifecycle.job_progress("job-1", Progress(current=37, total=100, message="row 37"), REPORT)
        return store

    @pytest.fixture
    def secret(self, jobs: Store) -> Verifier:
        """A secret key configured; returns a verifier that signs tokens with it."""
        config.configure(secret_key=SECRET)
        return Verifier(secret_key=SECRET)


class HTTPContract(ContractFixtures, JobsContract, GroupsContract):
    """Every route as an HTTP client sees it; mixed into one class per adapter.

    The multi-job stream and the cancel route are in :class:`JobsContract`, groups in
    :class:`GroupsContract`.
    """

    # -- verify one job --------------------------------------------------------------------

    def test_a_started_job_with_progress(self, http: httpx.Client, jobs: Store) -> None:
        response = http.get(f"verify/job-1/{REPORT}")
        assert response.status_code == 200
        body = body_of(response)
        assert set(body) == BODY_KEYS
        assert body["job_id"] == "job-1"
        assert body["job_class"] == REPORT
        assert (body["status"], body["completed"], body["success"]) == ("started", False, None)
        assert body["progress"] == {
            "current": 37,
            "total": 100,
            "percent": 37.0,
            "message": "row 37",
        }
        assert body["error"] is None
        assert body["attempts"] == 1
        assert body["enqueued_at"].endswith("Z")
        assert body["started_at"].endswith("Z")
        assert body["finished_at"] is None
        assert response.headers["x-content-type-options"] == "nosniff"

    def test_the_route_without_a_class_uses_the_default_strategy(
        self, http: httpx.Client, jobs: Store
    ) -> None:
        assert body_of(http.get("verify/job-1"))["status"] == "started"

    def test_a_finished_job(self, http: httpx.Client, jobs: Store) -> None:
        lifecycle.job_finished("job-1", REPORT)
        body = body_of(http.get(f"verify/job-1/{REPORT}"))
        assert (body["status"], body["completed"], body["success"]) == ("finished", True, True)
        assert body["finished_at"].endswith("Z")

    def test_a_failed_job_shows_its_error_but_no_traceback(
        self, http: httpx.Client, jobs: Store
    ) -> None:
        try:
            raise ValueError("row 38 is not a number")
        except ValueError as exc:
            lifecycle.job_failed("job-1", exc, REPORT)
        response = http.get(f"verify/job-1/{REPORT}")
        body = body_of(response)
        assert (body["status"], body["completed"], body["success"]) == ("failed", True, False)
        assert body["error"] == {"type": "ValueError", "message": "row 38 is not a number"}
        assert "http_contract.py" not in response.text

    def test_ids_with_reserved_characters_round_trip(self, http: httpx.Client, jobs: Store) -> None:
        odd = "réport 1+2?&=#%;,@!~*'()[]é"
        lifecycle.job_enqueued(odd, REPORT)
        response = http.get(f"verify/{quote(odd, safe='')}/{REPORT}")
        assert response.status_code == 200
        assert body_of(response)["job_id"] == odd

    def test_an_unknown_job_is_a_404_unknown_body(self, http: httpx.Client, jobs: Store) -> None:
        response = http.get("verify/nobody")
        assert response.status_code == 404
        assert body_of(response) == JobStatus.unknown("nobody").to_dict()
        with_class = http.get(f"verify/nobody/{REPORT}")
        assert with_class.status_code == 404
        assert body_of(with_class) == JobStatus.unknown("nobody", REPORT).to_dict()

    def test_a_global_strategy_answers_for_a_class_nobody_tracks(
        self, http: httpx.Client, jobs: Store
    ) -> None:
        """Every route gives the body immortus.status() gives, class or no class."""
        immortus.register_strategy("contract.every_job_done", EveryJobDone)
        config.configure(strategy="contract.every_job_done")
        for job_class in ("FailJob", None):
            expected = immortus.status("job-7", job_class).to_dict()
            assert (expected["status"], expected["answered_by"]) == ("finished", "global")
            path = "job-7" if job_class is None else f"job-7/{job_class}"
            verify = http.get(f"verify/{path}")
            assert (verify.status_code, body_of(verify)) == (200, expected)
            asked = {"job_id": "job-7", "job_class": job_class}
            batch = http.post("verify", json={"jobs": [asked]})
            assert body_of(batch)["jobs"] == [expected]
            with http.stream("GET", f"stream/{path}") as response:
                assert response.status_code == 200
                assert list(frames_of(response)) == [("data", expected)]

    def test_without_a_key_the_routes_refuse_unless_declared_open(
        self, http: httpx.Client, jobs: Store
    ) -> None:
        config.configure(open_endpoints=False)
        batch = {"jobs": [{"job_id": "job-1"}]}
        refused = [
            http.get("verify/job-1"),
            http.get(f"verify/job-1/{REPORT}"),
            http.post("verify", json=batch),
            http.post("verify", content=b"{}", headers={"Content-Type": "text/plain"}),
        ]
        for response in refused:
            assert response.status_code == 500
            error = body_of(response)["error"]
            assert error["type"] == "EndpointsNotSecured"
            assert "immortus.configure(secret_key=...)" in error["message"]
            assert "open_endpoints=True" in error["message"]
        with http.stream("GET", "stream/job-1") as response:
            assert response.status_code == 500
            [(kind, body)] = list(frames_of(response))
        assert kind == "error"
        assert body is not None
        assert body["error"]["type"] == "EndpointsNotSecured"
        config.configure(secret_key=SECRET)
        assert http.get("verify/job-1").status_code == 404  # now it asks for the token

    def test_an_untracked_class_is_a_404_and_nothing_is_imported(
        self, http: httpx.Client, jobs: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        canary = f"immortus_canary_{uuid.uuid4().hex}"
        (tmp_path / f"{canary}.py").write_text("raise SystemExit('imported')\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        http.get("verify/job-1/warm.up")  # let the server import whatever a 404 needs
        before = set(sys.modules)
        for job_class in (f"{canary}.run", "os.system", "subprocess.run"):
            response = http.get(f"verify/job-1/{quote(job_class, safe='')}")
            assert response.status_code == 404
            assert body_of(response) == JobStatus.unknown("job-1", job_class).to_dict()
        traversal = http.get(f"verify/job-1/{quote('../../etc/passwd', safe='')}")
        assert traversal.status_code == 404
        body_of(traversal)
        batch = http.post("verify", json={"jobs": [{"job_id": "j", "job_class": f"{canary}.x"}]})
        assert body_of(batch)["jobs"] == [JobStatus.unknown("j", f"{canary}.x").to_dict()]
        assert set(sys.modules) == before
        assert canary not in sys.modules

    # A line break inside or at the end of the id must reach verify: Starlette's mount pattern
    # stops at one, and such a path once fell out of the prefix to the app's plain-text 404.
    @pytest.mark.parametrize("job_id", ["x" * 300, "tab\there", "\x00", "a\nb", "end\n"])
    def test_a_malformed_job_id_is_a_400(
        self, http: httpx.Client, jobs: Store, job_id: str
    ) -> None:
        response = http.get(f"verify/{quote(job_id, safe='')}")
        assert response.status_code == 400
        body = body_of(response)
        assert body["error"]["type"] == "InvalidInput"
        assert body["job_id"] is None or len(body["job_id"]) <= 100

    def test_a_failing_strategy_is_a_500_without_details(
        self, http: httpx.Client, jobs: Store
    ) -> None:
        class Broken(immortus.TrackingStrategy):
            def status(self, job_id: str) -> JobStatus:
                raise RuntimeError("password=hunter2 at db-7.internal")

        immortus.track(name="contract.broken", strategy=Broken())(lambda: None)
        response = http.get("verify/job-1/contract.broken")
        assert response.status_code == 500
        body = body_of(response)
        assert body["error"]["type"] == "StrategyError"
        assert "hunter2" not in response.text

    def test_an_unreachable_store_is_a_503(self, http: httpx.Client) -> None:
        config.configure(store="redis://127.0.0.1:1/0")
        response = http.get("verify/job-1")
        assert response.status_code == 503
        body = body_of(response)
        assert body == {
            "job_id": "job-1",
            "error": {"type": "StoreUnavailable", "message": body["error"]["message"]},
        }
        assert "127.0.0.1" not in response.text

    # -- the history option ------------------------------------------------------------

    def test_history_is_in_the_body_only_when_asked(self, http: httpx.Client, jobs: Store) -> None:
        lifecycle.job_retrying("job-1", ValueError("row 38 is not a number"), REPORT)
        lifecycle.job_started("job-1", REPORT)
        plain = http.get(f"verify/job-1/{REPORT}")
        assert set(body_of(plain)) == BODY_KEYS
        assert http.get(f"verify/job-1/{REPORT}", params={"history": "0"}).content == plain.content
        asked = http.get(f"verify/job-1/{REPORT}", params={"history": "1"})
        assert asked.status_code == 200
        body = body_of(asked)
        assert set(body) == BODY_KEYS | {"history"}
        assert {key: body[key] for key in BODY_KEYS} == body_of(plain)
        events = [(entry["event"], entry["attempt"]) for entry in body["history"]]
        assert events == [("enqueued", 0), ("started", 1), ("retrying", 1), ("started", 2)]
        retried = body["history"][2]
        assert retried["error"] == {"type": "ValueError", "message": "row 38 is not a number"}
        assert set(retried) == {"at", "event", "attempt", "error", "retry_at"}
        assert http.get(f"verify/job-1/{REPORT}").content == plain.content

    def test_a_bad_history_value_is_a_400_naming_it(self, http: httpx.Client, jobs: Store) -> None:
        for value in ("yes", "", "2", "TRUE "):
            response = http.get(f"verify/job-1/{REPORT}", params={"history": value})
            assert response.status_code == 400, value
            assert "history" in body_of(response)["error"]["message"]

    def test_an_unknown_job_with_history_is_the_same_404(
        self, http: httpx.Client, jobs: Store
    ) -> None:
        plain = http.get(f"verify/nobody/{REPORT}")
        asked = http.get(f"verify/nobody/{REPORT}", params={"history": "1"})
        assert (asked.status_code, asked.content) == (404, plain.content)

    def test_a_bad_token_with_history_is_the_same_404(
        self, http: httpx.Client, secret: Verifier
    ) -> None:
        forged = "v1.9999999999.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        plain = http.get(f"verify/job-1/{REPORT}", params={"token": forged})
        asked = http.get(f"verify/job-1/{REPORT}", params={"token": forged, "history": "1"})
        bare = http.get(f"verify/job-1/{REPORT}", params={"history": "1"})
        assert {plain.content, asked.content, bare.content} == {plain.content}
        assert (plain.status_code, asked.status_code, bare.status_code) == (404, 404, 404)
        token = secret.token_for("job-1", REPORT)
        assert token is not None
        opened = http.get(f"verify/job-1/{REPORT}", params={"token": token, "history": "true"})
        assert opened.status_code == 200
        assert [entry["event"] for entry in body_of(opened)["history"]] == ["enqueued", "started"]

    # -- tokens ----------------------------------------------------------------------------

    def test_without_a_valid_token_every_refusal_looks_alike(
        self, http: httpx.Client, secret: Verifier
    ) -> None:
        past = Verifier(secret_key=SECRET, clock=lambda: time.time() - 3 * 86400)
        tokens = {
            "none": None,
            "forged": "v1.9999999999.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "expired": past.token_for("job-1", REPORT),
            "other job": secret.token_for("job-2", REPORT),
            "other class": secret.token_for("job-1", None),
            "other key": Verifier(secret_key=SECRET + "-other").token_for("job-1", REPORT),
        }
        answers = set()
        for name, token in tokens.items():
            params = {} if token is None else {"token": token}
            response = http.get(f"verify/job-1/{REPORT}", params=params)
            assert response.status_code == 404, name
            body_of(response)
            answers.add(response.content)
        assert len(answers) == 1
        assert json.loads(answers.pop()) == JobStatus.unknown("job-1", REPORT).to_dict()

    def test_a_valid_token_opens_its_job(self, http: httpx.Client, secret: Verifier) -> None:
        token = secret.token_for("job-1", REPORT)
        assert token is not None
        response = http.get(f"verify/job-1/{REPORT}", params={"token": token})
        assert response.status_code == 200
        assert body_of(response)["status"] == "started"

    # -- batch -----------------------------------------------------------------------------

    def test_a_batch_keeps_the_order_and_mixes_known_and_unknown(
        self, http: httpx.Client, jobs: Store
    ) -> None:
        lifecycle.job_enqueued("job-2", REPORT)
        asked = [
            {"job_id": "job-2", "job_class": REPORT},
            {"job_id": "nobody"},
            {"job_id": "job-1", "job_class": REPORT, "extra": "ignored"},
            {"job_id": "job-1", "job_class": "os.system"},
        ]
        response = http.post("verify", json={"jobs": asked})
        assert response.status_code == 200
        answers = body_of(response)["jobs"]
        assert [(a["job_id"], a["status"]) for a in answers] == [
            ("job-2", "created"),
            ("nobody", "unknown"),
            ("job-1", "started"),
            ("job-1", "unknown"),
        ]

    def test_a_batch_with_tokens(self, http: httpx.Client, secret: Verifier) -> None:
        token = secret.token_for("job-1", REPORT)
        asked = [
            {"job_id": "job-1", "job_class": REPORT, "token": token},
            {"job_id": "job-1", "job_class": REPORT},
        ]
        answers = body_of(http.post("verify", json={"jobs": asked}))["jobs"]
        assert [a["status"] for a in answers] == ["started", "unknown"]

    # A browser posts text/plain, form or multipart bodies across origins without a preflight.
    @pytest.mark.parametrize(
        "content_type",
        [
            "text/plain",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            None,
        ],
    )
    def test_a_batch_not_sent_as_json_is_a_415(
        self, http: httpx.Client, jobs: Store, content_type: str | None
    ) -> None:
        content = json.dumps({"jobs": [{"job_id": "job-1"}]}).encode()
        headers = {} if content_type is None else {"Content-Type": content_type}
        response = http.post("verify", content=content, headers=headers)
        assert response.status_code == 415
        body = body_of(response)
        assert body["job_id"] is None
        assert body["error"]["type"] == "UnsupportedMediaType"
        assert "application/json" in body["error"]["message"]

    @pytest.mark.parametrize(
        "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
    )
    def test_a_batch_sent_as_json_is_answered(
        self, http: httpx.Client, jobs: Store, content_type: str
    ) -> None:
        content = json.dumps({"jobs": [{"job_id": "job-1"}]}).encode()
        response = http.post("verify", content=content, headers={"Content-Type": content_type})
        assert body_of(response)["jobs"][0]["status"] == "started"

    @pytest.mark.parametrize(
        "content",
        [
            b"not json",
            b"",
            b'{"jobs": "job-1"}',
            b"[1, 2]",
            b"\xff\xfe",
            json.dumps({"jobs": [{"job_id": f"j{i}"} for i in range(MAX_BATCH + 1)]}).encode(),
            json.dumps({"jobs": [{"job_id": ""}]}).encode(),
        ],
    )
    def test_a_malformed_batch_is_a_400(
        self, http: httpx.Client, jobs: Store, content: bytes
    ) -> None:
        response = http.post("verify", content=content, headers=JSON_TYPE)
        assert response.status_code == 400
        assert body_of(response)["error"]["type"] == "InvalidInput"

    def test_a_huge_batch_is_refused_unread(self, http: httpx.Client, jobs: Store) -> None:
        padding = "x" * (1024 * 1024)
        response = http.post("verify", json={"jobs": [], "padding": padding})
        assert response.status_code == 400
        body = body_of(response)
        assert str(MAX_BATCH_BYTES) in body["error"]["message"]
        # The connection stays usable for the next request.
        assert http.get("verify/job-1").status_code == 200

    # -- HTTP plumbing ---------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [
            ("GET", "verify", "POST"),
            ("PUT", "verify", "POST"),
            ("POST", "verify/job-1", "GET"),
            ("DELETE", f"verify/job-1/{REPORT}", "GET"),
            ("POST", "stream/job-1", "GET"),
            ("PATCH", f"stream/job-1/{REPORT}", "GET"),
            ("POST", "immortus.js", "GET"),
            ("GET", "stream", "POST"),
            ("GET", "cancel/job-1", "POST"),
            ("PUT", f"cancel/job-1/{REPORT}", "POST"),
        ],
    )
    def test_a_wrong_method_is_a_405_json(
        self, http: httpx.Client, jobs: Store, method: str, path: str, allowed: str
    ) -> None:
        response = http.request(method, path)
        assert response.status_code == 405
        assert allowed in response.headers["allow"]
        body = body_of(response)
        assert body["job_id"] is None
        assert body["error"]["type"] == "MethodNotAllowed"

    @pytest.mark.parametrize("name", ["immortus.js", "immortus.mjs"])
    def test_the_script_is_served_when_installed(self, http: httpx.Client, name: str) -> None:
        installed = Path(web.__file__).with_name("static") / name
        assert installed.is_file(), f"{name} ships with immortus"
        response = http.get(name)
        assert response.status_code == 200
        assert response.content == installed.read_bytes()
        assert response.headers["content-type"].startswith("application/javascript")
        assert "max-age" in response.headers["cache-control"]
        assert response.headers["x-content-type-options"] == "nosniff"

    # -- stream ----------------------------------------------------------------------------

    def test_a_stream_sends_each_change_then_ends(self, http: httpx.Client, jobs: Store) -> None:
        steps = [
            lambda: lifecycle.job_progress("job-1", Progress(current=80, total=100), REPORT),
            lambda: lifecycle.job_meta("job-1", {"rows": 80}, REPORT),
            lambda: lifecycle.job_finished("job-1", REPORT),
        ]
        seen: list[tuple[str, Any, Any]] = []
        with http.stream("GET", f"stream/job-1/{REPORT}") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-store"
            for kind, body in frames_of(response):
                if kind == "comment":
                    continue
                assert kind == "data"
                assert body is not None
                seen.append((body["status"], body["progress"]["current"], body.get("rows")))
                if steps:
                    steps.pop(0)()
        assert seen == [
            ("started", 37, None),
            ("started", 80, None),
            ("started", 80, 80),
            ("finished", 80, 80),
        ]

    def test_a_stream_of_a_completed_job_is_one_frame(
        self, http: httpx.Client, jobs: Store
    ) -> None:
        lifecycle.job_failed("job-1", JobError(type="IOError", message="disk full"), REPORT)
        with http.stream("GET", "stream/job-1") as response:
            frames = list(frames_of(response))
        assert [(kind, body and body["status"]) for kind, body in frames] == [("data", "failed")]

    def test_a_refused_stream_is_a_404_error_frame(
        self, http: httpx.Client, secret: Verifier
    ) -> None:
        for path in ("stream/nobody", f"stream/job-1/{REPORT}", "stream/job-1/os.system"):
            with http.stream("GET", path) as response:
                assert response.status_code == 404, path
                frames = list(frames_of(response))
            assert len(frames) == 1
            kind, body = frames[0]
            assert kind == "error"
            assert body is not None
            assert body["status"] == "unknown"
        token = secret.token_for("job-1", REPORT)
        lifecycle.job_finished("job-1", REPORT)
        with http.stream("GET", f"stream/job-1/{REPORT}", params={"token": token}) as response:
            assert response.status_code == 200
            assert [body and body["status"] for _, body in frames_of(response)] == ["finished"]

    @pytest.mark.parametrize("job_id", ["x" * 300, "a\nb"])
    def test_a_stream_of_a_malformed_id_is_a_400(
        self, http: httpx.Client, jobs: Store, job_id: str
    ) -> None:
        with http.stream("GET", f"stream/{quote(job_id, safe='')}") as response:
            assert response.status_code == 400
            [(kind, body)] = list(frames_of(response))
        assert kind == "error"
        assert body is not None
        assert body["error"]["type"] == "InvalidInput"
