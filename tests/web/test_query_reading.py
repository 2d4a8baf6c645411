"""The adapters read the JavaScript client's ``?token=...`` without parsing the query string.

A verify request's plain token query is matched once (``tokens.plain_token``); the framework's
parsed query is made only for any other query string. Each test's ``subject`` function runs
after the adapter read the query, and looks whether the framework parsed it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import flask
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from immortus import lifecycle
from immortus.web import Verifier
from immortus.web.flask import immortus_blueprint
from immortus.web.starlette import immortus_routes
from tests.web.servers import serve_asgi, serve_werkzeug

SECRET = "query-reading-secret"  # noqa: S105  # a test's
JOB = "job-q1"


@pytest.fixture
def verifier() -> Verifier:
    lifecycle.job_enqueued(JOB)
    return Verifier(secret_key=SECRET)


#: Serves an app whose ``subject`` notes whether the request's query was parsed; yields its URL.
Serve = Callable[[Verifier, list[bool]], AbstractContextManager[str]]


def _starlette(verifier: Verifier, parsed: list[bool]) -> AbstractContextManager[str]:
    def subject(request: Request) -> None:
        parsed.append(hasattr(request, "_query_params"))  # Starlette's parsed query, once made

    return serve_asgi(Starlette(routes=[immortus_routes(verifier=verifier, subject=subject)]))


def _flask(verifier: Verifier, parsed: list[bool]) -> AbstractContextManager[str]:
    def subject(request: flask.Request) -> None:
        parsed.append("args" in vars(request))  # Werkzeug's parsed query, once made

    app = flask.Flask(__name__)
    app.register_blueprint(immortus_blueprint(verifier=verifier, subject=subject))
    return serve_werkzeug(app)


@pytest.mark.parametrize("serve", [_starlette, _flask])
def test_a_plain_token_is_read_without_parsing_the_query(verifier: Verifier, serve: Serve) -> None:
    parsed: list[bool] = []
    token = verifier.token_for(JOB)

    with serve(verifier, parsed) as url:
        plain = httpx.get(f"{url}/immortus/verify/{JOB}?token={token}")
        with_history = httpx.get(f"{url}/immortus/verify/{JOB}?history=1&token={token}")

    assert plain.status_code == 200
    assert with_history.status_code == 200
    assert "history" in with_history.json()
    assert parsed == [False, True]  # the second query string needs the framework's parser
