"""The dashboard in Flask (auth, CSRF), the metrics, and the counts' bounded fallback."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import pytest
from flask import Flask, Request

from immortus import config
from immortus.exceptions import ConfigurationError, StoreUnavailable
from immortus.status import State
from immortus.stores.base import JobPage
from immortus.stores.memory import MemoryStore
from immortus.transitions import Event, EventKind
from immortus.web.dashboard.core import configured_key
from immortus.web.dashboard.counts import Tally, read_counts
from immortus.web.dashboard.csrf import CsrfTokens
from immortus.web.dashboard.filters import parse_filter
from immortus.web.dashboard.flask import dashboard_blueprint
from immortus.web.dashboard.listing import MAX_SCANNED, list_jobs
from tests.dashboard.conftest import HOSTILE_ID
from tests.web.servers import serve_werkzeug


def _operator(request: Request) -> bool:
    return request.headers.get("x-operator") == "yes"


def _app() -> Flask:
    app = Flask(__name__)
    app.register_blueprint(dashboard_blueprint("/ops", authorize=_operator))
    return app


def test_flask_refuses_without_authorize() -> None:
    with pytest.raises(ConfigurationError):
        dashboard_blueprint("/ops", authorize=None)  # type: ignore[arg-type]


def test_flask_serves_operators_only(store: MemoryStore) -> None:
    client = _app().test_client()
    assert client.get("/ops/jobs/done-1").status_code == 403
    answer = client.get("/ops/jobs/done-1", headers={"x-operator": "yes"})
    assert answer.status_code == 200
    assert b"done-1" in answer.data
    assert client.get("/ops/jobs?since=1y", headers={"x-operator": "yes"}).status_code == 400


def test_flask_prune_checks_the_csrf_token_on_a_real_server(store: MemoryStore) -> None:
    operator = {"x-operator": "yes"}
    with serve_werkzeug(_app()) as url, httpx.Client(base_url=url, headers=operator) as client:
        page = client.get("/ops/").text
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token is not None
        assert client.post("/ops/prune", data={"csrf": "x.y"}).status_code == 403
        assert client.post("/ops/prune", data={"csrf": token.group(1)}).status_code == 200
        client.cookies.clear()
        assert client.post("/ops/prune", data={"csrf": token.group(1)}).status_code == 403
        assert httpx.get(f"{url}/ops/jobs/done-1").status_code == 403


def test_metrics_come_from_the_overview_counts(store: MemoryStore) -> None:
    client = _app().test_client()
    text = client.get("/ops/metrics", headers={"x-operator": "yes"}).get_data(as_text=True)
    assert 'immortus_jobs{job_class="reports.build",queue="huey",state="failed"} 1.0' in text
    assert "immortus_attempt_duration_seconds_count 2.0" in text
    assert "immortus_outbox_buffered 0.0" in text
    assert "immortus_counts_approximate 0.0" in text
    assert client.get("/ops/metrics").status_code == 403


def test_counts_without_store_counters_scan_a_bounded_number_and_say_so() -> None:
    class Uncounted(MemoryStore):
        supports_counts: ClassVar[bool] = False

    store = Uncounted()
    for number in range(30):
        store.record(Event(kind=EventKind.ENQUEUED, job_id=f"job-{number}"))
    counts = read_counts(store, now=datetime.now(UTC), limit=10)
    assert counts.approximate
    assert counts.counted == 10
    exact = read_counts(store, now=datetime.now(UTC), limit=100)
    assert not exact.approximate
    assert exact.counted == 30


def test_a_store_with_counters_is_asked_for_them_not_scanned() -> None:
    now = datetime.now(UTC)
    minute = now.replace(second=0, microsecond=0)

    class Counting(MemoryStore):
        supports_counts: ClassVar[bool] = True

        def tally(self, *, since: datetime) -> Tally:
            ended = {minute: {State.LOST: 2, State.FINISHED: 5}}
            return Tally(jobs={("a.b", State.STARTED): 1_000_000}, ended=ended)

        def list_jobs(self, **options: Any) -> JobPage:
            raise AssertionError("a store with counters is never scanned")

    counts = read_counts(Counting(), now=now)
    assert counts.by_state == {State.STARTED: 1_000_000}
    assert counts.lost_last_hour == 2
    assert sum(bucket.finished for bucket in counts.buckets) == 5
    assert not counts.approximate


def test_an_unreachable_store_answers_503_and_is_counted() -> None:
    class Down(MemoryStore):
        broken = False

        def list_jobs(self, **options: Any) -> JobPage:
            if self.broken:
                raise StoreUnavailable("the server went away")
            return super().list_jobs(**options)

    store = Down()
    app = Flask(__name__)
    app.register_blueprint(dashboard_blueprint("/ops", authorize=_operator, store=store))
    client = app.test_client()
    store.broken = True
    answer = client.get("/ops/jobs", headers={"x-operator": "yes"})
    assert answer.status_code == 503
    assert b"cannot be reached" in answer.data
    store.broken = False
    text = client.get("/ops/metrics", headers={"x-operator": "yes"}).get_data(as_text=True)
    assert "immortus_store_errors_total 1.0" in text


def test_flask_sends_the_pages_headers_once(store: MemoryStore) -> None:
    answer = _app().test_client().get("/ops/", headers={"x-operator": "yes"})
    assert answer.headers.getlist("Content-Type") == ["text/html; charset=utf-8"]
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Content-Length"] == str(len(answer.data))


def test_sparse_filters_stop_early_and_go_on(store: MemoryStore) -> None:
    for number in range(2 * MAX_SCANNED):
        store.record(Event(kind=EventKind.ENQUEUED, job_id=f"filler-{number}", job_class="x.y"))
    now = datetime.now(UTC)
    first = list_jobs(store, parse_filter({"class": "reports.build"}), now=now)
    assert first.jobs == ()
    assert first.stopped_early
    assert first.next_cursor is not None
    cursor: str | None = first.next_cursor
    found: set[str] = set()
    while cursor is not None:  # "Next page" goes on until the old jobs are reached
        page = list_jobs(store, parse_filter({"class": "reports.build", "cursor": cursor}), now=now)
        found.update(job.job_id for job in page.jobs)
        cursor = page.next_cursor
    assert found == {"done-1", "failed-1", "running-1", HOSTILE_ID}


def test_the_time_filter_keeps_recent_jobs_and_stops_at_older_ones(store: MemoryStore) -> None:
    old = datetime.now(UTC) - timedelta(hours=2)
    store.record(Event(kind=EventKind.ENQUEUED, job_id="old-1", job_class="reports.build", at=old))
    page = list_jobs(store, parse_filter({"since": "1h"}), now=datetime.now(UTC), size=2)
    ids = {job.job_id for job in page.jobs}
    assert "old-1" not in ids
    assert len(ids) >= 2
    every = list_jobs(store, parse_filter({"since": "24h"}), now=datetime.now(UTC))
    assert "old-1" in {job.job_id for job in every.jobs}


def test_tokens_are_signed_with_theconfigured_key_configured_when_used() -> None:
    first, second = CsrfTokens(configured_key), CsrfTokens(configured_key)  # two processes, say
    assert not second.valid(first.make())  # no key yet: each its own random one
    config.configure(secret_key="shared")  # noqa: S106 - a test's key
    assert second.valid(first.make())
