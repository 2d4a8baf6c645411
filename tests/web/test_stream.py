from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

import pytest

import immortus
from immortus import JobStatus, State, TrackingStrategy, lifecycle
from immortus.web import StreamResponse, Verifier
from immortus.web.stream import HEARTBEAT
from tests.web.conftest import FaultyStore


class Timing(TypedDict):
    interval: float
    heartbeat: float


FAST: Timing = {"interval": 0.005, "heartbeat": 10.0}


def parse(frame: bytes) -> tuple[str, dict[str, Any] | None]:
    """Return ``("data" | "error" | "comment", body)`` of one SSE frame."""
    assert frame.endswith(b"\n\n")
    if frame.startswith(b":"):
        return "comment", None
    lines = frame[:-2].split(b"\n")
    kind = "data"
    if lines[0] == b"event: error":
        kind, lines = "error", lines[1:]
    [data] = lines
    assert data.startswith(b"data: ")
    body: dict[str, Any] = json.loads(data[len(b"data: ") :])
    return kind, body


def status_of(frame: bytes) -> str:
    body = parse(frame)[1]
    assert body is not None
    status: str = body["status"]
    return status


def collect(
    response: StreamResponse, react: Callable[[int, bytes], None], limit: int = 500
) -> list[bytes]:
    """Iterate ``response`` asynchronously, calling ``react(index, frame)`` after each frame."""

    async def main() -> list[bytes]:
        frames: list[bytes] = []
        async for frame in response:
            frames.append(frame)
            react(len(frames) - 1, frame)
            assert len(frames) < limit, "the stream did not end"
        return frames

    return asyncio.run(main())


def nothing(index: int, frame: bytes) -> None:
    pass


@pytest.fixture
def verifier(store: FaultyStore) -> Verifier:
    lifecycle.job_enqueued("job-1")
    return Verifier(open_endpoints=True)


def test_one_frame_per_change_then_the_end(store: FaultyStore, verifier: Verifier) -> None:
    response = verifier.stream("job-1", **FAST)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Accel-Buffering"] == "no"
    steps = [
        lambda: lifecycle.job_started("job-1"),
        lambda: lifecycle.job_progress("job-1", immortus.Progress(current=1, total=2)),
        lambda: lifecycle.job_finished("job-1"),
    ]

    def react(index: int, frame: bytes) -> None:
        if index < len(steps):
            steps[index]()

    frames = collect(response, react)
    parsed = [parse(frame) for frame in frames]
    assert [kind for kind, _ in parsed] == ["data"] * 4
    bodies = [body for _, body in parsed]
    assert [status_of(frame) for frame in frames] == [
        "created",
        "started",
        "started",
        "finished",
    ]
    assert bodies[-1] == immortus.status("job-1").to_dict()
    assert bodies[2] is not None
    assert bodies[2]["progress"]["current"] == 1


def test_the_sync_iteration_is_the_same_stream(store: FaultyStore, verifier: Verifier) -> None:
    frames = []
    for frame in verifier.stream("job-1", **FAST):
        frames.append(frame)
        if len(frames) == 1:
            lifecycle.job_failed("job-1", RuntimeError("boom"))
    assert [status_of(frame) for frame in frames] == ["created", "failed"]


def test_heartbeats_while_nothing_changes(store: FaultyStore, verifier: Verifier) -> None:
    response = verifier.stream("job-1", interval=0.005, heartbeat=0.02)

    def react(index: int, frame: bytes) -> None:
        if index == 3:
            lifecycle.job_cancelled("job-1")

    frames = collect(response, react)
    assert frames[1:4] == [HEARTBEAT] * 3
    assert parse(frames[-1])[1] == immortus.status("job-1").to_dict()
    assert len(frames) == 5


def test_a_completed_job_is_one_frame(store: FaultyStore, verifier: Verifier) -> None:
    lifecycle.job_finished("job-1")
    response = verifier.stream("job-1", **FAST)
    assert response.status == 200
    frames = collect(response, nothing)
    assert [parse(frame)[0] for frame in frames] == ["data"]
    assert store.reads == 1


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (("job-1", None, None), 404),  # no token
        (("job-1", None, "forged"), 404),
        (("job-2", None, "TOKEN"), 404),  # unknown job, right token
        (("job-1", "jobs.untracked", "TOKEN"), 404),
        (("", None, None), 400),
        (("job-1", "x" * 10_000, None), 400),
    ],
)
def test_a_refused_stream_is_one_error_frame(
    store: FaultyStore, args: tuple[str, str | None, str | None], status: int
) -> None:
    lifecycle.job_enqueued("job-1")
    signed = Verifier(secret_key="k")  # noqa: S106
    job_id, job_class, token = args
    if token == "TOKEN":  # noqa: S105  # a placeholder for the job's real token
        token = signed.token_for(job_id, job_class)
    verified = signed.verify(job_id, job_class, token)
    for response in (
        signed.stream(job_id, job_class, token, **FAST),
        asyncio.run(signed.astream(job_id, job_class, token, **FAST)),
    ):
        assert response.status == verified.status == status
        frames = collect(response, nothing)
        assert frames == [b"event: error\ndata: " + verified.content() + b"\n\n"]


def test_a_store_down_at_the_start_is_503(store: FaultyStore, verifier: Verifier) -> None:
    store.down = True
    response = verifier.stream("job-1", **FAST)
    assert response.status == 503
    [frame] = collect(response, nothing)
    kind, body = parse(frame)
    assert kind == "error"
    assert body is not None
    assert body["error"]["type"] == "StoreUnavailable"
    assert b"db-7" not in frame


def test_an_outage_mid_stream_then_recovery(store: FaultyStore, verifier: Verifier) -> None:
    response = verifier.stream("job-1", interval=0.005, heartbeat=0.03)

    def react(index: int, frame: bytes) -> None:
        if index == 0:
            store.down = True
        elif frame == HEARTBEAT:
            store.down = False
            lifecycle.job_finished("job-1")

    frames = collect(response, react)
    kinds = [parse(frame)[0] for frame in frames]
    assert kinds[:3] == ["data", "error", "comment"]
    assert kinds[-1] == "data"
    assert "error" not in kinds[2:]
    error = parse(frames[1])[1]
    assert error is not None
    assert error["error"]["type"] == "StoreUnavailable"
    assert b"db-7" not in frames[1]
    assert parse(frames[-1])[1] == immortus.status("job-1").to_dict()


def test_recovery_resends_the_body_even_unchanged(store: FaultyStore, verifier: Verifier) -> None:
    response = verifier.stream("job-1", interval=0.005, heartbeat=10)
    seen: list[str] = []

    def react(index: int, frame: bytes) -> None:
        kind = parse(frame)[0]
        seen.append(kind)
        if seen == ["data"]:
            store.down = True
        elif kind == "error":
            store.down = False
        elif seen == ["data", "error", "data"]:
            lifecycle.job_finished("job-1")

    frames = collect(response, react)
    assert seen == ["data", "error", "data", "data"]
    assert frames[0] == frames[2]


def test_a_long_outage_ends_the_stream(store: FaultyStore, verifier: Verifier) -> None:
    # Backing off from 1 ms, the feed tries about 9 times in 0.5 s: room for a loaded machine.
    response = verifier.stream("job-1", interval=0.001, heartbeat=10, give_up_after=0.5)

    def react(index: int, frame: bytes) -> None:
        store.down = True

    frames = collect(response, react)
    assert [parse(frame)[0] for frame in frames] == ["data", "error"]
    assert store.reads > 3


def test_a_strategy_breaking_mid_stream_ends_it(store: FaultyStore) -> None:
    class Fragile(TrackingStrategy):
        calls = 0

        def status(self, job_id: str) -> JobStatus:
            self.calls += 1
            if self.calls > 1:
                raise RuntimeError("db-7 said no")
            return JobStatus(job_id=job_id, state=State.STARTED)

    @immortus.track(name="jobs.fragile", strategy=Fragile())
    def fragile() -> None: ...

    frames = collect(Verifier(open_endpoints=True).stream("j", "jobs.fragile", **FAST), nothing)
    assert [parse(frame)[0] for frame in frames] == ["data", "error"]
    error = parse(frames[1])[1]
    assert error is not None
    assert error["error"]["type"] == "StrategyError"
    assert b"db-7" not in frames[1]


def test_a_record_vanishing_mid_stream_ends_it(verifier: Verifier, store: FaultyStore) -> None:
    def react(index: int, frame: bytes) -> None:
        store.prune(now=datetime.now(UTC) + timedelta(days=30))  # the record expires

    frames = collect(verifier.stream("job-1", **FAST), react)
    assert [parse(frame)[0] for frame in frames] == ["data", "error"]
    assert parse(frames[1])[1] == JobStatus.unknown("job-1").to_dict()


def test_astream_answers_as_stream(store: FaultyStore, verifier: Verifier) -> None:
    response = asyncio.run(verifier.astream("job-1", **FAST))
    assert response.status == 200

    def react(index: int, frame: bytes) -> None:
        lifecycle.job_finished("job-1")

    frames = collect(response, react)
    assert [status_of(frame) for frame in frames] == ["created", "finished"]
