"""Abort, back-off after network errors, and polling paced from each answer."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Route

from tests.browser.conftest import Harness, wait_until

FAST = {"interval": 20}
RETRY = {"limit": 3, "base": 10, "max": 40}


def clock(harness: Harness, polls: int) -> None:
    """Let time pass: ``polls`` polls of a custom verify endpoint (no request to the routes)."""
    info: dict[str, Any] = harness.page.evaluate("() => Immortus.create('/jobs', {kind: 'slow'})")
    run = harness.watch({"verify_job_url": f"/custom/{info['job_id']}"}, polling=FAST)
    harness.wait_reports(run, polls)
    harness.abort(run)
    harness.site.step(info["job_id"])


def asked(harness: Harness) -> int:
    """How many requests the page made to the verify and stream routes."""
    return len(harness.requested("/immortus/verify")) + len(harness.requested("/immortus/stream"))


def finished_job(harness: Harness) -> dict[str, Any]:
    """Create a job in the page, let it finish, and wait until the server says so.

    Returns its job info. The wait makes the page's first answer the final one, whatever the
    site's worker thread's pace.
    """
    info: dict[str, Any] = harness.page.evaluate("() => Immortus.create('/jobs', {kind: 'slow'})")
    harness.site.step(info["job_id"])
    path = f"/immortus/verify/{info['job_id']}/{info['job_class']}?token={info['token']}"
    wait_until(lambda: harness.site.get(path).json()["completed"] is True, "the job to finish")
    return info


@pytest.mark.parametrize("transport", ["auto", "sse", "polling"])
def test_an_aborted_verify_rejects_and_stops_asking(harness: Harness, transport: str) -> None:
    run = harness.start("slow", transport=transport, polling=FAST)
    job_id = harness.job_id(run)
    harness.wait_reports(run, 1)
    harness.abort(run)
    state = harness.wait_done(run)

    assert state["error"]["name"] == "AbortError"
    assert state["result"] is None
    if transport != "polling":
        harness.wait_ended("/immortus/stream")  # the stream was closed: it carried no other job
    before = asked(harness)
    clock(harness, 5)
    assert asked(harness) == before
    harness.site.step(job_id)


def test_a_signal_aborted_before_verify_rejects_without_a_request(harness: Harness) -> None:
    error = harness.page.evaluate(
        """async () => {
            const info = await Immortus.create('/jobs', {kind: 'slow'});
            const controller = new AbortController();
            controller.abort();
            try {
                await Immortus.verify(info, {signal: controller.signal});
            } catch (error) {
                return {name: error.name, id: info.job_id};
            }
        }"""
    )

    assert error["name"] == "AbortError"
    assert asked(harness) == 0
    harness.site.step(error["id"])


def failing(count: int, fault: str, calls: list[str]) -> Any:
    """A route handler failing the first ``count`` requests with ``fault``, then passing."""

    def handle(route: Route) -> None:
        calls.append(route.request.url)
        if len(calls) > count:
            route.continue_()
        elif fault == "network":
            route.abort("connectionreset")
        else:
            body = '{"job_id": null, "error": {"type": "StoreUnavailable", "message": "down"}}'
            route.fulfill(status=503, content_type="application/json", body=body)

    return handle


@pytest.mark.parametrize("fault", ["network", "503"])
def test_failed_polls_are_retried_with_back_off(harness: Harness, fault: str) -> None:
    info = finished_job(harness)
    calls: list[str] = []
    harness.page.route("**/immortus/verify", failing(2, fault, calls))
    run = harness.watch(info, transport="polling", polling=FAST, retry=RETRY)
    state = harness.wait_done(run)

    assert state["error"] is None
    assert state["result"]["status"] == "finished"
    assert len(calls) == RETRY["limit"]


@pytest.mark.parametrize("fault", ["network", "503"])
def test_polling_gives_up_after_limit_failures_in_a_row(harness: Harness, fault: str) -> None:
    info = finished_job(harness)
    calls: list[str] = []
    harness.page.route("**/immortus/verify", failing(1000, fault, calls))
    run = harness.watch(info, transport="polling", polling=FAST, retry=RETRY)
    state = harness.wait_done(run)

    error = state["error"]
    assert (error["name"], error["immortusError"]) == ("ImmortusError", True)
    assert error["status"] == (0 if fault == "network" else 503)
    assert len(calls) == RETRY["limit"]
    clock(harness, 5)
    assert len(calls) == RETRY["limit"]  # nothing is asked after the rejection


def test_auto_falls_back_to_polling_when_the_stream_fails(harness: Harness) -> None:
    info = finished_job(harness)
    harness.page.route("**/immortus/stream", lambda route: route.abort("connectionreset"))
    run = harness.watch(info, polling=FAST, retry=RETRY)
    state = harness.wait_done(run)

    assert state["result"]["status"] == "finished"
    assert len(harness.requested("/immortus/stream")) == 1
    assert len(harness.requested("/immortus/verify")) == 1  # one batch poll


def test_sse_reopens_a_failed_stream(harness: Harness) -> None:
    streams: list[str] = []

    def fail_once(route: Route) -> None:
        streams.append(route.request.url)
        if len(streams) == 1:
            route.abort("connectionreset")
        else:
            route.continue_()

    harness.page.route("**/immortus/stream", fail_once)
    run = harness.start("slow", transport="sse", polling=FAST, retry=RETRY)
    harness.wait_reports(run, 1)  # a frame of the second stream
    harness.site.step(harness.job_id(run))
    state = harness.wait_done(run)

    assert state["result"]["status"] == "finished"
    assert len(streams) == 2
    assert harness.requested("/immortus/verify") == []  # "sse" never polls


def test_sse_gives_up_after_limit_failed_streams(harness: Harness) -> None:
    harness.page.route("**/immortus/stream", lambda route: route.abort("connectionreset"))
    run = harness.start("slow", transport="sse", polling=FAST, retry=RETRY)
    state = harness.wait_done(run)

    assert (state["error"]["name"], state["error"]["status"]) == ("ImmortusError", 0)
    assert len(harness.requested("/immortus/stream")) == RETRY["limit"]
    harness.site.step(harness.job_id(run))


def test_polling_waits_for_each_answer_before_the_next_interval(harness: Harness) -> None:
    info: dict[str, Any] = harness.page.evaluate("() => Immortus.create('/jobs', {kind: 'slow'})")
    calls: list[str] = []
    held: list[Route] = []

    def hold_second(route: Route) -> None:
        calls.append(route.request.url)
        if len(calls) == 2:
            held.append(route)  # not answered until the test says so
        else:
            route.continue_()

    harness.page.route("**/immortus/verify", hold_second)
    run = harness.watch(info, transport="polling", polling=FAST)
    wait_until(lambda: harness.pump() and bool(held), "the second poll")
    clock(harness, 10)
    assert len(calls) == 2  # no poll while one is unanswered, however many intervals passed

    held[0].continue_()
    harness.wait_reports(run, 2)
    harness.site.step(info["job_id"])
    state = harness.wait_done(run)
    assert state["result"]["status"] == "finished"
    assert len(calls) >= 3
