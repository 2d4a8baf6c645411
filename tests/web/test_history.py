"""The ``history`` option of verify: the job's attempt history in the body, on request only."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import immortus
from immortus import lifecycle
from immortus.exceptions import InvalidInput
from immortus.web import Verifier, WebResponse
from immortus.web.options import read_query, wants_history
from tests.web.conftest import FaultyStore

SECRET = "history-secret"  # noqa: S105


@pytest.fixture
def retried(store: FaultyStore) -> FaultyStore:
    """Job ``job-1`` of ``jobs.a``: its first attempt failed, its second runs."""

    @immortus.track(name="jobs.a")
    def a() -> None: ...

    lifecycle.job_enqueued("job-1", "jobs.a")
    lifecycle.job_started("job-1", "jobs.a")
    lifecycle.job_retrying("job-1", ValueError("row 38"), "jobs.a")
    lifecycle.job_started("job-1", "jobs.a")
    return store


def body(answer: WebResponse) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(answer.content())
    return decoded


@pytest.mark.parametrize("staleness", [None, 60.0])
def test_the_history_and_the_plain_body_never_mix(
    retried: FaultyStore, staleness: float | None
) -> None:
    verifier = Verifier(open_endpoints=True, answer_staleness=staleness)
    plain = verifier.verify("job-1", "jobs.a")
    asked = verifier.verify("job-1", "jobs.a", history="1")
    again = verifier.verify("job-1", "jobs.a")
    assert "history" not in body(plain)
    assert again.content() == plain.content()
    entries = body(asked)["history"]
    assert [entry["event"] for entry in entries] == ["enqueued", "started", "retrying", "started"]
    assert entries[2]["error"] == {"type": "ValueError", "message": "row 38"}
    assert {key: value for key, value in body(asked).items() if key != "history"} == body(plain)


def test_the_async_twin_answers_the_same(retried: FaultyStore) -> None:
    verifier = Verifier(open_endpoints=True, answer_staleness=60.0)
    sync = verifier.verify("job-1", "jobs.a", history=True)
    asked = asyncio.run(verifier.averify("job-1", "jobs.a", history=True))
    assert (asked.status, asked.content()) == (sync.status, sync.content())
    bad = asyncio.run(verifier.averify("job-1", "jobs.a", history="yes"))
    assert bad.status == 400


def test_history_false_and_zero_are_the_plain_body(retried: FaultyStore) -> None:
    verifier = Verifier(open_endpoints=True)
    plain = verifier.verify("job-1", "jobs.a").content()
    for value in (False, None, "0", "false"):
        assert verifier.verify("job-1", "jobs.a", history=value).content() == plain


def test_a_bad_value_is_a_400_before_the_token_is_read(retried: FaultyStore) -> None:
    verifier = Verifier(secret_key=SECRET)
    answer = verifier.verify("job-1", "jobs.a", "forged", history="yes")
    assert answer.status == 400
    assert "history" in body(answer)["error"]["message"]


def test_an_unsecured_verifier_refuses_before_reading_the_option(retried: FaultyStore) -> None:
    assert Verifier().verify("job-1", "jobs.a", history="yes").status == 500


def test_a_store_outage_with_history_is_the_503(retried: FaultyStore) -> None:
    retried.down = True
    answer = Verifier(open_endpoints=True).verify("job-1", "jobs.a", history=True)
    assert (answer.status, body(answer)["error"]["type"]) == (503, "StoreUnavailable")


def test_the_client_s_query_is_read_without_parsing() -> None:
    def never() -> dict[str, str]:
        raise AssertionError("the query was parsed")

    assert read_query("token=v1.1.abc", never) == ("v1.1.abc", None)
    assert read_query("", never) == (None, None)
    parsed = {"token": "v1.1.abc", "history": "1"}
    assert read_query("token=v1.1.abc&history=1", lambda: parsed) == ("v1.1.abc", "1")


@pytest.mark.parametrize(
    ("value", "wanted"),
    [("1", True), ("true", True), ("0", False), ("false", False), (None, False), (True, True)],
)
def test_accepted_values(value: bool | str | None, wanted: bool) -> None:
    assert wants_history(value) is wanted


@pytest.mark.parametrize("value", ["yes", "", "True", "2", " 1"])
def test_other_values_are_malformed(value: str) -> None:
    with pytest.raises(InvalidInput, match="history"):
        wants_history(value)
