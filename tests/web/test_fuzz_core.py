"""Hostile input straight into the web core: any text, any bytes, never a crash.

Hypothesis feeds ``Verifier.verify``, ``verify_batch`` and ``stream`` (its first frame) job ids,
job classes, tokens and batch bodies of every shape, with and without a secret key, over a
working SQLite store. Every answer must be a 200, 400 or 404 with a JSON body naming the job
(or the jobs), without a traceback, and no module a request names may be imported.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import immortus
from immortus import Progress, config, lifecycle
from immortus.exceptions import InvalidInput
from immortus.web import MAX_BATCH_BYTES, Verifier
from immortus.web.batch import JSON_MEDIA_TYPE

JOB_CLASS = "fuzz.report"
KNOWN = "job-1"
SECRET = "fuzz-secret"  # noqa: S105
#: Importable modules this process has not imported: a request naming one must not load it.
MODULE_NAMES = ("imaplib", "wave", "xml.dom.minidom", "tabnanny", "mailbox", "poplib")
#: Names a request might give a job class, meaning code: each must stay a mere unknown class.
HOSTILE_NAMES = (
    *MODULE_NAMES,
    *(f"{name}:main" for name in MODULE_NAMES),
    "os:system",
    "os.system",
    "__import__",
    "../../etc/passwd",
    "builtins:eval",
)
ANSWERS = {200, 400, 404}

FUZZ = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Any text, lone surrogates included (a server may hand those on from undecodable bytes).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=300)
names = st.one_of(any_text, st.sampled_from(HOSTILE_NAMES), st.just(KNOWN), st.just(JOB_CLASS))
#: ``VALID`` stands for the token that opens the job asked about (see :func:`_token`).
VALID = "<the valid token>"
tokens = st.one_of(
    st.none(), any_text, st.just(VALID), st.just("v1.9999999999.AAAA"), st.text(max_size=400)
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=20,
)
batch_items = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"job_id": names},
        optional={"job_class": st.none() | names, "token": tokens, "extra": json_values},
    ),
)


def _batch_body(jobs: list[Any], extra: dict[str, Any]) -> bytes:
    return json.dumps({**extra, "jobs": jobs}).encode("utf-8", "surrogatepass")


batch_bodies = st.one_of(
    st.binary(max_size=2000),
    any_text.map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.builds(
        _batch_body,
        st.lists(batch_items, max_size=120),
        st.dictionaries(st.text(max_size=5), json_values, max_size=2),
    ),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.integers(1, 3000).map(lambda depth: b'{"jobs": ' + b"[" * depth + b"]" * depth + b"}"),
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[None]:
    """A SQLite store in ``tmp_path``; ``fuzz.report`` tracked; job ``job-1`` started."""
    config.configure(store=f"sqlite:///{tmp_path / 'jobs.db'}", progress_interval=0)

    @immortus.track(name=JOB_CLASS)
    def report() -> None: ...

    lifecycle.job_enqueued(KNOWN, JOB_CLASS)
    lifecycle.job_started(KNOWN, JOB_CLASS)
    lifecycle.job_progress(KNOWN, Progress(current=1, total=2, message="half"), JOB_CLASS)
    loaded = set(MODULE_NAMES) & set(sys.modules)  # by other tests of this process, maybe
    assert len(MODULE_NAMES) - len(loaded) >= 3, "pick modules this process has not loaded"
    yield
    assert set(MODULE_NAMES) & set(sys.modules) == loaded, "a request imported a module it named"


@pytest.fixture(params=["open", "secret"])
def verifier(request: pytest.FixtureRequest, store: None) -> Verifier:
    """A verifier without a secret key (open), and one with (every request needs a token)."""
    return Verifier(open_endpoints=True) if request.param == "open" else Verifier(secret_key=SECRET)


def _imports_named(before: set[str], *inputs: object) -> set[str]:
    """Modules loaded since ``before`` that one of ``inputs`` names."""
    named = set()
    for value in inputs:
        if isinstance(value, str):
            module = value.partition(":")[0]
            parts = module.split(".")
            named |= {value, module} | {".".join(parts[: n + 1]) for n in range(len(parts))}
    return (set(sys.modules) - before) & named


def _token(verifier: Verifier, token: str | None, job_id: str, job_class: str | None) -> str | None:
    """``token``, or for ``VALID`` the token of (job id, job class) if they are well-formed."""
    if token != VALID:
        return token
    try:
        return verifier.token_for(job_id, job_class)
    except InvalidInput:
        return token


def _check_body(content: bytes) -> dict[str, Any]:
    assert b"Traceback" not in content
    body = json.loads(content)
    assert isinstance(body, dict)
    return body


@FUZZ
@given(job_id=names, job_class=st.none() | names, token=tokens)
def test_verify_answers_any_input(
    verifier: Verifier, job_id: str, job_class: str | None, token: str | None
) -> None:
    before = set(sys.modules)
    answer = verifier.verify(job_id, job_class, _token(verifier, token, job_id, job_class))
    assert answer.status in ANSWERS
    body = _check_body(answer.content())
    assert "job_id" in body
    assert body == dict(answer.body)
    event(f"{answer.status}")  # --hypothesis-show-statistics: 200s are reached
    if answer.status == 200:
        assert (job_id, body["status"]) == (KNOWN, "started")
    assert not _imports_named(before, job_id, job_class, token)


@FUZZ
@given(body=batch_bodies)
def test_verify_batch_answers_any_body(verifier: Verifier, body: bytes) -> None:
    before = set(sys.modules)
    answer = verifier.verify_batch(content_type=JSON_MEDIA_TYPE, body=body)
    assert answer.status in {200, 400}
    event(f"{answer.status}")
    content = _check_body(answer.content())
    if answer.status == 400:
        assert content["error"]["type"] == "InvalidInput"
    else:
        assert isinstance(content["jobs"], list)
        for item in content["jobs"]:
            assert "job_id" in item
            assert item.get("status") in {"started", "unknown"}
    assert not _imports_named(before, body.decode("utf-8", "replace"))


def test_an_oversized_batch_is_refused_unparsed(verifier: Verifier) -> None:
    body = b'{"jobs": [' + b'{"job_id": "x"},' * (MAX_BATCH_BYTES // 16) + b"]}"
    answer = verifier.verify_batch(content_type=JSON_MEDIA_TYPE, body=body)
    assert answer.status == 400
    assert "over" in answer.body["error"]["message"]


@FUZZ
@given(job_id=names, job_class=st.none() | names, token=tokens)
def test_stream_opens_with_a_json_frame_for_any_input(
    verifier: Verifier, job_id: str, job_class: str | None, token: str | None
) -> None:
    before = set(sys.modules)
    token = _token(verifier, token, job_id, job_class)
    answer = verifier.stream(job_id, job_class, token, interval=0.01)
    assert answer.status in ANSWERS
    event(f"{answer.status}")
    frames = iter(answer)
    first = next(frames)
    getattr(frames, "close", lambda: None)()
    assert first.endswith(b"\n\n")
    error = answer.status != 200
    head, _, data = first.rstrip(b"\n").rpartition(b"data: ")
    assert head == (b"event: error\n" if error else b"")
    assert "job_id" in _check_body(data)
    assert not _imports_named(before, job_id, job_class, token)
