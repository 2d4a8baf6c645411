"""The Django adapter, served by real WSGI (and ASGI) servers in threads: the contract, and more.

Django is set up once, at import, from ``tests.web.django_project``. Its app's ``ready()``
applies the project's ``IMMORTUS`` settings then; the settings it made are kept in
``READY_CONFIG`` and immortus is reset, so every test (here and in other modules) starts from
default settings, as ``fresh_immortus`` expects.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.web.django_project.settings")
django.setup()

import httpx  # noqa: E402
import pytest  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpRequest  # noqa: E402
from django.urls import reverse  # noqa: E402

import immortus  # noqa: E402
from immortus import JobStatus, cancel_requests, config, lifecycle  # noqa: E402
from immortus.stores.base import Store  # noqa: E402
from immortus.web import MAX_BATCH_BYTES, Verifier  # noqa: E402
from immortus.web.django import render_job_response, subject_of, views  # noqa: E402
from immortus.web.django.settings import (  # noqa: E402
    TOKEN_KEY_SALT,
    configure_from_settings,
    derive_secret_key,
    immortus_settings,
)
from tests.support import import_error_without, modules_loaded_by  # noqa: E402
from tests.web.contract_jobs import events_of  # noqa: E402
from tests.web.django_server import serve_django  # noqa: E402
from tests.web.http_contract import (  # noqa: E402
    JSON_TYPE,
    REPORT,
    SECRET,
    ContractFixtures,
    HTTPContract,
    body_of,
    frames_of,
    token_of_rendered_job,
)
from tests.web.servers import serve_asgi  # noqa: E402
from tests.web.tracing import TracingVerifier, WSGIBodyMeter  # noqa: E402

assert settings.ROOT_URLCONF == "tests.web.django_project.urls", (
    "Django was set up with other settings before this module; these tests need "
    "tests.web.django_project.settings"
)
#: What the app's ready() configured from the project's IMMORTUS settings.
READY_CONFIG = config.get_config()
config.reset()


#: A foreign origin: no answer invites it to read (no CORS headers).
EVIL = "http://evil.example"

# -- the servers -----------------------------------------------------------------------------


METER = WSGIBodyMeter(get_wsgi_application())


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """Django's threaded WSGI server of ``METER(app)``."""
    with serve_django(METER) as url:
        yield url


@pytest.fixture(scope="module")
def asgi_url() -> Iterator[str]:
    """A uvicorn server of Django's ASGI application."""
    with serve_asgi(get_asgi_application()) as url:
        yield url


@pytest.fixture
def base_url(server_url: str) -> str:
    """The immortus prefix on the running server: what the contract needs."""
    return f"{server_url}/immortus"


@pytest.fixture
def short_lived_url(base_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The prefix, its streams living half a second (``IMMORTUS["streams"]``, read per request)."""
    monkeypatch.setattr(settings, "IMMORTUS", {**settings.IMMORTUS, "streams": {"lifetime": 0.5}})
    return base_url


#: A CSRF secret, sent as Django's cookie and header: what a page of the site sends.
CSRF_SECRET = "a" * 32
#: The headers of a ``POST`` that passes Django's CSRF middleware (over plain HTTP).
CSRF_HEADERS = {"Cookie": f"csrftoken={CSRF_SECRET}", "X-CSRFToken": CSRF_SECRET}


class TestDjangoContract(HTTPContract):
    """The shared HTTP contract, against Django under WSGI (cancel sends the CSRF token)."""

    @pytest.fixture
    def post_headers(self) -> dict[str, str]:
        """Django's CSRF cookie and header: the cancel route is CSRF-protected."""
        return dict(CSRF_HEADERS)


# -- the adapter's own tests -----------------------------------------------------------------


SubjectSetting = Callable[[object], None]


@pytest.fixture
def subject(monkeypatch: pytest.MonkeyPatch) -> SubjectSetting:
    """Sets Django's ``IMMORTUS_SUBJECT`` setting for this test (the server threads see it)."""

    def set_subject(path: object) -> None:
        monkeypatch.setattr(settings, "IMMORTUS_SUBJECT", path, raising=False)

    return set_subject


@pytest.fixture
def tracing(monkeypatch: pytest.MonkeyPatch) -> TracingVerifier:
    """Every immortus view answers with a fresh verifier: polls every 10 ms, heartbeats 20 ms."""
    verifier = TracingVerifier(interval=0.01, heartbeat=0.02)
    monkeypatch.setattr(views, "get_verifier", lambda: verifier)
    return verifier


def csrf_token_of(page: httpx.Response) -> str:
    """The token of the page's ``<meta name="csrf-token">`` tag (what the JS client reads)."""
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert found is not None, page.text
    return found[1]


class TestDjango(ContractFixtures):
    """What only the Django adapter promises, or what needs its internals to check."""

    def test_the_app_reads_no_more_than_the_batch_cap(
        self, http: httpx.Client, jobs: Store
    ) -> None:
        METER.read = 0
        response = http.post("verify", content=b"[" + b" " * (8 * 1024 * 1024), headers=JSON_TYPE)
        assert response.status_code == 400
        assert str(MAX_BATCH_BYTES) in body_of(response)["error"]["message"]
        assert 0 < METER.read <= MAX_BATCH_BYTES + 1
        assert http.get("verify/job-1").status_code == 200

    def test_a_batch_of_a_form_content_type_is_refused_unparsed(
        self, http: httpx.Client, jobs: Store
    ) -> None:
        content = b'{"jobs": [{"job_id": "job-1"}]}'
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        response = http.post("verify", content=content, headers=headers)
        assert response.status_code == 415
        assert body_of(response)["error"]["type"] == "UnsupportedMediaType"

    def test_the_script_is_served_from_the_static_directory(
        self, http: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(views, "STATIC_DIR", tmp_path)
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
        assert response.headers["x-content-type-options"] == "nosniff"
        etag = response.headers["etag"]
        assert etag.startswith('"')
        cached = http.get("immortus.js", headers={"If-None-Match": etag})
        assert cached.status_code == 304
        assert cached.content == b""
        assert cached.headers["etag"] == etag
        assert cached.headers["cache-control"] == "public, max-age=3600"
        stale = http.get("immortus.js", headers={"If-None-Match": '"other"'})
        assert (stale.status_code, stale.content) == (200, script)

    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [
            ("HEAD", "verify/job-1", "GET"),
            ("OPTIONS", "verify/job-1", "GET"),
            ("HEAD", "verify", "POST"),
            ("OPTIONS", "stream/job-1", "GET"),
            ("HEAD", "immortus.js", "GET"),
        ],
    )
    def test_head_and_options_are_a_405(
        self, http: httpx.Client, method: str, path: str, allowed: str
    ) -> None:
        response = http.request(method, path)
        assert response.status_code == 405
        assert response.headers["allow"] == allowed
        assert response.headers["content-type"] == "application/json"
        if method != "HEAD":
            assert body_of(response)["error"]["type"] == "MethodNotAllowed"

    def test_a_path_under_the_prefix_that_is_no_route_is_a_404_json(
        self, http: httpx.Client
    ) -> None:
        for path in ("", "nothing", "verify/", "verify/a/b/c", "stream/", "verify/job-1/", "a%0Ab"):
            response = http.get(path)
            assert response.status_code == 404, path
            assert body_of(response)["error"]["type"] == "NotFound"
        assert http.post("nothing").status_code == 404  # not the CSRF middleware's 403

    def test_a_prefix_keeps_to_its_own_routes(self, server_url: str) -> None:
        response = httpx.get(f"{server_url}/elsewhere/verify/job-1")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")  # Django's own 404

    def test_the_routes_are_named_for_reverse(self) -> None:
        assert reverse("immortus:verify", args=["a"]) == "/immortus/verify/a"
        assert reverse("immortus:verify", args=["réport 1"]) == "/immortus/verify/r%C3%A9port%201"
        assert reverse("immortus:verify_class", args=["a", "b.c"]) == "/immortus/verify/a/b.c"
        assert reverse("immortus:batch") == "/immortus/verify"
        assert reverse("immortus:stream", kwargs={"job_id": "a"}) == "/immortus/stream/a"
        assert reverse("immortus:stream_class", args=["a", "b.c"]) == "/immortus/stream/a/b.c"
        assert reverse("immortus:script") == "/immortus/immortus.js"
        assert reverse("immortus:module") == "/immortus/immortus.mjs"

    def test_the_project_passes_djangos_checks(self) -> None:
        output = io.StringIO()
        call_command("check", stdout=output, stderr=output)
        assert "no issues" in output.getvalue()

    def test_an_enqueue_view_behind_csrf_works_with_the_js_clients_headers(
        self, server_url: str, secret: Verifier
    ) -> None:
        with httpx.Client(base_url=server_url, timeout=10) as browser:
            assert browser.post("/reports/job-7").status_code == 403  # no cookie, no token
            token = csrf_token_of(browser.get("/page"))
            cookie = browser.cookies["csrftoken"]
            refused = browser.post("/reports/job-7", json={"report": 7})  # cookie only
            assert refused.status_code == 403
            cross_site = {"X-CSRFToken": token, "Origin": "http://evil.example"}
            assert browser.post("/reports/job-7", headers=cross_site).status_code == 403
            for csrf in (token, cookie):  # from the meta tag, or from the cookie
                # What fetch() sends for Immortus.create: both headers, and the page's origin.
                headers = {"X-CSRFToken": csrf, "X-CSRF-Token": csrf, "Origin": server_url}
                response = browser.post("/reports/job-7", json={"report": 7}, headers=headers)
                job_token = token_of_rendered_job(response, "job-7", secret)
            verify = browser.get(f"/immortus/verify/job-7/{REPORT}", params={"token": job_token})
            assert body_of(verify)["status"] == "created"
            assert browser.get(f"/immortus/verify/job-7/{REPORT}").status_code == 404

    def test_the_cancel_route_is_csrf_protected(self, server_url: str, jobs: Store) -> None:
        immortus.declare("contract.cancellable", cancellable=True)
        lifecycle.job_started("csrf-run", "contract.cancellable")
        cancel_requests.forget("csrf-run")
        path = "/immortus/cancel/csrf-run/contract.cancellable"
        with httpx.Client(base_url=server_url, timeout=10) as browser:
            refused = browser.post(path, json={})  # no cookie, no token
            assert refused.status_code == 403
            assert not cancel_requests.is_requested("csrf-run")
            cross_site = {**CSRF_HEADERS, "Origin": "http://evil.example"}
            assert browser.post(path, json={}, headers=cross_site).status_code == 403
            assert not cancel_requests.is_requested("csrf-run")
            token = csrf_token_of(browser.get("/page"))  # what the JS client reads
            headers = {"X-CSRFToken": token, "Origin": server_url}
            accepted = browser.post(path, json={}, headers=headers)
            assert accepted.status_code == 202
            assert cancel_requests.is_requested("csrf-run")
            # The multi-job stream changes nothing: it needs no CSRF token.
            asked = {"jobs": [{"job_id": "csrf-run", "job_class": "contract.cancellable"}]}
            lifecycle.job_cancelled("csrf-run", "contract.cancellable")
            with browser.stream("POST", "/immortus/stream", json=asked) as streamed:
                assert streamed.status_code == 200
                assert b"cancelled" in streamed.read()

    def test_tokens_bound_to_the_user_open_for_that_user_only(
        self, server_url: str, asgi_url: str, jobs: Store, secret: Verifier, subject: SubjectSetting
    ) -> None:
        subject("tests.web.django_project.views.user_of")
        alice, bob = {"X-User": "alice"}, {"X-User": "bob"}
        with httpx.Client(base_url=server_url, timeout=10) as browser:
            csrf = {"X-CSRFToken": csrf_token_of(browser.get("/page"))}
            rendered = browser.post("/bound-reports/job-9", headers={**csrf, **alice})
            token = body_of(rendered)["token"]
            assert secret.tokens is not None
            assert secret.tokens.check(token, "job-9", REPORT, "alice")
            verify, params = f"/immortus/verify/job-9/{REPORT}", {"token": token}
            assert body_of(browser.get(verify, params=params, headers=alice))["status"] == "created"
            forged = browser.get(verify, params={"token": "v1.1.forged"}, headers=alice)
            unknown = JobStatus.unknown("job-9", REPORT).to_dict()
            assert (forged.status_code, body_of(forged)) == (404, unknown)
            for refused in (
                browser.get(verify, params=params, headers={**bob, "Origin": EVIL}),
                browser.get(verify, params=params),  # no user: no subject
                httpx.get(f"{asgi_url}{verify}", params=params, headers=bob),
            ):
                assert (refused.status_code, refused.content) == (404, forged.content)
                assert refused.headers["cache-control"] == "no-store"
                assert not [h for h in refused.headers if h.startswith("access-control-")]
            under_asgi = httpx.get(f"{asgi_url}{verify}", params=params, headers=alice)
            assert body_of(under_asgi)["status"] == "created"
            batch = {"jobs": [{"job_id": "job-9", "job_class": REPORT, "token": token}]}
            mine, theirs = (
                body_of(browser.post("/immortus/verify", json=batch, headers=user))
                for user in (alice, bob)
            )
            assert (mine["jobs"][0]["status"], theirs["jobs"]) == ("created", [unknown])
            lifecycle.job_finished("job-9", REPORT)
            stream = f"/immortus/stream/job-9/{REPORT}"
            with browser.stream("GET", stream, params=params, headers=alice) as response:
                [(kind, body)] = frames_of(response)  # one frame: the job is completed
                assert (kind, body and body["status"]) == ("data", "finished")
            with browser.stream("GET", stream, params=params, headers=bob) as response:
                assert response.status_code == 404
                assert list(frames_of(response)) == [("error", unknown)]

    def test_without_immortus_subject_an_unbound_token_opens_as_before(
        self, server_url: str, jobs: Store, secret: Verifier
    ) -> None:
        with httpx.Client(base_url=server_url, timeout=10) as browser:
            csrf = {"X-CSRFToken": csrf_token_of(browser.get("/page"))}
            alice = {"X-User": "alice"}
            rendered = browser.post("/bound-reports/job-9", headers={**csrf, **alice})
            token = token_of_rendered_job(rendered, "job-9", secret)  # bound to no subject
            verify = browser.get(f"/immortus/verify/job-9/{REPORT}", params={"token": token})
            assert body_of(verify)["status"] == "created"

    def test_render_job_response(self, jobs: Store) -> None:
        response = render_job_response({"id": 42}, REPORT)
        assert response.status_code == 200
        assert response.content == b'{"job_id":"42","job_class":"contract.report"}'
        assert response["Content-Type"] == "application/json"
        assert response["Cache-Control"] == "no-store"
        failed = render_job_response(object(), verifier=Verifier(secret_key=SECRET))
        assert (failed.status_code, failed.content) == (500, b"{}")

    def test_a_custom_verify_endpoint_works_as_verify_job_url(
        self, server_url: str, jobs: Store
    ) -> None:
        with httpx.Client(base_url=server_url, timeout=10) as browser:
            token = csrf_token_of(browser.get("/page"))
            started = browser.post("/custom-reports/job-3", headers={"X-CSRFToken": token})
            url = started.json()["verify_job_url"]
            assert url == f"{server_url}/reports/job-3/status"
            assert browser.get(url).json() == {
                "job_id": "job-3",
                "completed": False,
                "success": None,
            }
            lifecycle.job_finished("job-3", REPORT)
            done = browser.get(url).json()
            assert (done["completed"], done["success"]) == (True, True)
            assert done["download_url"] == f"{server_url}/reports/job-3.pdf"
            assert browser.get(url.replace("job-3", "nobody")).status_code == 404

    def test_a_client_leaving_ends_the_stream_generator(
        self, server_url: str, jobs: Store, tracing: TracingVerifier
    ) -> None:
        with (
            httpx.Client(base_url=f"{server_url}/immortus/", timeout=10) as client,
            client.stream("GET", f"stream/job-1/{REPORT}") as response,
        ):
            frames = frames_of(response)  # kept: closing it would close the connection
            assert next(frames)[1]["status"] == "started"  # type: ignore[index]
            assert next(frames)[0] == "comment"  # the generator is polling
            assert tracing.started.is_set()
            assert not tracing.ended.is_set()
        assert tracing.ended.wait(10)

    def test_under_asgi_a_stream_sends_each_change_then_ends(
        self, asgi_url: str, jobs: Store
    ) -> None:
        seen = []
        with (
            httpx.Client(timeout=10) as client,
            client.stream("GET", f"{asgi_url}/immortus/stream/job-1/{REPORT}") as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            for kind, body in frames_of(response):
                assert kind == "data"
                assert body is not None
                seen.append(body["status"])
                lifecycle.job_finished("job-1", REPORT)
        assert seen == ["started", "finished"]

    def test_under_asgi_a_multi_job_stream_follows_its_jobs_to_the_end(
        self, asgi_url: str, jobs: Store
    ) -> None:
        lifecycle.job_enqueued("job-2", REPORT)
        asked = {"jobs": [{"job_id": job_id, "job_class": REPORT} for job_id in ("job-1", "job-2")]}
        seen = []
        with (
            httpx.Client(timeout=10) as client,
            client.stream("POST", f"{asgi_url}/immortus/stream", json=asked) as response,
        ):
            assert response.status_code == 200
            for event, data in events_of(response):
                if event == "job":
                    seen.append((data["index"], data["body"]["status"]))  # type: ignore[index]
                    if len(seen) == 2:
                        lifecycle.job_finished("job-1", REPORT)
                        lifecycle.job_finished("job-2", REPORT)
                elif event == "end":
                    seen.append((-1, "end"))
        assert seen[:2] == [(0, "started"), (1, "created")]
        assert sorted(seen[2:4]) == [(0, "finished"), (1, "finished")]
        assert seen[4:] == [(-1, "end")]

    def test_under_asgi_a_client_leaving_ends_the_stream_generator(
        self, asgi_url: str, jobs: Store, tracing: TracingVerifier
    ) -> None:
        with (
            httpx.Client(timeout=10) as client,
            client.stream("GET", f"{asgi_url}/immortus/stream/job-1/{REPORT}") as response,
        ):
            frames = frames_of(response)
            assert next(frames)[1]["status"] == "started"  # type: ignore[index]
            assert next(frames)[0] == "comment"
            assert not tracing.ended.is_set()
        assert tracing.ended.wait(10)

    def test_under_asgi_a_batch_is_answered(self, asgi_url: str, jobs: Store) -> None:
        response = httpx.post(f"{asgi_url}/immortus/verify", json={"jobs": [{"job_id": "job-1"}]})
        assert body_of(response)["jobs"][0]["status"] == "started"


# -- the IMMORTUS setting --------------------------------------------------------------------

KEY = "s3cret"  # a SECRET_KEY for the translation tests


def django_settings(**declared: object) -> SimpleNamespace:
    """A Django settings object with ``SECRET_KEY = KEY`` and ``declared``."""
    return SimpleNamespace(SECRET_KEY=KEY, **declared)


def test_ready_applied_the_projects_settings() -> None:
    assert READY_CONFIG.token_max_age == 3600
    assert READY_CONFIG.progress_interval == 0
    assert READY_CONFIG.secret_key == derive_secret_key(settings.SECRET_KEY)


def test_the_token_key_is_derived_from_secret_key() -> None:
    source = django_settings(IMMORTUS={"token_max_age": 60})
    derived = hmac.new(KEY.encode(), TOKEN_KEY_SALT, hashlib.sha256).hexdigest()
    assert immortus_settings(source) == {"token_max_age": 60, "secret_key": derived}
    assert derived != KEY
    assert derive_secret_key("other") != derived
    assert immortus_settings(django_settings()) == {"secret_key": derived}


def test_a_secret_key_of_its_own_or_none_is_kept() -> None:
    own = django_settings(IMMORTUS={"secret_key": "mine"})
    assert immortus_settings(own) == {"secret_key": "mine"}
    open_ = django_settings(IMMORTUS={"secret_key": None})
    assert immortus_settings(open_) == {"secret_key": None}
    assert configure_from_settings(open_).secret_key is None
    assert config.get_config().secret_key is None


def test_configure_from_settings_applies_them(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    source = django_settings(IMMORTUS={"store": store, "ttl": 60})
    configure_from_settings(source)
    applied = config.get_config()
    assert (applied.store, applied.ttl) == (store, 60)
    assert applied.secret_key == derive_secret_key(KEY)


@pytest.mark.parametrize(
    ("declared", "named"),
    [
        ({"secret": "x"}, "IMMORTUS['secret']"),
        ({"token_max_age": -1}, "IMMORTUS['token_max_age']"),
        ({"progress_interval": "fast"}, "IMMORTUS['progress_interval']"),
        ({"secret_key": ""}, "IMMORTUS['secret_key']"),
        ({"store": 5}, "IMMORTUS['store']"),
        (["store"], "IMMORTUS must be a dict"),
    ],
)
def test_a_bad_setting_is_improperly_configured(declared: object, named: str) -> None:
    source = django_settings(IMMORTUS=declared)
    with pytest.raises(ImproperlyConfigured, match=re.escape(named)):
        configure_from_settings(source)
    assert config.get_config().secret_key is None  # nothing was applied


# -- the IMMORTUS_SUBJECT setting ------------------------------------------------------------


def request_of(user: str) -> HttpRequest:
    request = HttpRequest()
    request.META["HTTP_X_USER"] = user
    return request


def other_user_of(request: HttpRequest) -> str:
    return "other"


def test_immortus_subject_names_the_function_reading_the_subject(
    subject: SubjectSetting,
) -> None:
    assert subject_of(request_of("alice")) is None  # unset: no subject
    subject("tests.web.django_project.views.user_of")
    assert subject_of(request_of("alice")) == "alice"
    subject(f"{__name__}.other_user_of")  # a changed setting is imported anew
    assert subject_of(request_of("alice")) == "other"
    subject(None)
    assert subject_of(request_of("alice")) is None


@pytest.mark.parametrize(
    ("path", "says"),
    [
        (42, "IMMORTUS_SUBJECT must be the dotted path of a function, not int"),
        ("tests.web.nothing.here", "IMMORTUS_SUBJECT = 'tests.web.nothing.here' cannot be"),
        ("nodots", "IMMORTUS_SUBJECT = 'nodots' cannot be imported"),
        ("tests.web.test_django.KEY", "IMMORTUS_SUBJECT = 'tests.web.test_django.KEY' is not"),
    ],
)
def test_a_bad_immortus_subject_is_improperly_configured(
    subject: SubjectSetting, path: object, says: str
) -> None:
    subject(path)
    with pytest.raises(ImproperlyConfigured) as raised:
        subject_of(request_of("alice"))
    assert str(raised.value).startswith(says)


def test_an_empty_secret_key_is_improperly_configured() -> None:
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY"):
        immortus_settings(SimpleNamespace(SECRET_KEY=""))


# -- imports ---------------------------------------------------------------------------------


def test_importing_immortus_or_the_web_core_imports_no_django() -> None:
    assert modules_loaded_by("import immortus, immortus.web", {"django", "asgiref"}) == []


def test_a_missing_django_says_which_extra_to_install() -> None:
    error = import_error_without("immortus.web.django", "django")
    assert error.startswith("MissingDependency: ")
    assert 'pip install "immortus[django]"' in error


@pytest.mark.parametrize(
    ("query", "token"),
    [
        ("", None),
        ("token=v1.1764000000.Ab_-~", "v1.1764000000.Ab_-~"),  # the JS client's: read as it is
        ("token=", ""),
        ("token=v1%2E1", "v1.1"),
        ("token=a+b", "a b"),
        ("token=a&token=b", "b"),
        ("page=2&token=t", "t"),
        ("page=2", None),
    ],
)
def test_the_views_read_the_token_as_request_get_does(query: str, token: str | None) -> None:
    from django.test import RequestFactory

    request = RequestFactory().get("/immortus/verify/job-1", QUERY_STRING=query)
    assert views._token(request) == token
    assert request.GET.get("token") == token


# -- system checks ---------------------------------------------------------------------------

#: A project that includes the immortus URLs; ``{apps}`` and ``{immortus}`` are filled in.
CHECKED_SETTINGS = """
SECRET_KEY = "django-insecure-check-tests-only"
ROOT_URLCONF = "check_project.urls"
INSTALLED_APPS = {apps!r}
DATABASES = {{}}
IMMORTUS = {immortus!r}
"""
CHECKED_URLS = """
from django.urls import include, path

urlpatterns = [path("immortus/", include("immortus.web.django.urls"))]
"""
RUN_CHECKS = """
import json, django
django.setup()
from django.core.checks import run_checks
print(json.dumps(sorted(m.id for m in run_checks() if m.id and m.id.startswith("immortus."))))
"""


def immortus_checks(tmp_path: Path, apps: list[str], immortus: dict[str, object]) -> list[str]:
    """Start a fresh Django project of these settings, as ``manage.py check`` does; the ids."""
    project = tmp_path / "check_project"
    project.mkdir()
    (project / "__init__.py").write_text("")
    (project / "settings.py").write_text(CHECKED_SETTINGS.format(apps=apps, immortus=immortus))
    (project / "urls.py").write_text(CHECKED_URLS)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "check_project.settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
    }
    result = subprocess.run(
        [sys.executable, "-c", RUN_CHECKS],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    found: list[str] = json.loads(result.stdout)
    return found


APP = ["immortus.web.django"]


@pytest.mark.parametrize(
    ("apps", "immortus", "expected"),
    [
        pytest.param([], {}, ["immortus.E001", "immortus.E003"], id="urls without the app"),
        pytest.param(
            [],
            {"nope": 1},
            ["immortus.E001", "immortus.E002", "immortus.E003"],
            id="urls without the app, a bad IMMORTUS",
        ),
        pytest.param(
            [], {"open_endpoints": True}, ["immortus.E001", "immortus.E003"], id="ignored"
        ),
        pytest.param(APP, {}, [], id="the app: a key derived from SECRET_KEY"),
        pytest.param(APP, {"secret_key": None}, ["immortus.E003"], id="the app, no key"),
        pytest.param(APP, {"secret_key": None, "open_endpoints": True}, [], id="declared open"),
    ],
)
def test_system_checks_report_what_would_fail(
    tmp_path: Path, apps: list[str], immortus: dict[str, object], expected: list[str]
) -> None:
    assert immortus_checks(tmp_path, apps, immortus) == expected


def test_a_plain_token_is_read_without_parsing_the_query() -> None:
    from django.test import RequestFactory  # Django is set up above

    from immortus.web.django import views

    plain = RequestFactory().get("/immortus/verify/job-1?token=v1.1.abc")
    with_history = RequestFactory().get("/immortus/verify/job-1?history=1&token=v1.1.abc")

    assert views._query(plain) == ("v1.1.abc", None)
    assert views._query(with_history) == ("v1.1.abc", "1")
    # Django's parsed query is a cached property: made (and kept) only for the second request
    assert ("GET" in vars(plain), "GET" in vars(with_history)) == (False, True)
