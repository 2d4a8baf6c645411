"""The multi-job stream and the cancel answers of the web core, without a server.

Real memory stores (with fault injection), the real change feed; the HTTP side is in
``tests/web/contract_jobs.py``, run against every adapter.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

import immortus
from immortus import JobStatus, TrackingStrategy, lifecycle
from immortus.web import MultiStreamResponse, StreamLimits, Verifier
from immortus.web.feed import ChangeFeed, SubscriptionGroup
from immortus.web.multistream import END_FRAME
from immortus.web.stream import HEARTBEAT, StreamResponse, retry_frame
from immortus.web.stream_limits import get_limiter
from tests.web.conftest import FaultyStore

JSON = "application/json"
KIND = "multi.report"
#: Fast pacing: the feed polls every 10 ms, heartbeats every 50 ms.
PACE: dict[str, Any] = {"interval": 0.01, "heartbeat": 0.05}


@pytest.fixture
def tracked(store: FaultyStore) -> FaultyStore:
    """:data:`KIND` tracked; jobs ``a`` and ``b`` enqueued."""
    immortus.declare(KIND)
    for job_id in ("a", "b"):
        lifecycle.job_enqueued(job_id, KIND)
    return store


def body(*job_ids: str) -> bytes:
    return json.dumps(
        {"jobs": [{"job_id": job_id, "job_class": KIND} for job_id in job_ids]}
    ).encode()


def events(frames: Iterable[bytes]) -> Iterator[tuple[str, Any]]:
    """``("job", data) | ("end", {}) | ("comment", None) | ("retry", None)`` per frame."""
    for chunk in frames:
        for frame in chunk.split(b"\n\n")[:-1]:
            if frame.startswith(b":"):
                yield "comment", None
            elif frame.startswith(b"retry:"):
                yield "retry", None
            else:
                event, data = frame.split(b"\n")
                yield event.decode().removeprefix("event: "), json.loads(data[len(b"data: ") :])


def follow(stream: StreamResponse, on_job: Any = None) -> list[tuple[str, Any]]:
    """Iterate ``stream`` with ``for``; call ``on_job(seen)`` after each job frame."""
    seen: list[tuple[str, Any]] = []
    for event, data in events(stream.frames()):
        if event == "comment":
            continue
        seen.append((event, data))
        if event == "job" and on_job is not None:
            on_job(seen)
    return seen


def statuses(seen: list[tuple[str, Any]]) -> list[tuple[int, int, str | None]]:
    return [
        (data["index"], data["code"], data["body"].get("status"))
        for event, data in seen
        if event == "job"
    ]


def test_each_job_is_sent_now_and_at_each_change_then_the_end(tracked: FaultyStore) -> None:
    stream = Verifier(open_endpoints=True).stream_jobs(body("a", "b"), content_type=JSON, **PACE)
    assert isinstance(stream, MultiStreamResponse)
    assert stream.status == 200
    assert stream.lasting
    steps = [
        lambda: lifecycle.job_started("a", KIND),
        lambda: lifecycle.job_finished("b", KIND),
        lambda: lifecycle.job_finished("a", KIND),
    ]

    def drive(seen: list[tuple[str, Any]]) -> None:
        if len(seen) >= 2 and steps:
            steps.pop(0)()

    seen = follow(stream, drive)
    assert statuses(seen) == [
        (0, 200, "created"),
        (1, 200, "created"),
        (0, 200, "started"),
        (1, 200, "finished"),
        (0, 200, "finished"),
    ]
    assert seen[-1] == ("end", {})


def test_async_iteration_sends_the_same_frames(tracked: FaultyStore) -> None:
    async def main() -> list[tuple[str, Any]]:
        stream = await Verifier(open_endpoints=True).astream_jobs(
            body("a", "b"), content_type=JSON, **PACE
        )
        seen: list[tuple[str, Any]] = []
        async for chunk in stream.aframes():
            for event, data in events(iter([chunk])):
                if event == "comment":
                    continue
                seen.append((event, data))
                if len(seen) == 2:
                    await asyncio.to_thread(lifecycle.job_finished, "a", KIND)
                    await asyncio.to_thread(lifecycle.job_failed, "b", None, KIND)
        return seen

    seen = asyncio.run(main())
    assert sorted(statuses(seen)[2:]) == [(0, 200, "finished"), (1, 200, "failed")]
    assert seen[-1] == ("end", {})


def test_an_outage_is_one_503_frame_per_job_then_the_current_body(
    tracked: FaultyStore,
) -> None:
    stream = Verifier(open_endpoints=True).stream_jobs(body("a"), content_type=JSON, **PACE)
    phases = iter(["down", "up"])

    def drive(seen: list[tuple[str, Any]]) -> None:
        phase = next(phases, None)
        if phase == "down":
            tracked.down = True
        elif phase == "up":
            tracked.down = False
            lifecycle.job_finished("a", KIND)

    seen = follow(stream, drive)
    assert [(code, status) for _, code, status in statuses(seen)] == [
        (200, "created"),
        (503, None),
        (200, "finished"),
    ]
    assert seen[1][1]["body"]["error"]["type"] == "StoreUnavailable"
    assert seen[-1] == ("end", {})


def test_a_store_down_for_too_long_ends_the_stream_with_retry_not_end(
    tracked: FaultyStore,
) -> None:
    verifier = Verifier(open_endpoints=True)
    stream = verifier.stream_jobs(body("a", "b"), content_type=JSON, give_up_after=0.2, **PACE)

    def drive(seen: list[tuple[str, Any]]) -> None:
        tracked.down = True

    seen = follow(stream, drive)
    assert sorted(code for _, code, _ in statuses(seen)) == [200, 200, 503, 503]
    assert seen[-1] == ("retry", None)
    assert ("end", {}) not in seen


def test_jobs_all_ended_at_once_take_no_slot_and_end_in_the_first_chunk(
    tracked: FaultyStore,
) -> None:
    lifecycle.job_finished("a", KIND)
    limits = StreamLimits.wsgi(max_open=0)  # no slot at all: only a lasting stream needs one
    stream = Verifier(open_endpoints=True).stream_jobs(
        body("a", "nobody"), content_type=JSON, limits=limits
    )
    [chunk] = list(stream.frames())
    assert chunk.endswith(END_FRAME)
    assert chunk.count(b"event: job") == 2


def test_a_multi_stream_takes_one_slot_and_its_lifetime_ends_it_without_end(
    tracked: FaultyStore,
) -> None:
    limits = StreamLimits.wsgi(max_open=1, lifetime=0.3, keepalive=0.05)
    verifier = Verifier(open_endpoints=True)
    opened = get_limiter().open
    stream = verifier.stream_jobs(body("a", "b"), content_type=JSON, limits=limits, **PACE)
    assert stream.status == 200
    assert get_limiter().open == opened + 1
    refused = verifier.stream_jobs(body("a"), content_type=JSON, limits=limits)
    assert refused.status == 503
    assert json.loads(b"".join(refused.frames()))["error"]["type"] == "TooManyStreams"
    frames = list(stream.frames())
    assert frames[-1] == retry_frame(limits.reconnect)
    assert END_FRAME not in b"".join(frames)
    assert set(frames[1:-1]) <= {HEARTBEAT}
    assert get_limiter().open == opened


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"jobs": []}', "text/plain", 415),
        (b'{"jobs": 1}', JSON, 400),
        (json.dumps({"jobs": [{"job_id": str(n)} for n in range(101)]}).encode(), JSON, 400),
    ],
)
def test_a_refused_request_is_a_plain_json_answer(
    tracked: FaultyStore, content: bytes, content_type: str, status: int
) -> None:
    stream = Verifier(open_endpoints=True).stream_jobs(content, content_type=content_type)
    assert stream.status == status
    assert stream.headers["Content-Type"] == JSON
    assert json.loads(b"".join(stream.frames()))["job_id"] is None


def test_unsecured_routes_refuse_the_multi_stream(tracked: FaultyStore) -> None:
    stream = Verifier().stream_jobs(body("a"), content_type=JSON)
    assert stream.status == 500
    assert json.loads(b"".join(stream.frames()))["error"]["type"] == "EndpointsNotSecured"


def test_a_subscription_group_wakes_on_any_member_and_leaves_the_feed(
    tracked: FaultyStore,
) -> None:
    feed = ChangeFeed(0.01)
    with SubscriptionGroup(feed, [("a", KIND), ("b", KIND), ("a", KIND)]) as group:
        assert feed.subscribers == 3
        assert feed.jobs == [("a", KIND), ("b", KIND)]
        while group.changed() != [0, 1, 2]:  # the first poll is news to every member
            assert group.next_change(10)  # (a tick wakes the group at its first job's news)
        for member in group.members:
            member.take()
        assert not group.next_change(0.05)
        group.drop(1)
        assert feed.subscribers == 2
        threading.Timer(0.05, lifecycle.job_started, args=("b", KIND)).start()
        threading.Timer(0.1, lifecycle.job_started, args=("a", KIND)).start()
        assert group.next_change(10)
        assert group.changed() == [0, 2]  # b was dropped: its change is nobody's news
    assert feed.subscribers == 0


# -- groups on the stream -----------------------------------------------------------------


def test_a_stream_of_groups_alone_follows_them_to_their_end(tracked: FaultyStore) -> None:
    for job_id in ("a", "b"):
        immortus.add_to_group("g", job_id, KIND)
    asked = json.dumps({"jobs": [{"group_id": "g"}, {"group_id": "nobody"}]}).encode()
    stream = Verifier(open_endpoints=True).stream_jobs(asked, content_type=JSON, **PACE)

    def finish(seen: list[tuple[str, Any]]) -> None:
        if len(seen) == 2:  # both first frames are in
            for job_id in ("a", "b"):
                threading.Thread(target=lifecycle.job_finished, args=(job_id, KIND)).start()

    seen = follow(stream, finish)
    assert seen[-1] == ("end", {})
    assert statuses(seen)[:2] == [(0, 200, "created"), (1, 404, "unknown")]
    assert statuses(seen)[-1] == (0, 200, "finished")
    assert seen[-2][1]["body"]["completed"] == 2


def test_an_async_stream_reads_its_groups_off_the_loop(tracked: FaultyStore) -> None:
    immortus.add_to_group("g", "a", KIND)
    asked = json.dumps({"jobs": [{"group_id": "g"}, {"job_id": "b", "job_class": KIND}]})

    async def main() -> list[tuple[str, Any]]:
        verifier = Verifier(open_endpoints=True)
        stream = await verifier.astream_jobs(asked, content_type=JSON, **PACE)
        seen: list[tuple[str, Any]] = []
        async for chunk in stream.aframes():
            seen += [item for item in events([chunk]) if item[0] != "comment"]
            if len(seen) == 2:
                for job_id in ("a", "b"):
                    await asyncio.to_thread(lifecycle.job_finished, job_id, KIND)
        return seen

    seen = asyncio.run(main())
    assert seen[-1] == ("end", {})
    assert {(index, status) for index, _, status in statuses(seen)[-2:]} == {
        (0, "finished"),
        (1, "finished"),
    }


# -- cancel answers the core makes --------------------------------------------------------


class Unstoppable(TrackingStrategy):
    """Reads the store; its ``cancel`` always breaks."""

    supports_cancel = True

    def status(self, job_id: str) -> JobStatus:
        return immortus.StoreStrategy().status(job_id)

    def cancel(self, job_id: str) -> None:
        raise RuntimeError("the queue's admin API answered 500 at 10.0.0.7")


def cancel(verifier: Verifier, job_id: str, job_class: str) -> tuple[int, dict[str, Any]]:
    answer = verifier.cancel(job_id, job_class, body=b"{}", content_type=JSON)
    return answer.status, dict(answer.body)


def test_cancel_maps_store_outages_and_strategy_failures(tracked: FaultyStore) -> None:
    immortus.declare("multi.cancellable", cancellable=True)
    immortus.declare("multi.unstoppable", strategy=Unstoppable(), cancellable=True)
    lifecycle.job_started("c", "multi.cancellable")
    lifecycle.job_started("c", "multi.unstoppable")
    verifier = Verifier(open_endpoints=True)
    status, answer = cancel(verifier, "c", "multi.unstoppable")
    assert (status, answer["error"]["type"]) == (500, "StrategyError")
    assert "10.0.0.7" not in json.dumps(answer)
    tracked.down = True
    status, answer = cancel(verifier, "c", "multi.cancellable")
    assert (status, answer["error"]["type"]) == (503, "StoreUnavailable")


def test_cancel_of_a_class_nothing_can_cancel_is_a_405(tracked: FaultyStore) -> None:
    class ReadOnly(TrackingStrategy):
        def status(self, job_id: str) -> JobStatus:
            return JobStatus.unknown(job_id)

    immortus.declare("multi.readonly", strategy=ReadOnly(), cancellable=True)
    status, answer = cancel(Verifier(open_endpoints=True), "c", "multi.readonly")
    assert (status, answer["error"]["type"]) == (405, "NotCancellable")


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"[]", "JSON object"), (b'{"token": 7}', "token must be a string"), (b"{", "not valid")],
)
def test_a_malformed_cancel_body_is_a_400(
    tracked: FaultyStore, content: bytes, message: str
) -> None:
    answer = Verifier(open_endpoints=True).cancel("a", KIND, body=content, content_type=JSON)
    assert answer.status == 400
    assert message in answer.body["error"]["message"]
