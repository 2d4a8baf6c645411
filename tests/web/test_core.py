from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import immortus
from immortus import JobStatus, State, TrackingStrategy, lifecycle
from immortus.exceptions import EndpointsNotSecured, InvalidInput, UntrackedJobClass
from immortus.stores.sqlite import SQLiteStore
from immortus.web import (
    MAX_BATCH_BYTES,
    StreamResponse,
    Verifier,
    WebResponse,
    get_verifier,
    render_job,
)
from immortus.web.batch import JSON_MEDIA_TYPE
from immortus.web.tokens import JobTokens
from tests.support import modules_loaded_by
from tests.web.conftest import FaultyStore

SECRET = "s3cret-key"  # noqa: S105


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Broken(TrackingStrategy):
    def status(self, job_id: str) -> JobStatus:
        raise RuntimeError("password=hunter2 at db-7.internal")


class Fixed(TrackingStrategy):
    def status(self, job_id: str) -> JobStatus:
        return JobStatus(job_id=job_id, state=State.STARTED)


@pytest.fixture
def jobs(store: FaultyStore) -> FaultyStore:
    """Tracked classes ``jobs.a`` (store strategy), ``jobs.broken``, ``jobs.fixed``; a job."""

    @immortus.track(name="jobs.a")
    def a() -> None: ...

    @immortus.track(name="jobs.broken", strategy=Broken())
    def broken() -> None: ...

    @immortus.track(name="jobs.fixed", strategy=Fixed())
    def fixed() -> None: ...

    lifecycle.job_enqueued("job-1", "jobs.a")
    lifecycle.job_started("job-1", "jobs.a")
    return store


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier() -> Verifier:
    return Verifier(open_endpoints=True)


@pytest.fixture
def signed(clock: Clock) -> Verifier:
    return Verifier(secret_key=SECRET, token_max_age=60, clock=clock)


def unknown_body(job_id: str, job_class: str | None = None) -> bytes:
    return WebResponse(404, JobStatus.unknown(job_id, job_class).to_dict()).content()


def error_of(response: WebResponse) -> dict[str, Any]:
    body = json.loads(response.content())
    assert set(body) == {"job_id", "error"}
    assert set(body["error"]) == {"type", "message"}
    error: dict[str, Any] = body["error"]
    return error


# -- verify: 200 -------------------------------------------------------------------------------


def test_a_known_job_is_its_verify_body(jobs: FaultyStore, verifier: Verifier) -> None:
    for job_class in (None, "jobs.a"):
        reads = jobs.reads
        response = verifier.verify("job-1", job_class)
        assert jobs.reads == reads + 1  # one store read per verify
        assert response.status == 200
        assert response.body == immortus.status("job-1", job_class).to_dict()
        assert json.loads(response.content()) == response.body
        assert response.body["status"] == "started"
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["Cache-Control"] == "no-store"


def test_content_is_compact_utf8_json() -> None:
    response = WebResponse(200, {"job_id": "é", "n": [1, 2], "odd": "\ud800"})
    assert response.content() == '{"job_id":"é","n":[1,2],"odd":"\\ud800"}'.encode()
    assert json.loads(response.content())["odd"] == "\ud800"


# -- verify: 400 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job_id", "job_class", "says"),
    [
        ("", None, "job id must not be empty"),
        (" padded", None, "must not contain spaces"),
        ("a\0b", None, "non-printable"),
        ("x" * 256, None, "the limit is 255"),
        (None, None, "job id must be a string"),
        (7, None, "job id must be a string"),
        ("job-1", "has space", "job class"),
        ("job-1", "x" * 10_000, "the limit is 255"),
        ("job-1", "jobs.a\0", "non-printable"),
        ("job-1", "", "job class must not be empty"),
    ],
)
def test_malformed_names_are_400_saying_what(
    jobs: FaultyStore, signed: Verifier, job_id: Any, job_class: Any, says: str
) -> None:
    response = signed.verify(job_id, job_class)
    assert response.status == 400
    error = error_of(response)
    assert error["type"] == "InvalidInput"
    assert says in error["message"]
    assert len(response.content()) < 500
    echoed = response.body["job_id"]
    assert echoed is None or (len(echoed) <= 100 and echoed.isprintable())
    assert jobs.reads == 0


# -- verify: 404, all alike --------------------------------------------------------------------


def test_every_404_is_the_same_unknown_body(
    jobs: FaultyStore, signed: Verifier, clock: Clock
) -> None:
    good = signed.token_for("job-1", "jobs.a")
    assert good is not None
    assert signed.verify("job-1", "jobs.a", good).status == 200
    other_job = signed.token_for("job-2", "jobs.a")
    other_class = signed.token_for("job-1", "jobs.fixed")
    no_class = signed.token_for("job-1")
    expected = unknown_body("job-1", "jobs.a")
    refusals = {
        "missing token": signed.verify("job-1", "jobs.a"),
        "forged token": signed.verify("job-1", "jobs.a", good[:-2] + "AA"),
        "garbage token": signed.verify("job-1", "jobs.a", "../../etc/passwd"),
        "huge token": signed.verify("job-1", "jobs.a", "v1." * 10_000),
        "token of another job": signed.verify("job-1", "jobs.a", other_job),
        "token of another class": signed.verify("job-1", "jobs.a", other_class),
        "token of no class": signed.verify("job-1", "jobs.a", no_class),
    }
    clock.now += 61
    refusals["expired token"] = signed.verify("job-1", "jobs.a", good)
    for reason, response in refusals.items():
        assert (response.status, response.content()) == (404, expected), reason
        assert response.body["status"] == "unknown"
    assert jobs.reads == 1  # refused before any I/O


def test_unknown_jobs_and_untracked_classes_look_like_bad_tokens(
    jobs: FaultyStore, signed: Verifier, verifier: Verifier
) -> None:
    token = signed.token_for("job-2", "jobs.a")
    unknown = signed.verify("job-2", "jobs.a", token)
    forged = signed.verify("job-2", "jobs.a", "forged")
    assert unknown.status == forged.status == 404
    assert unknown.content() == forged.content() == unknown_body("job-2", "jobs.a")
    untracked = signed.verify("job-1", "jobs.nope", signed.token_for("job-1", "jobs.nope"))
    assert untracked.content() == signed.verify("job-1", "jobs.nope").content()
    assert untracked.content() == unknown_body("job-1", "jobs.nope")
    assert verifier.verify("job-2").content() == unknown_body("job-2")
    assert verifier.verify("job-1", "jobs.nope").status == 404


def test_an_unknown_answer_with_meta_is_still_the_one_404_body(
    store: FaultyStore, verifier: Verifier
) -> None:
    class Chatty(TrackingStrategy):
        def status(self, job_id: str) -> JobStatus:
            return JobStatus(job_id=job_id, state=State.UNKNOWN, certain=False, meta={"x": 1})

        def meta(self, job_id: str) -> dict[str, int]:
            return {"hint": 1}

    @immortus.track(name="jobs.chatty", strategy=Chatty())
    def chatty() -> None: ...

    response = verifier.verify("job-9", "jobs.chatty")
    assert (response.status, response.content()) == (404, unknown_body("job-9", "jobs.chatty"))


class EveryJobDone:
    """A plain global strategy, as the Ruby gem immortus wrote them (no immortus base class)."""

    def completed(self, job_id: str) -> bool:
        return True


def test_a_global_strategy_answers_for_an_unregistered_class(
    jobs: FaultyStore, signed: Verifier
) -> None:
    """Every call gives the body immortus.status() gives, not the 404 of an untracked class."""
    immortus.register_strategy("every_job_done", EveryJobDone)
    immortus.configure(strategy="every_job_done")
    expected = immortus.status("job-7", "FailJob").to_dict()
    assert expected["status"] == "finished"
    token = signed.token_for("job-7", "FailJob")
    batch = json.dumps({"jobs": [{"job_id": "job-7", "job_class": "FailJob", "token": token}]})
    stream = signed.stream("job-7", "FailJob", token)
    assert signed.verify("job-7", "FailJob", token).body == expected
    assert asyncio.run(signed.averify("job-7", "FailJob", token)).body == expected
    assert signed.verify_batch(batch, content_type=JSON_MEDIA_TYPE).body == {"jobs": [expected]}
    assert (
        b"".join(stream)
        == b"data: " + json.dumps(expected, separators=(",", ":")).encode() + b"\n\n"
    )


def test_an_untracked_class_is_the_404_of_an_unknown_job_not_a_500(
    jobs: FaultyStore, verifier: Verifier
) -> None:
    with pytest.raises(UntrackedJobClass):
        immortus.status("job-1", "jobs.nope")
    batch = json.dumps({"jobs": [{"job_id": "job-1", "job_class": "jobs.nope"}]})
    answers = [
        verifier.verify("job-1", "jobs.nope"),
        asyncio.run(verifier.averify("job-1", "jobs.nope")),
        WebResponse(
            404, verifier.verify_batch(batch, content_type=JSON_MEDIA_TYPE).body["jobs"][0]
        ),
    ]
    for answer in answers:
        assert (answer.status, answer.content()) == (404, unknown_body("job-1", "jobs.nope"))


def test_an_untracked_class_costs_the_hmac_a_forged_token_costs(
    jobs: FaultyStore, signed: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry was once asked before the token: an untracked class answered sooner."""
    computed: list[tuple[object, ...]] = []
    mac = JobTokens._mac

    def counted(self: JobTokens, *args: Any) -> str:
        computed.append(args)
        return mac(self, *args)

    monkeypatch.setattr(JobTokens, "_mac", counted)
    for job_class in ("jobs.nope", "jobs.a"):
        forged = str(signed.token_for("job-1", "jobs.a"))[:-1] + "A"
        for token in (None, "garbage", forged):
            computed.clear()
            assert signed.verify("job-1", job_class, token).status == 404
            assert len(computed) == 1, (job_class, token)
    assert jobs.reads == 0


def test_web_records_have_defaults_every_python_accepts() -> None:
    """Python 3.11 refuses an unhashable field default (``import immortus.web`` once failed)."""
    for field in dataclasses.fields(WebResponse):
        if field.default is not dataclasses.MISSING:
            hash(field.default)
    assert WebResponse(200, {}).headers is WebResponse(404, {}).headers


HOSTILE_CLASSES = [
    "os.system",
    "os:system",
    "../../etc/passwd",
    "__import__('os')",
    "antigravity",
    "this",
    "xml.dom.minidom:parseString",
    "immortus.store_strategy:StoreStrategy",
    "x" * 10_000,
    "a\0b",
    "\ud800",
]


@pytest.mark.parametrize("job_class", HOSTILE_CLASSES)
def test_hostile_job_classes_import_nothing(
    jobs: FaultyStore, verifier: Verifier, job_class: str
) -> None:
    before = set(sys.modules)
    response = verifier.verify("job-1", job_class)
    batch = verifier.verify_batch(
        content_type=JSON_MEDIA_TYPE,
        body=json.dumps({"jobs": [{"job_id": "j", "job_class": job_class}]}),
    )
    assert response.status in {400, 404}
    assert batch.status in {200, 400}
    assert set(sys.modules) == before
    assert jobs.reads == 0
    for module in ("antigravity", "this"):  # no library imports these (xml.dom.minidom: some do)
        assert module not in sys.modules


# -- verify: 503 and 500 -----------------------------------------------------------------------


def test_an_unreachable_store_is_503_without_detail(
    jobs: FaultyStore, verifier: Verifier, caplog: pytest.LogCaptureFixture
) -> None:
    jobs.down = True
    response = verifier.verify("job-1", "jobs.a")
    assert response.status == 503
    assert error_of(response)["type"] == "StoreUnavailable"
    assert b"db-7" not in response.content()
    assert response.body["job_id"] == "job-1"
    assert any("db-7" in record.getMessage() for record in caplog.records)


def test_a_failing_strategy_is_500_without_detail_and_logged(
    jobs: FaultyStore, verifier: Verifier, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="immortus.web"):
        response = verifier.verify("job-1", "jobs.broken")
    assert response.status == 500
    assert error_of(response)["type"] == "StrategyError"
    for secret in (b"hunter2", b"db-7", b"Traceback", b"RuntimeError"):
        assert secret not in response.content()
    [record] = [r for r in caplog.records if r.name == "immortus.web"]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], immortus.StrategyError)
    assert isinstance(record.exc_info[1].__cause__, RuntimeError)


def test_no_strategy_and_unencodable_meta_are_500(
    store: FaultyStore, verifier: Verifier, caplog: pytest.LogCaptureFixture
) -> None:
    class Weird(TrackingStrategy):
        def status(self, job_id: str) -> JobStatus:
            return JobStatus(job_id=job_id, state=State.STARTED, meta={"when": object()})

    @immortus.track(name="jobs.weird", strategy=Weird())
    def weird() -> None: ...

    assert verifier.verify("j", "jobs.weird").status == 500
    immortus.configure(store=None)
    response = verifier.verify("j")
    assert response.status == 500
    assert error_of(response)["type"] == "ServerError"
    assert b"tried" not in response.content()
    assert sum(record.levelno == logging.ERROR for record in caplog.records) == 2


# -- batch -------------------------------------------------------------------------------------


def batch(*jobs: dict[str, Any]) -> bytes:
    return json.dumps({"jobs": list(jobs)}).encode()


def test_a_batch_answers_each_job_as_verify_would(
    jobs: FaultyStore, signed: Verifier, caplog: pytest.LogCaptureFixture
) -> None:
    token = signed.token_for("job-1", "jobs.a")
    items: list[dict[str, Any]] = [
        {"job_id": "job-1", "job_class": "jobs.a", "token": token},
        {"job_id": "job-1", "job_class": "jobs.a"},
        {"job_id": "job-2", "job_class": "jobs.a", "token": signed.token_for("job-2", "jobs.a")},
        {"job_id": "job-1", "job_class": "jobs.nope", "token": "x"},
        {"job_id": "f", "job_class": "jobs.fixed", "token": signed.token_for("f", "jobs.fixed")},
        {"job_id": "b", "job_class": "jobs.broken", "token": signed.token_for("b", "jobs.broken")},
        {"job_id": "job-1", "job_class": None, "token": signed.token_for("job-1"), "extra": 1},
    ]
    response = signed.verify_batch(content_type=JSON_MEDIA_TYPE, body=batch(*items))
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    decoded = json.loads(response.content())
    assert decoded == response.body
    singles = [
        signed.verify(item["job_id"], item.get("job_class"), item.get("token")) for item in items
    ]
    assert decoded["jobs"] == [json.loads(single.content()) for single in singles]
    assert [single.status for single in singles] == [200, 404, 404, 404, 200, 500, 200]
    assert response.content() == b'{"jobs":[' + b",".join(s.content() for s in singles) + b"]}"


def test_a_batch_reads_the_store_once(jobs: FaultyStore, verifier: Verifier) -> None:
    for number in range(30):
        lifecycle.job_enqueued(f"n{number}")
    body = batch(*({"job_id": f"n{number}"} for number in range(40)))
    response = verifier.verify_batch(content_type=JSON_MEDIA_TYPE, body=body)
    assert [item["status"] for item in response.body["jobs"]] == ["created"] * 30 + ["unknown"] * 10
    assert jobs.reads == 1
    assert verifier.verify_batch(content_type=JSON_MEDIA_TYPE, body=batch()).body == {"jobs": []}


def test_a_batch_is_one_query_on_sqlite(tmp_path: Path, verifier: Verifier) -> None:
    store = SQLiteStore(tmp_path / "jobs.sqlite3")
    try:
        immortus.configure(store=store)
        for number in range(50):
            lifecycle.job_enqueued(f"n{number}")
        statements: list[str] = []
        connection = store._connection()
        assert isinstance(connection, sqlite3.Connection)
        connection.set_trace_callback(statements.append)
        response = verifier.verify_batch(
            content_type=JSON_MEDIA_TYPE, body=batch(*({"job_id": f"n{n}"} for n in range(60)))
        )
        connection.set_trace_callback(None)
        assert [item["status"] for item in response.body["jobs"]].count("created") == 50
        assert sum(sql.lstrip().upper().startswith("SELECT") for sql in statements) == 1
    finally:
        store.close()


def test_an_outage_fails_only_the_items_it_concerns(jobs: FaultyStore, verifier: Verifier) -> None:
    jobs.down = True
    response = verifier.verify_batch(
        content_type=JSON_MEDIA_TYPE,
        body=batch({"job_id": "job-1"}, {"job_id": "f", "job_class": "jobs.fixed"}),
    )
    assert response.status == 200
    down, fine = response.body["jobs"]
    assert down == {
        "job_id": "job-1",
        "error": {"type": "StoreUnavailable", "message": down["error"]["message"]},
    }
    assert b"db-7" not in response.content()
    assert fine["status"] == "started"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe\xfa", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[" * 30_000 + b"]" * 30_000, "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'"jobs"', "must be a JSON object"),
        (b"{}", '"jobs" must be a list'),
        (b'{"jobs": {"job_id": "a"}}', '"jobs" must be a list'),
        (b'{"jobs": ["a"]}', "jobs[0] must be an object"),
        (b'{"jobs": [{"job_id": "a"}, {}]}', "jobs[1].job_id is missing"),
        (b'{"jobs": [{"job_id": "a"}, {"job_id": 5}]}', "jobs[1].job_id: job id must be a str"),
        (b'{"jobs": [{"job_id": {"$ne": 1}}]}', "jobs[0].job_id: job id must be a string"),
        (batch(*([{"job_id": "a"}] * 3), {"job_id": " a"}), "jobs[3].job_id: job id"),
        (batch({"job_id": "a", "job_class": ["x"]}), "jobs[0].job_class: job class must be"),
        (batch({"job_id": "a", "job_class": "x y"}), "jobs[0].job_class"),
        (batch({"job_id": "a", "token": 12}), "jobs[0].token must be a string"),
        (batch(*([{"job_id": "a"}] * 101)), '"jobs" holds 101 items; the limit is 100'),
        (b" " * (1024 * 1024), "the body is over 65536 bytes"),
        (batch(*([{"job_id": "a" * 700}] * 100)), "the body is over 65536 bytes"),
        (b'{"jobs": [{"job_id": "a", "x": 1e999999, "y": ' + b"9" * 5000 + b"}]}", "not valid"),
    ],
)
def test_malformed_batches_are_400_naming_the_problem(
    jobs: FaultyStore, verifier: Verifier, body: bytes, says: str
) -> None:
    response = verifier.verify_batch(content_type=JSON_MEDIA_TYPE, body=body)
    assert response.status == 400
    error = error_of(response)
    assert error["type"] == "InvalidInput"
    assert says in error["message"]
    assert response.body["job_id"] is None
    assert jobs.reads == 0


def test_batch_limits_are_settings(jobs: FaultyStore) -> None:
    small = Verifier(max_batch=2, open_endpoints=True)
    assert (
        small.verify_batch(
            content_type=JSON_MEDIA_TYPE, body=batch(*([{"job_id": "a"}] * 2))
        ).status
        == 200
    )
    assert (
        small.verify_batch(
            content_type=JSON_MEDIA_TYPE, body=batch(*([{"job_id": "a"}] * 3))
        ).status
        == 400
    )
    assert len(batch(*([{"job_id": "x" * 255}] * 100))) < MAX_BATCH_BYTES
    with pytest.raises(ValueError, match="max_batch"):
        Verifier(max_batch=0)
    assert (
        Verifier(open_endpoints=True)
        .verify_batch(content_type=JSON_MEDIA_TYPE, body='{"jobs": []}')
        .status
        == 200
    )


# -- async twins -------------------------------------------------------------------------------


def test_async_twins_answer_the_same(jobs: FaultyStore, signed: Verifier) -> None:
    token = signed.token_for("job-1", "jobs.a")
    body = batch({"job_id": "job-1", "job_class": "jobs.a", "token": token}, {"job_id": "x"})

    async def main() -> list[WebResponse]:
        return [
            await signed.averify("job-1", "jobs.a", token),
            await signed.averify("job-1", "jobs.a"),
            await signed.averify(""),
            await signed.averify("b", "jobs.broken", signed.token_for("b", "jobs.broken")),
            await signed.averify_batch(content_type=JSON_MEDIA_TYPE, body=body),
        ]

    answers = asyncio.run(main())
    expected = [
        signed.verify("job-1", "jobs.a", token),
        signed.verify("job-1", "jobs.a"),
        signed.verify(""),
        signed.verify("b", "jobs.broken", signed.token_for("b", "jobs.broken")),
        signed.verify_batch(content_type=JSON_MEDIA_TYPE, body=body),
    ]
    assert [(a.status, a.content()) for a in answers] == [(e.status, e.content()) for e in expected]


# -- render_job --------------------------------------------------------------------------------


class QueueJob:
    def __init__(self, **attributes: object) -> None:
        vars(self).update(attributes)


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ("abc", {"job_id": "abc", "job_class": None}),
        ({"job_id": "abc", "job_class": "jobs.a"}, {"job_id": "abc", "job_class": "jobs.a"}),
        ({"id": "abc"}, {"job_id": "abc", "job_class": None}),
        (QueueJob(job_id="abc", job_class="jobs.a"), {"job_id": "abc", "job_class": "jobs.a"}),
        (QueueJob(id="abc"), {"job_id": "abc", "job_class": None}),
        (QueueJob(task_id="abc"), {"job_id": "abc", "job_class": None}),
        (QueueJob(message_id="abc", id=None), {"job_id": "abc", "job_class": None}),
        (QueueJob(id=42), {"job_id": "42", "job_class": None}),
        (
            QueueJob(id=uuid.UUID(int=1)),
            {"job_id": "00000000-0000-0000-0000-000000000001", "job_class": None},
        ),
    ],
)
def test_render_job_takes_every_shape(
    jobs: FaultyStore, verifier: Verifier, job: object, expected: dict[str, Any]
) -> None:
    response = verifier.render_job(job)
    assert (response.status, response.body) == (200, expected)
    assert response.headers["Cache-Control"] == "no-store"


def test_render_job_reads_the_id_and_class_of_a_queues_job_object(
    jobs: FaultyStore, verifier: Verifier
) -> None:
    """What enqueuing returns is enough: the class once came back null for these."""
    from celery import Celery  # type: ignore[import-untyped]
    from celery.result import AsyncResult  # type: ignore[import-untyped]
    from redis import Redis
    from rq.job import Job

    @immortus.track(name="reports.build")
    def build() -> None: ...

    lifecycle.job_enqueued("celery-1", "reports.build")
    celery_result = AsyncResult("celery-1", app=Celery(set_as_current=False))
    rq_job = Job.create(build, connection=Redis(port=1))  # never sent: nothing is connected
    assert verifier.render_job(celery_result).body == {
        "job_id": "celery-1",
        "job_class": "reports.build",
    }
    assert verifier.render_job(rq_job).body == {"job_id": rq_job.id, "job_class": "reports.build"}
    assert verifier.render_job(rq_job, "jobs.a").body["job_class"] == "jobs.a"  # the caller's wins


def test_render_job_signs_a_token_that_verify_accepts(jobs: FaultyStore, signed: Verifier) -> None:
    response = signed.render_job(QueueJob(id="job-1", job_class="jobs.fixed"), "jobs.a")
    assert response.body["job_class"] == "jobs.a"
    assert set(response.body) == {"job_id", "job_class", "token"}
    assert signed.verify("job-1", "jobs.a", response.body["token"]).status == 200
    assert signed.verify("job-1", None, response.body["token"]).status == 404


@pytest.mark.parametrize(
    "job", [None, object(), {}, {"id": ""}, {"job_id": 1.5}, QueueJob(id=True), "a b "]
)
def test_render_job_without_a_job_id_is_500_empty(
    verifier: Verifier, job: object, caplog: pytest.LogCaptureFixture
) -> None:
    response = verifier.render_job(job)
    assert (response.status, response.content()) == (500, b"{}")
    assert any(record.levelno == logging.ERROR for record in caplog.records)


def test_render_job_warns_of_an_untracked_class(
    verifier: Verifier, caplog: pytest.LogCaptureFixture
) -> None:
    assert verifier.render_job("abc", "jobs.untracked").status == 200
    assert "not tracked" in caplog.text
    assert verifier.render_job("abc", "bad class").status == 500


def test_token_for(signed: Verifier, verifier: Verifier) -> None:
    assert verifier.token_for("job-1") is None
    token = signed.token_for("job-1", "jobs.a")
    assert token is not None
    assert signed.tokens is not None
    assert signed.tokens.check(token, "job-1", "jobs.a")


# -- settings ----------------------------------------------------------------------------------


# -- tokens bound to a subject -----------------------------------------------------------------


def test_a_bound_token_opens_its_job_for_its_subject_only(
    jobs: FaultyStore, signed: Verifier
) -> None:
    alice = signed.render_job("job-1", "jobs.a", subject="alice").body["token"]
    anyone = signed.token_for("job-1", "jobs.a")
    assert signed.verify("job-1", "jobs.a", alice, subject="alice").status == 200
    assert signed.verify("job-1", "jobs.a", anyone).status == 200
    reads = jobs.reads
    expected = unknown_body("job-1", "jobs.a")
    refusals = {
        "another subject": signed.verify("job-1", "jobs.a", alice, subject="bob"),
        "no subject": signed.verify("job-1", "jobs.a", alice),
        "an empty subject": signed.verify("job-1", "jobs.a", alice, subject=""),
        "a subject for an unbound token": signed.verify("job-1", "jobs.a", anyone, subject="a"),
        "a forged token": signed.verify("job-1", "jobs.a", alice[:-2] + "AA", subject="alice"),
        "an unknown job": signed.verify(
            "job-2", "jobs.a", signed.token_for("job-2", "jobs.a", subject="bob"), subject="bob"
        ),
    }
    for reason, response in refusals.items():
        job_id = "job-2" if reason == "an unknown job" else "job-1"
        assert (response.status, response.content()) == (404, unknown_body(job_id, "jobs.a"))
        assert response.headers == refusals["another subject"].headers, reason
    assert refusals["another subject"].content() == expected
    assert jobs.reads == reads + 1  # the bad subjects are refused before any I/O


def test_every_call_checks_the_subject(jobs: FaultyStore, signed: Verifier) -> None:
    token = signed.token_for("job-1", "jobs.a", subject="alice")
    body = batch({"job_id": "job-1", "job_class": "jobs.a", "token": token})

    async def main(subject: str | None) -> list[WebResponse]:
        stream = await signed.astream("job-1", "jobs.a", token, subject=subject)
        return [
            await signed.averify("job-1", "jobs.a", token, subject=subject),
            await signed.averify_batch(content_type=JSON_MEDIA_TYPE, body=body, subject=subject),
            WebResponse(stream.status, {}),
        ]

    def sync(subject: str | None) -> list[WebResponse]:
        stream = signed.stream("job-1", "jobs.a", token, subject=subject)
        return [
            signed.verify("job-1", "jobs.a", token, subject=subject),
            signed.verify_batch(content_type=JSON_MEDIA_TYPE, body=body, subject=subject),
            WebResponse(stream.status, {}),
        ]

    for subject, status in (("alice", 200), ("bob", 404), (None, 404)):
        for one, batched, streamed in (sync(subject), asyncio.run(main(subject))):
            assert one.status == streamed.status == status, subject
            [item] = json.loads(batched.content())["jobs"]
            assert item == one.body
    refused = signed.stream("job-1", "jobs.a", token, subject="bob")
    assert list(refused) == [b"event: error\ndata: " + unknown_body("job-1", "jobs.a") + b"\n\n"]


def test_a_subject_that_is_not_text_is_the_apps_mistake(
    jobs: FaultyStore, signed: Verifier, caplog: pytest.LogCaptureFixture
) -> None:
    failed = signed.render_job("job-1", "jobs.a", subject=42)  # type: ignore[arg-type]
    assert (failed.status, failed.content()) == (500, b"{}")
    assert "subject must be a string" in caplog.text
    with pytest.raises(InvalidInput):
        signed.token_for("job-1", subject=42)  # type: ignore[arg-type]
    token = signed.token_for("job-1", "jobs.a", subject="42")
    refused = signed.verify("job-1", "jobs.a", token, subject=42)  # type: ignore[arg-type]
    assert (refused.status, refused.content()) == (404, unknown_body("job-1", "jobs.a"))


def test_without_a_secret_key_the_subject_binds_nothing(
    jobs: FaultyStore, verifier: Verifier
) -> None:
    assert verifier.render_job("job-1", subject="alice").body == {
        "job_id": "job-1",
        "job_class": None,
    }
    assert verifier.token_for("job-1", subject="alice") is None
    assert verifier.verify("job-1", "jobs.a", subject="bob").status == 200


def test_render_job_of_the_settings_binds_the_subject(jobs: FaultyStore) -> None:
    immortus.configure(secret_key=SECRET)
    token = render_job("job-1", "jobs.a", subject="alice").body["token"]
    assert get_verifier().verify("job-1", "jobs.a", token, subject="alice").status == 200
    assert get_verifier().verify("job-1", "jobs.a", token, subject="bob").status == 404


def test_an_open_endpoint_is_announced_once(caplog: pytest.LogCaptureFixture) -> None:
    Verifier(secret_key=SECRET)
    Verifier()  # not open: it refuses, and says so when asked
    assert not caplog.records
    Verifier(open_endpoints=True)
    Verifier(open_endpoints=True)
    Verifier.from_config()  # the tests' settings declare the routes open
    render_job("abc")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "open on purpose" in warnings[0].getMessage()


NOT_SECURED_CALLS: dict[str, Callable[[Verifier], WebResponse | StreamResponse]] = {
    "verify": lambda v: v.verify("job-1"),
    "verify with class": lambda v: v.verify("job-1", "jobs.a"),
    "malformed id": lambda v: v.verify("x" * 300),
    "batch": lambda v: v.verify_batch(
        b'{"jobs": [{"job_id": "job-1"}]}', content_type=JSON_MEDIA_TYPE
    ),
    "batch, wrong type": lambda v: v.verify_batch(b"", content_type="text/plain"),
    "async verify": lambda v: asyncio.run(v.averify("job-1")),
    "stream": lambda v: v.stream("job-1"),
}


@pytest.mark.parametrize("call", NOT_SECURED_CALLS)
def test_without_a_key_the_routes_refuse_unless_declared_open(
    jobs: FaultyStore, caplog: pytest.LogCaptureFixture, call: str
) -> None:
    immortus.configure(open_endpoints=False)
    answer = NOT_SECURED_CALLS[call](get_verifier())
    assert answer.status == 500
    content = answer.content() if isinstance(answer, WebResponse) else b"".join(answer)
    if isinstance(answer, StreamResponse):
        assert content.startswith(b"event: error\ndata: ")
        content = content.removeprefix(b"event: error\ndata: ").strip()
    error = json.loads(content)["error"]
    assert error["type"] == "EndpointsNotSecured"
    assert "immortus.configure(secret_key=...)" in error["message"]
    assert "open_endpoints=True" in error["message"]
    assert jobs.reads == 0
    NOT_SECURED_CALLS[call](get_verifier())
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # once per process, however many requests
    immortus.configure(open_endpoints=True)
    assert NOT_SECURED_CALLS[call](get_verifier()).status != 500


def test_without_a_key_render_job_refuses(caplog: pytest.LogCaptureFixture) -> None:
    immortus.configure(open_endpoints=False)
    assert render_job("job-1").status == 500
    assert render_job("job-1").body == {}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "secret_key" in errors[0]
    immortus.configure(secret_key=SECRET)
    assert render_job("job-1").status == 200


def test_require_secured() -> None:
    with pytest.raises(EndpointsNotSecured, match=r"configure\(secret_key=\.\.\.\)"):
        Verifier().require_secured()
    Verifier(open_endpoints=True).require_secured()
    Verifier(secret_key=SECRET).require_secured()


def test_the_default_verifier_follows_the_settings(store: FaultyStore) -> None:
    open_verifier = get_verifier()
    assert open_verifier is get_verifier()
    assert open_verifier.tokens is None
    assert "token" not in render_job("abc").body
    immortus.configure(secret_key=SECRET, token_max_age=30)
    signed = get_verifier()
    assert signed is not open_verifier
    assert signed.tokens is not None
    assert signed.tokens.max_age == 30
    token = render_job("abc").body["token"]
    assert Verifier(secret_key=SECRET).verify("abc", None, token).status == 404  # unknown job
    other = Verifier(secret_key="other")  # noqa: S106
    assert other.verify("abc", None, token).status == 404


def test_importing_immortus_web_imports_no_framework() -> None:
    heavy = {"sqlite3", "redis", "sqlalchemy", "starlette", "fastapi", "flask", "django",
             "werkzeug", "celery", "rq"}  # fmt: skip
    assert modules_loaded_by("import immortus.web", heavy) == []


# -- never a traceback -------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
batch_items = st.fixed_dictionaries(
    {"job_id": st.text(max_size=300) | json_values},
    optional={
        "job_class": st.none() | st.sampled_from(["jobs.a", "jobs.fixed", *HOSTILE_CLASSES]),
        "token": st.none() | st.text(max_size=250) | json_values,
    },
)
batch_bodies = (
    st.binary(max_size=200)
    | st.text(max_size=200)
    | json_values.map(json.dumps)
    | st.lists(batch_items | json_values, max_size=120).map(lambda jobs: json.dumps({"jobs": jobs}))
)
names = st.text(max_size=300) | st.sampled_from(["job-1", "jobs.a", *HOSTILE_CLASSES])


def assert_clean(response: WebResponse, codes: set[int]) -> None:
    assert response.status in codes
    content = response.content()
    assert json.loads(content) == json.loads(json.dumps(response.body))
    assert b"Traceback" not in content


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150)
@given(job_id=names, job_class=st.none() | names, token=st.none() | st.text(max_size=250))
def test_verify_never_raises(
    jobs: FaultyStore, signed: Verifier, job_id: str, job_class: str | None, token: str | None
) -> None:
    assert_clean(signed.verify(job_id, job_class, token), {400, 404})
    assert_clean(Verifier(open_endpoints=True).verify(job_id, job_class, token), {200, 400, 404})


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150)
@given(body=batch_bodies)
def test_verify_batch_never_raises(jobs: FaultyStore, signed: Verifier, body: str | bytes) -> None:
    response = signed.verify_batch(content_type=JSON_MEDIA_TYPE, body=body)
    assert_clean(response, {200, 400})
    if response.status == 200:
        for item in response.body["jobs"]:
            assert item["status"] == "unknown"


def test_a_cancel_answer_json_cannot_carry_is_500_as_verify_is(
    store: FaultyStore, verifier: Verifier, caplog: pytest.LogCaptureFixture
) -> None:
    class Odd(TrackingStrategy):
        supports_cancel = True

        def status(self, job_id: str) -> JobStatus:
            return JobStatus(job_id=job_id, state=State.STARTED, meta={"when": object()})

        def cancel(self, job_id: str) -> None:
            """Ask nothing: the job keeps running."""

    @immortus.track(name="jobs.odd", strategy=Odd(), cancellable=True)
    def odd() -> None: ...

    response = verifier.cancel("j", "jobs.odd", body=b"{}", content_type=JSON_MEDIA_TYPE)
    assert response.status == 500
    assert error_of(response)["type"] == "ServerError"
    assert response.content() == verifier.verify("j", "jobs.odd").content()
    assert sum(record.levelno == logging.ERROR for record in caplog.records) == 2
