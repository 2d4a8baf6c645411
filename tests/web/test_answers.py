"""The verify answer of a known job is made once per status object, and never served stale."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.responses import JSONResponse, Response

import immortus
from immortus import JobStatus, Progress, State, lifecycle, runtime
from immortus.status import RESERVED_KEYS, JobError
from immortus.stores.base import Store
from immortus.stores.memory import MemoryStore
from immortus.stores.sqlite import SQLiteStore
from immortus.web import Verifier, WebResponse, responses
from immortus.web.batch import JSON_MEDIA_TYPE
from immortus.web.responses import (
    MAX_KEPT_ANSWERS,
    dump_json,
    job_answer,
    method_not_allowed,
    not_found,
)
from immortus.web.starlette import _Encoded

JOB_CLASS = "jobs.answered"


@pytest.fixture(params=["memory", "sqlite"])
def tracked_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A memory or SQLite store, configured, with the tracked class ``jobs.answered``."""
    store: Store = (
        MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "jobs.sqlite3")
    )
    immortus.configure(store=store, progress_interval=0)

    @immortus.track(name=JOB_CLASS)
    def answered() -> None: ...

    try:
        yield store
    finally:
        store.close()


def _isoformat_before(moment: datetime | None) -> str | None:
    """How ``status.isoformat`` formatted a moment before it skipped the UTC conversion."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _body_before(status: JobStatus) -> dict[str, Any]:
    """``JobStatus.to_dict`` as it was written before it was made faster: the reference."""
    body = {key: value for key, value in status.meta.items() if key not in RESERVED_KEYS}
    body.update(
        job_id=status.job_id,
        job_class=status.job_class,
        status=status.state.value,
        completed=status.completed,
        success=status.success,
        progress=None if status.progress is None else status.progress.to_dict(),
        error=None if status.error is None else status.error.to_dict(),
        attempts=status.attempts,
        enqueued_at=_isoformat_before(status.enqueued_at),
        started_at=_isoformat_before(status.started_at),
        finished_at=_isoformat_before(status.finished_at),
        certain=status.certain,
        retry_at=_isoformat_before(status.retry_at),
    )
    return body


def test_an_unchanged_job_is_encoded_once(tracked_store: Store) -> None:
    lifecycle.job_enqueued("job-1", JOB_CLASS)
    lifecycle.job_started("job-1", JOB_CLASS)
    verifier = Verifier(open_endpoints=True)
    first = verifier.verify("job-1", JOB_CLASS)
    again = verifier.verify("job-1", JOB_CLASS)
    assert first.status == 200
    assert again is first  # the same answer object: nothing was decoded or encoded again
    assert json.loads(again.content())["status"] == "started"


def test_a_changed_job_is_never_served_a_stale_body(tracked_store: Store) -> None:
    verifier = Verifier(open_endpoints=True)
    lifecycle.job_enqueued("job-1", JOB_CLASS)
    lifecycle.job_started("job-1", JOB_CLASS)
    verifier.verify("job-1", JOB_CLASS)  # its answer is kept now
    for step in range(1, 31):
        lifecycle.job_progress("job-1", Progress(current=step, total=30), JOB_CLASS)
        for answer in (
            verifier.verify("job-1", JOB_CLASS),
            verifier.verify_batch(
                content_type=JSON_MEDIA_TYPE, body=json.dumps({"jobs": [{"job_id": "job-1"}]})
            ),
        ):
            body = json.loads(answer.content())
            body = body["jobs"][0] if "jobs" in body else body
            assert body["progress"]["current"] == step
    lifecycle.job_finished("job-1", JOB_CLASS)
    final = verifier.verify("job-1", JOB_CLASS)
    status = immortus.status("job-1", JOB_CLASS)
    assert json.loads(final.content())["status"] == "finished"
    assert final.content() == dump_json(_body_before(status))


def test_a_status_with_the_same_values_is_a_new_answer() -> None:
    status = JobStatus(job_id="job-1", state=State.STARTED)
    twin = JobStatus(job_id="job-1", state=State.STARTED)
    assert job_answer(status) is job_answer(status)
    assert job_answer(twin) is not job_answer(status)  # kept per object, not per value
    assert job_answer(twin).content() == job_answer(status).content()


def test_the_kept_answers_are_bounded() -> None:
    statuses = [
        JobStatus(job_id=f"job-{number}", state=State.CREATED)
        for number in range(MAX_KEPT_ANSWERS + 50)
    ]
    for status in statuses:
        assert json.loads(job_answer(status).content())["job_id"] == status.job_id
        assert len(runtime.part(responses.KeptAnswers).by_id) <= MAX_KEPT_ANSWERS
    last = statuses[-1]
    assert job_answer(last) is job_answer(last)


def test_an_unencodable_status_is_refused_and_not_kept() -> None:
    status = JobStatus(job_id="job-1", state=State.STARTED, meta={"when": datetime.now(UTC)})
    with pytest.raises(TypeError):
        job_answer(status)
    assert id(status) not in runtime.part(responses.KeptAnswers).by_id


_MOMENTS = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(1990, 1, 1),  # naive bounds: the strategy adds the zone
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
        ),
    ),
)
_TEXT = st.text(max_size=12)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


@given(
    state=st.sampled_from(list(State)),
    progress=st.none()
    | st.builds(
        Progress,
        current=st.integers(0, 10**6),
        total=st.none() | st.integers(0, 10**6),
        message=st.none() | _TEXT,
        allow_overshoot=st.just(True),
    ),
    error=st.none() | st.builds(JobError, type=_TEXT, message=_TEXT),
    moments=st.tuples(_MOMENTS, _MOMENTS, _MOMENTS),
    meta=st.dictionaries(
        st.sampled_from(["job_id", "status", "progress", "certain"]) | _TEXT, _JSON, max_size=4
    ),
    certain=st.booleans(),
)
def test_an_answer_is_byte_identical_to_the_body_before(
    *,
    state: State,
    progress: Progress | None,
    error: JobError | None,
    moments: tuple[datetime | None, datetime | None, datetime | None],
    meta: dict[str, Any],
    certain: bool,
) -> None:
    status = JobStatus(
        job_id="job-1",
        job_class=JOB_CLASS,
        state=state,
        progress=progress,
        error=error,
        attempts=2,
        enqueued_at=moments[0],
        started_at=moments[1],
        finished_at=moments[2],
        meta=meta,
        certain=certain,
    )
    assert status.to_dict() == _body_before(status)
    assert list(status.to_dict()) == list(_body_before(status))  # the same key order
    assert job_answer(status).content() == dump_json(_body_before(status))


@pytest.mark.parametrize(
    "answer",
    [
        WebResponse(200, {"job_id": "job-1", "status": "started"}),
        WebResponse(404, JobStatus.unknown("job-1").to_dict()),
        not_found(),
        method_not_allowed("GET"),
    ],
)
def test_starlette_gets_the_headers_it_would_have_built(answer: WebResponse) -> None:
    media = JSONResponse.media_type
    built = Response(answer.content(), answer.status, dict(answer.headers), media_type=media)
    sent = _Encoded(answer)
    assert isinstance(sent, JSONResponse)
    assert sent.raw_headers == built.raw_headers
    assert (sent.status_code, sent.body) == (built.status_code, answer.content())
    assert sent.headers["content-length"] == str(len(answer.content()))
