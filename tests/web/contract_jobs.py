"""The HTTP contract of the multi-job stream and the cancel route, part of :class:`HTTPContract`.

Besides ``base_url``, an adapter's test module provides ``short_lived_url``: the immortus prefix
of a server whose streams live about half a second (their ``retry:`` end is tested). Its
contract class may override ``post_headers``: what a ``POST`` that changes something carries
(Django: its CSRF cookie and header).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import immortus
from immortus import JobStatus, cancel_requests, lifecycle
from immortus.cancelling import register_canceller, unregister_canceller
from immortus.stores.base import Store
from immortus.web import MAX_BATCH, Verifier

__all__ = ["CANCELLABLE", "DROPPING", "JobsContract", "events_of"]

#: The contract's tracked class (the store strategy, not cancellable).
REPORT_CLASS = "contract.report"
#: A job class that opted in to cancelling; the store strategy asks a running job to stop.
CANCELLABLE = "contract.cancellable"
#: A cancellable class of a queue whose canceller drops the job at once (it reads cancelled).
DROPPING = "contract.dropping"
#: The queue of :data:`DROPPING`.
QUEUE = "contract-queue"
#: The frame a stream's lifetime ends with (2 s, the default reconnection delay).
RETRY = b"retry: 2000"


def events_of(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """Yield ``("job" | "end" | "comment" | "retry", data)`` for each frame as it arrives."""
    buffer = b""
    for chunk in response.iter_bytes():
        buffer += chunk
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            if frame.startswith(b":"):
                yield "comment", None
            elif frame.startswith(b"retry: "):
                assert frame == RETRY
                yield "retry", None
            else:
                event, data = frame.split(b"\n")
                assert event in (b"event: job", b"event: end")
                assert data.startswith(b"data: ")
                yield event[len(b"event: ") :].decode(), json.loads(data[len(b"data: ") :])
    assert buffer == b"", "the stream ended inside a frame"


def finish_all(job_ids: list[str], job_class: str) -> None:
    for job_id in job_ids:
        lifecycle.job_finished(job_id, job_class)


class JobsContract:
    """``POST stream`` and ``POST cancel/...`` as an HTTP client sees them."""

    @pytest.fixture
    def post_headers(self) -> dict[str, str]:
        """Headers of a ``POST`` that changes something, besides its JSON content type."""
        return {}

    @pytest.fixture
    def cancellable(self, jobs: Store) -> Iterator[Store]:
        """:data:`CANCELLABLE` and :data:`DROPPING` declared; job ``run-1`` of each started."""
        immortus.declare(CANCELLABLE, cancellable=True)

        def drop(job_id: str, job_class: str) -> None:
            lifecycle.job_cancelled(job_id, job_class)

        register_canceller(QUEUE, drop)
        immortus.declare(DROPPING, strategy=immortus.StoreStrategy(), queue=QUEUE, cancellable=True)
        for job_class in (CANCELLABLE, DROPPING):
            lifecycle.job_started("run-1", job_class)
        yield jobs
        unregister_canceller(QUEUE)

    # -- the multi-job stream --------------------------------------------------------------

    def test_fifty_jobs_on_one_connection_all_reach_their_final_frames(
        self, http: httpx.Client, jobs: Store
    ) -> None:
        job_ids = [f"many-{number}" for number in range(50)]
        for job_id in job_ids:
            lifecycle.job_enqueued(job_id, REPORT_CLASS)
        asked = [{"job_id": job_id, "job_class": REPORT_CLASS} for job_id in job_ids]
        seen: dict[int, list[str]] = {index: [] for index in range(50)}
        events: list[str] = []
        with http.stream("POST", "stream", json={"jobs": asked}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-store"
            for event, data in events_of(response):
                events.append(event)
                if event != "job":
                    continue
                assert data is not None
                assert data["code"] == 200
                seen[data["index"]].append(data["body"]["status"])
                assert data["body"]["job_id"] == job_ids[data["index"]]
                if sum(map(len, seen.values())) == 50:  # every job's first frame is in
                    threading.Thread(target=finish_all, args=(job_ids, REPORT_CLASS)).start()
        assert events[-1] == "end"
        assert events.count("end") == 1
        assert all(statuses == ["created", "finished"] for statuses in seen.values()), seen

    def test_a_bad_token_answers_its_job_as_unknown_and_serves_the_others(
        self, http: httpx.Client, secret: Verifier
    ) -> None:
        lifecycle.job_enqueued("job-2", REPORT_CLASS)
        asked = [
            {"job_id": "job-1", "job_class": REPORT_CLASS, "token": "v1.1.forged"},
            {"job_id": "job-2", "job_class": REPORT_CLASS,
             "token": secret.token_for("job-2", REPORT_CLASS)},
            {"job_id": "job-1", "job_class": REPORT_CLASS,
             "token": secret.token_for("job-1", None)},
            {"job_id": "nobody", "job_class": REPORT_CLASS,
             "token": secret.token_for("nobody", REPORT_CLASS)},
        ]  # fmt: skip
        frames: list[tuple[str, Any]] = []
        with http.stream("POST", "stream", json={"jobs": asked}) as response:
            assert response.status_code == 200
            for event, data in events_of(response):
                if event == "comment":
                    continue
                frames.append((event, data))
                if event == "job" and len(frames) == 4:
                    lifecycle.job_finished("job-2", REPORT_CLASS)
        unknown = JobStatus.unknown("job-1", REPORT_CLASS).to_dict()
        assert frames[:4] == [
            ("job", {"index": 0, "code": 404, "body": unknown}),
            ("job", {"index": 1, "code": 200, "body": frames[1][1]["body"]}),
            ("job", {"index": 2, "code": 404, "body": unknown}),
            ("job", {"index": 3, "code": 404,
                     "body": JobStatus.unknown("nobody", REPORT_CLASS).to_dict()}),
        ]  # fmt: skip
        assert frames[1][1]["body"]["status"] == "created"
        assert [(event, data and data["index"]) for event, data in frames[4:]] == [
            ("job", 1),
            ("end", {}),
        ]
        assert frames[4][1]["body"]["status"] == "finished"
        assert frames[5][1] == {}

    def test_jobs_all_ended_at_once_are_frames_then_the_end(
        self, http: httpx.Client, jobs: Store
    ) -> None:
        lifecycle.job_finished("job-1", REPORT_CLASS)
        asked = [{"job_id": "job-1", "job_class": REPORT_CLASS}, {"job_id": "nobody"}]
        with http.stream("POST", "stream", json={"jobs": asked}) as response:
            assert response.status_code == 200
            frames = [(event, data and data.get("code")) for event, data in events_of(response)]
        assert frames == [("job", 200), ("job", 404), ("end", {})]

    def test_at_its_lifetime_the_stream_asks_to_retry_without_an_end(
        self, short_lived_url: str, jobs: Store
    ) -> None:
        asked = [{"job_id": "job-1", "job_class": REPORT_CLASS}]
        with (
            httpx.Client(base_url=short_lived_url.rstrip("/") + "/", timeout=10) as client,
            client.stream("POST", "stream", json={"jobs": asked}) as response,
        ):
            assert response.status_code == 200
            events = [event for event, _ in events_of(response)]
        assert events[0] == "job"
        assert events[-1] == "retry"
        assert set(events[1:-1]) <= {"comment"}

    @pytest.mark.parametrize(
        ("content", "content_type", "status"),
        [
            (b'{"jobs": [{"job_id": "job-1"}]}', "text/plain", 415),
            (b"not json", "application/json", 400),
            (b'{"jobs": [{"job_id": ""}]}', "application/json", 400),
        ],
    )
    def test_a_refused_multi_stream_is_a_json_answer(
        self, http: httpx.Client, jobs: Store, content: bytes, content_type: str, status: int
    ) -> None:
        response = http.post("stream", content=content, headers={"Content-Type": content_type})
        assert response.status_code == status
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["job_id"] is None

    def test_over_the_item_limit_is_a_400_naming_it(self, http: httpx.Client, jobs: Store) -> None:
        asked = [{"job_id": f"j{number}"} for number in range(MAX_BATCH + 1)]
        response = http.post("stream", json={"jobs": asked})
        assert response.status_code == 400
        assert f"the limit is {MAX_BATCH}" in response.json()["error"]["message"]

    # -- cancel ----------------------------------------------------------------------------

    def _cancel(
        self, http: httpx.Client, path: str, headers: dict[str, str], token: str | None = None
    ) -> httpx.Response:
        body = {} if token is None else {"token": token}
        return http.post(f"cancel/{path}", json=body, headers=headers)

    def test_a_running_job_is_asked_to_stop_202(
        self, http: httpx.Client, cancellable: Store, post_headers: dict[str, str]
    ) -> None:
        lifecycle.job_started("stop-me", CANCELLABLE)
        cancel_requests.forget("stop-me")  # a job id this process may have seen cancelled
        response = self._cancel(http, f"stop-me/{CANCELLABLE}", post_headers)
        assert response.status_code == 202
        assert response.json()["status"] == "started"
        assert cancel_requests.is_requested("stop-me")

    def test_a_job_its_queue_drops_is_cancelled_200(
        self, http: httpx.Client, cancellable: Store, post_headers: dict[str, str]
    ) -> None:
        response = self._cancel(http, f"run-1/{DROPPING}", post_headers)
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"
        assert immortus.status("run-1", DROPPING).state.value == "cancelled"

    def test_an_ended_job_is_a_409_with_its_body(
        self, http: httpx.Client, cancellable: Store, post_headers: dict[str, str]
    ) -> None:
        lifecycle.job_finished("run-1", CANCELLABLE)
        response = self._cancel(http, f"run-1/{CANCELLABLE}", post_headers)
        assert response.status_code == 409
        assert response.json()["status"] == "finished"

    def test_an_unknown_job_is_the_verify_404(
        self, http: httpx.Client, cancellable: Store, post_headers: dict[str, str]
    ) -> None:
        response = self._cancel(http, f"ghost/{CANCELLABLE}", post_headers)
        assert response.status_code == 404
        assert response.content == http.get(f"verify/ghost/{CANCELLABLE}").content

    @pytest.mark.parametrize("path", [f"job-1/{REPORT_CLASS}", "job-1"])
    def test_a_class_that_did_not_opt_in_is_a_405(
        self, http: httpx.Client, cancellable: Store, post_headers: dict[str, str], path: str
    ) -> None:
        response = self._cancel(http, path, post_headers)
        assert response.status_code == 405
        assert response.json()["error"]["type"] == "NotCancellable"
        assert immortus.status("job-1", REPORT_CLASS).state.value == "started"

    @pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
    def test_a_cancel_not_sent_as_json_is_a_415(
        self,
        http: httpx.Client,
        cancellable: Store,
        post_headers: dict[str, str],
        content_type: str,
    ) -> None:
        headers = {**post_headers, "Content-Type": content_type}
        response = http.post(f"cancel/run-1/{CANCELLABLE}", content=b"{}", headers=headers)
        assert response.status_code == 415
        assert immortus.status("run-1", CANCELLABLE).state.value == "started"

    def test_a_bad_token_an_unknown_job_and_an_untracked_class_look_alike(
        self,
        http: httpx.Client,
        cancellable: Store,
        secret: Verifier,
        post_headers: dict[str, str],
    ) -> None:
        ghost = f"ghost/{CANCELLABLE}"
        untracked = "ghost/nobody.tracks"
        answers = [
            self._cancel(http, ghost, post_headers, secret.token_for("ghost", CANCELLABLE)),
            self._cancel(http, ghost, post_headers, "v1.9999999999.forged"),
            self._cancel(http, ghost, post_headers),
            self._cancel(http, ghost, post_headers, secret.token_for("ghost", "other.class")),
        ]
        others = [
            self._cancel(http, untracked, post_headers, secret.token_for("ghost", "nobody.tracks")),
            self._cancel(http, untracked, post_headers, "v1.9999999999.forged"),
        ]
        for group in (answers, others):
            assert {response.status_code for response in group} == {404}
            assert len({response.content for response in group}) == 1
            assert len({_headers(response) for response in group}) == 1
        assert answers[0].content == http.get(f"verify/{ghost}").content

    def test_a_cancel_racing_the_job_s_end_leaves_one_ending(
        self, http: httpx.Client, cancellable: Store, post_headers: dict[str, str]
    ) -> None:
        for number in range(5):
            job_id = f"race-{number}"
            lifecycle.job_started(job_id, DROPPING)
            finisher = threading.Thread(target=lifecycle.job_finished, args=(job_id, DROPPING))
            finisher.start()
            response = self._cancel(http, f"{job_id}/{DROPPING}", post_headers)
            finisher.join(10)
            final = immortus.status(job_id, DROPPING)
            assert final.state.value in ("finished", "cancelled")
            expected = {"cancelled": 200, "finished": 409}[final.state.value]
            assert (response.status_code, response.json()["status"]) == (
                expected,
                final.state.value,
            )


def _headers(response: httpx.Response) -> tuple[tuple[str, str], ...]:
    """The headers that may differ between answers (not the date), in order."""
    return tuple((name, value) for name, value in response.headers.items() if name != "date")
