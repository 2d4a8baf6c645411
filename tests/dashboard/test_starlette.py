"""The dashboard mounted in Starlette, served by uvicorn: pages, refusals, bad input, CSRF."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from immortus import cancelling
from immortus.exceptions import ConfigurationError
from immortus.stores.memory import MemoryStore
from immortus.transitions import Event, EventKind
from immortus.web.dashboard.csrf import COOKIE
from immortus.web.dashboard.starlette import dashboard_routes
from tests.dashboard.conftest import HOSTILE_ID
from tests.web.servers import serve_asgi


def _operator(request: Request) -> bool:
    return request.headers.get("x-operator") == "yes"


@pytest.fixture
def client(store: MemoryStore) -> Iterator[httpx.Client]:
    app = Starlette(routes=[dashboard_routes("/ops/jobs", authorize=_operator)])
    with serve_asgi(app) as url, httpx.Client(base_url=url, headers={"x-operator": "yes"}) as c:
        yield c


def test_no_authorize_no_dashboard() -> None:
    with pytest.raises(ConfigurationError, match="authorize"):
        dashboard_routes("/ops", authorize=None)  # type: ignore[arg-type]


def test_an_unauthorised_request_sees_403_and_no_job(client: httpx.Client) -> None:
    for path in ("/", "/jobs", "/jobs/done-1", "/rows?id=done-1", "/changes", "/metrics"):
        answer = client.get(f"/ops/jobs{path}", headers={"x-operator": "no"})
        assert answer.status_code == 403, path
        assert "done-1" not in answer.text


def test_overview_counts_and_says_they_are_approximate_only_when_they_are(
    client: httpx.Client,
) -> None:
    answer = client.get("/ops/jobs/")
    assert answer.status_code == 200
    assert "<svg" in answer.text
    assert "Outbox backlog" in answer.text
    assert "approximate" not in answer.text  # 4 jobs: the scan read them all
    assert re.search(r"state-finished\">finished</span><span class=\"number\">1<", answer.text)
    assert "huey" in answer.text
    assert "reports.build" in answer.text
    assert "script-src" not in answer.headers["content-security-policy"]  # default-src 'self'
    assert "'unsafe-inline'" not in answer.headers["content-security-policy"]


def test_list_filters_and_escapes_hostile_ids(client: httpx.Client) -> None:
    answer = client.get("/ops/jobs/jobs")
    assert answer.status_code == 200
    assert HOSTILE_ID not in answer.text
    assert "&lt;script&gt;" in answer.text
    failed = client.get("/ops/jobs/jobs", params={"state": "failed"}).text
    assert "failed-1" in failed
    assert "done-1" not in failed
    assert "done-1" in client.get("/ops/jobs/jobs", params={"queue": "huey"}).text
    assert "done-1" not in client.get("/ops/jobs/jobs", params={"queue": "rq"}).text
    found = client.get("/ops/jobs/jobs", params={"id": "running-1"}).text
    assert "running-1" in found
    assert "done-1" not in found


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("state=sleeping", "unknown state"),
        ("since=3y", "since must be one of"),
        ("queue=%3Cb%3E", "queue must be"),
        ("class=a%20b", "job class"),
        ("cursor=%21%21", "cursor"),
        ("color=red", "unknown filter"),
        ("state=failed&state=lost", "more than once"),
    ],
)
def test_bad_filters_answer_400_with_the_reason(
    client: httpx.Client, query: str, reason: str
) -> None:
    answer = client.get(f"/ops/jobs/jobs?{query}")
    assert answer.status_code == 400
    assert reason in answer.text
    assert "<b>" not in answer.text


def test_the_job_page_shows_the_traceback_escaped(client: httpx.Client) -> None:
    answer = client.get("/ops/jobs/jobs/failed-1")
    assert answer.status_code == 200
    assert "Traceback: line 7 &lt;b&gt;" in answer.text
    assert "bad &lt;row&gt;" in answer.text
    hostile = client.get(f"/ops/jobs/jobs/{quote(HOSTILE_ID, safe='')}")
    assert hostile.status_code == 200
    assert HOSTILE_ID not in hostile.text
    assert client.get("/ops/jobs/jobs/nobody").status_code == 404


def test_prune_needs_the_signed_token_of_the_page(client: httpx.Client) -> None:
    page = client.get("/ops/jobs/")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    assert client.cookies.get(COOKIE) == token.group(1)
    refused = [
        client.post("/ops/jobs/prune", data={}),
        client.post("/ops/jobs/prune", data={"csrf": "forged.0000"}),
    ]
    client.cookies.clear()
    refused.append(client.post("/ops/jobs/prune", data={"csrf": token.group(1)}))
    assert [answer.status_code for answer in refused] == [403, 403, 403]
    client.cookies.set(COOKIE, token.group(1))
    done = client.post("/ops/jobs/prune", data={"csrf": token.group(1)})
    assert done.status_code == 200
    assert "deleted 0 expired" in done.text


def test_live_updates_re_read_only_the_changed_rows(client: httpx.Client) -> None:
    first = client.get("/ops/jobs/changes").json()
    rows = client.get("/ops/jobs/rows", params=[("id", "running-1"), ("id", HOSTILE_ID)]).json()
    assert set(rows["rows"]) == {"running-1", HOSTILE_ID}
    assert HOSTILE_ID not in rows["rows"][HOSTILE_ID]
    assert "cursor" in first
    assert client.get("/ops/jobs/changes?since=x").status_code == 400


def test_partial_pages_for_live_updates(client: httpx.Client) -> None:
    answer = client.get("/ops/jobs/jobs/running-1", headers={"x-immortus-partial": "1"})
    assert answer.text.startswith("<h1>")
    assert "37 %" in answer.text


def test_cancel_needs_the_token_then_cancels(client: httpx.Client, store: MemoryStore) -> None:
    # Without a Huey installed, Huey's canceller (registered once its integration is imported,
    # as other test files do) refuses: cancel here as the store strategy does, by request.
    cancelling.unregister_canceller("huey")
    page = client.get("/ops/jobs/jobs/running-1")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    assert 'action="/ops/jobs/jobs/running-1/cancel"' in page.text
    forged = client.post("/ops/jobs/jobs/running-1/cancel", data={"csrf": "a.b"})
    assert forged.status_code == 403
    running = store.get("running-1")
    assert running is not None
    assert running.state.value == "started"
    done = client.post("/ops/jobs/jobs/running-1/cancel", data={"csrf": token.group(1)})
    assert done.status_code == 200, done.text
    assert "asked to stop" in done.text or "is cancelled" in done.text
    assert "Cancel this job" not in client.get("/ops/jobs/jobs/done-1").text


def test_a_percent_in_an_id_is_decoded_once(client: httpx.Client, store: MemoryStore) -> None:
    store.record(Event(kind=EventKind.ENQUEUED, job_id="a%41"))
    page = client.get(f"/ops/jobs/jobs/{quote('a%41', safe='')}")
    assert page.status_code == 200
    assert "a%41" in page.text
