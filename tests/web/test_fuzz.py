"""Schemathesis against a live server of each framework, driven by ``docs/openapi.json``.

Every operation of the OpenAPI document is fuzzed, with data that fits its schema and data
that does not, against uvicorn (Starlette), Werkzeug (Flask) and Django's threaded WSGI server,
each serving the adapter's routes over a working SQLite store. Each answer must be documented
(code, media type, headers, body schema), must not be a 5xx, must refuse what the schema
refuses, and must carry no traceback. The runs are derandomized: the same inputs every time.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.web.django_project.settings")
django.setup()

import pytest  # noqa: E402
import requests  # noqa: E402
import schemathesis  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from flask import Flask  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import CheckFunction  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.applications import Starlette  # noqa: E402

import immortus  # noqa: E402
from immortus import JobError, Progress, config, lifecycle  # noqa: E402
from immortus.web.asgi import immortus_routes  # noqa: E402
from immortus.web.flask import immortus_blueprint  # noqa: E402
from immortus.web.openapi import openapi_document  # noqa: E402
from tests.web.conftest import routes_declared_open  # noqa: E402
from tests.web.django_server import serve_django  # noqa: E402
from tests.web.servers import serve_asgi, serve_werkzeug  # noqa: E402

DOCUMENT = openapi_document()
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
OPERATIONS = sorted(
    path_item[method]["operationId"]
    for path_item in DOCUMENT["paths"].values()
    for method in ("get", "post")
    if method in path_item
)
#: The job the document's examples name; the tests create it, so examples reach a 200.
EXAMPLE_ID: str = DOCUMENT["components"]["parameters"]["JobId"]["example"]
EXAMPLE_CLASS: str = DOCUMENT["components"]["parameters"]["JobClass"]["example"]
#: The group the document's examples name: the example job and the failed one.
EXAMPLE_GROUP: str = DOCUMENT["components"]["parameters"]["GroupId"]["example"]

CHECKS: list[CheckFunction] = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: (operation, mode) pairs fuzzed; the scripts take nothing a negative case could break.
FUZZED = [
    *((operation, GenerationMode.POSITIVE) for operation in OPERATIONS),
    *(
        (operation, GenerationMode.NEGATIVE)
        for operation in OPERATIONS
        if operation not in ("script", "module")
    ),
]
#: Bounded: 30 cases per operation and mode keep the file under a minute on two cores.
FUZZ = settings(
    max_examples=30,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# -- the servers -----------------------------------------------------------------------------


def _starlette() -> AbstractContextManager[str]:
    return serve_asgi(Starlette(routes=[immortus_routes()]))


def _flask() -> AbstractContextManager[str]:
    app = Flask(__name__)
    with routes_declared_open():  # this fixture runs before the tests' settings are made
        app.register_blueprint(immortus_blueprint())
    return serve_werkzeug(app)


def _django() -> AbstractContextManager[str]:
    return serve_django(get_wsgi_application())


SERVERS: dict[str, Callable[[], AbstractContextManager[str]]] = {
    "starlette": _starlette,
    "flask": _flask,
    "django": _django,
}


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A live server of one framework with immortus's routes under ``/immortus``."""
    with SERVERS[request.param]() as url:
        yield url


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """One HTTP session per test (schemathesis sends with ``requests``)."""
    with requests.Session() as session:
        yield session


@pytest.fixture
def example_job(tmp_path: Path) -> str:
    """A SQLite store in ``tmp_path``; the document's example job, finished, with meta.

    It and ``failed-job`` make up the document's example group.
    """
    config.configure(store=f"sqlite:///{tmp_path / 'jobs.db'}", progress_interval=0)

    @immortus.track(name=EXAMPLE_CLASS)
    def build() -> None: ...

    lifecycle.job_enqueued(EXAMPLE_ID, EXAMPLE_CLASS)
    lifecycle.job_meta(EXAMPLE_ID, {"report": "monthly", "rows": 3, "status": "meta loses"})
    lifecycle.job_started(EXAMPLE_ID, EXAMPLE_CLASS)
    lifecycle.job_progress(EXAMPLE_ID, Progress(current=3, total=3, message="row 3"), EXAMPLE_CLASS)
    lifecycle.job_finished(EXAMPLE_ID, EXAMPLE_CLASS)
    lifecycle.job_enqueued("failed-job", EXAMPLE_CLASS)
    lifecycle.job_failed(
        "failed-job", JobError(type="ValueError", message="bad row"), EXAMPLE_CLASS
    )
    for job_id in (EXAMPLE_ID, "failed-job"):
        immortus.add_to_group(EXAMPLE_GROUP, job_id, EXAMPLE_CLASS)
    return EXAMPLE_ID


def check_answer(
    case: schemathesis.Case[Any],
    response: schemathesis.Response,
    checks: list[CheckFunction] = CHECKS,
) -> None:
    """Fail unless ``response`` is a documented, non-5xx answer without a traceback."""
    where = f"{case.method} {case.formatted_path} -> {response.status_code}"
    assert response.status_code < 500, f"{where}: {response.text[:500]}"
    assert "Traceback" not in response.text, where
    case.validate_response(response, checks=checks)


# -- the tests -------------------------------------------------------------------------------


def test_the_document_matches_the_module_that_makes_it() -> None:
    """``docs/openapi.json`` is ``python -m immortus.web.openapi``'s output, and valid."""
    from openapi_spec_validator import validate

    committed = Path(__file__).parents[2] / "docs" / "openapi.json"
    assert json.loads(committed.read_text(encoding="utf-8")) == DOCUMENT
    validate(DOCUMENT)
    validate(openapi_document("/"))
    assert set(openapi_document("/jobs/")["paths"]) == {
        "/jobs" + path.removeprefix("/immortus") for path in DOCUMENT["paths"]
    }


@pytest.mark.parametrize("operation_id", OPERATIONS)
def test_examples_are_answered_as_documented(
    operation_id: str, server_url: str, example_job: str, http: requests.Session
) -> None:
    operation = SCHEMA.find_operation_by_id(operation_id)
    path = {"job_id": EXAMPLE_ID, "job_class": EXAMPLE_CLASS}
    if operation_id in ("batch", "stream_jobs"):
        case = operation.Case(
            body={
                "jobs": [
                    {"job_id": EXAMPLE_ID},
                    {"job_id": "failed-job", "job_class": EXAMPLE_CLASS, "token": "t"},
                    {"job_id": "nobody"},
                ]
            },
            media_type="application/json",
        )
    elif operation_id.startswith("cancel"):
        case = operation.Case(path_parameters=path, body={}, media_type="application/json")
    elif operation_id == "group":
        case = operation.Case(path_parameters={"group_id": EXAMPLE_GROUP})
    else:
        case = operation.Case(path_parameters=path)
    response = case.call(base_url=server_url, session=http, timeout=10)
    check_answer(case, response)
    if operation_id.startswith("cancel"):  # not cancellable; Django checks its CSRF token first
        assert response.status_code == (403 if _csrf_refusal(response) else 405)
        return
    expected = 404 if operation_id in ("script", "module") and not _installed() else 200
    assert response.status_code == expected
    if operation_id.startswith("verify"):
        assert response.json()["status"] == "finished"
        assert response.json()["rows"] == 3  # meta, as an additional property
    if operation_id == "batch":
        statuses = [body["status"] for body in response.json()["jobs"]]
        assert statuses == ["finished", "failed", "unknown"]
    if operation_id == "group":
        group = response.json()
        assert (group["status"], group["completed"], group["total"]) == ("failed", 2, 2)


@pytest.mark.parametrize(("operation_id", "mode"), FUZZED)
def test_fuzzed_requests_are_answered_as_documented(
    operation_id: str,
    mode: GenerationMode,
    server_url: str,
    example_job: str,
    http: requests.Session,
) -> None:
    operation = SCHEMA.find_operation_by_id(operation_id)
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def answered(case: schemathesis.Case[Any]) -> None:
        check_answer(case, case.call(base_url=server_url, session=http, timeout=10), checks)

    answered()


def _csrf_refusal(response: schemathesis.Response) -> bool:
    """Whether Django's CSRF check answered (an HTML page, not immortus's JSON)."""
    return response.headers.get("content-type", [""])[0].startswith("text/html")


def _installed() -> bool:
    from immortus.web.script import STATIC_DIR

    return (STATIC_DIR / "immortus.js").is_file()


def test_no_module_named_by_a_request_is_imported(
    server_url: str, example_job: str, http: requests.Session
) -> None:
    names = ["antigravity", "this", "xml.dom.minidom", "turtle"]
    before = set(sys.modules)
    for name in names:
        for path in (f"verify/x/{name}", f"stream/x/{name}"):
            response = http.get(f"{server_url}/immortus/{path}", timeout=10)
            assert response.status_code == 404
        response = http.post(
            f"{server_url}/immortus/verify",
            json={"jobs": [{"job_id": "x", "job_class": name}]},
            timeout=10,
        )
        assert response.json()["jobs"][0]["status"] == "unknown"
    assert not {name for name in names if name in sys.modules} - before


def test_every_undocumented_method_is_a_json_405(
    server_url: str, example_job: str, http: requests.Session
) -> None:
    """What the document's ``info`` says: any other method on a route is a 405 with ``Allow``."""
    for template, path_item in DOCUMENT["paths"].items():
        path = template.format(job_id=EXAMPLE_ID, job_class=EXAMPLE_CLASS, group_id=EXAMPLE_GROUP)
        documented = {method.upper() for method in path_item}
        for method in sorted(
            {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"} - documented
        ):
            response = http.request(method, f"{server_url}{path}", timeout=10)
            assert response.status_code == 405, (method, path)
            assert response.headers["Allow"] == ",".join(sorted(documented))
            if method != "HEAD":
                assert response.json()["error"]["type"] == "MethodNotAllowed"
