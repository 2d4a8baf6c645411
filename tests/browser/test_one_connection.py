"""Every job of a page on one connection: the client's shared stream, its fallback, and cancel.

A page may follow any number of jobs, but an HTTP/1.1 browser opens at most six connections to
a host: one stream per job would stall the seventh. The client follows every job of a page on
one ``POST {prefix}/stream``; the tests count the browser's connections with a relay in front
of the site (:mod:`tests.browser.connections`).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, Request, Route

from tests.browser.conftest import TIMEOUT_MS, Harness, Site, wait_until
from tests.browser.connections import counting
from tests.browser.test_verify import forged

#: The tests that need no framework of their own run on the Starlette site only.
starlette_only = pytest.mark.parametrize("site", ["starlette"], indirect=True)

FAST = {"interval": 20}
#: How many jobs of each outcome the 50-job pages follow.
MIX = {"finished": 20, "failed": 15, "forged token": 10, "unknown job": 5}


def create(site: Site, kind: str) -> dict[str, Any]:
    """Start a job of ``kind`` on the site; its job info (``{job_id, job_class, token}``)."""
    answer = httpx.post(f"{site.url}/jobs", json={"kind": kind}, timeout=10)
    assert answer.status_code == 200, answer.text
    info: dict[str, Any] = answer.json()
    return info


def mixed_jobs(page: Page) -> list[tuple[str, dict[str, Any]]]:
    """Fifty jobs created by the page (one at a time), as ``(expected outcome, job info)``:
    finished, failed, and ones the page may not see."""
    outcomes = [outcome for outcome, count in MIX.items() for _ in range(count)]
    kinds = ["fails" if outcome == "failed" else "slow" for outcome in outcomes]
    infos: list[dict[str, Any]] = page.evaluate(
        """async (kinds) => {
            const infos = [];
            for (const kind of kinds) infos.push(await Immortus.create('/jobs', {kind}));
            return infos;
        }""",
        kinds,
    )
    jobs: list[tuple[str, dict[str, Any]]] = []
    for outcome, created in zip(outcomes, infos, strict=True):
        info = dict(created)
        if outcome == "forged token":
            info["token"] = forged(info["token"])
        elif outcome == "unknown job":
            info["job_id"] = "no-such-job-" + info["job_id"]
        jobs.append((outcome, info))
    return jobs


def release(site: Site, jobs: list[tuple[str, dict[str, Any]]]) -> None:
    """Let every job run to its end (a forged token's job too: its thread must end)."""
    for outcome, info in jobs:
        if outcome == "unknown job":
            site.step(info["job_id"].removeprefix("no-such-job-"))
        else:
            site.step(info["job_id"], times=2 if outcome == "failed" else 1)


def posted(request: Request) -> dict[str, Any]:
    """The JSON body a request posted."""
    body = request.post_data_json
    assert isinstance(body, dict), request.post_data
    return body


def posted_ids(request: Request) -> list[str]:
    """The job ids a stream or batch request asked about, in order."""
    return [item["job_id"] for item in posted(request)["jobs"]]


def stream_requests(requests: list[Request], path: str = "/immortus/stream") -> list[Request]:
    return [request for request in requests if request.url.endswith(path)]


@pytest.fixture
def requests(page: Page) -> list[Request]:
    """Every request the page makes (with its method and body)."""
    seen: list[Request] = []

    def record(request: Request) -> None:  # Playwright needs a Python function, not a method
        seen.append(request)

    page.on("request", record)
    return seen


def test_fifty_jobs_share_one_connection(page: Page, site: Site, requests: list[Request]) -> None:
    with counting(site.url) as counter:
        page.goto(counter.url + "/")
        jobs = mixed_jobs(page)
        counter.restart_count()
        page.evaluate(
            "(infos) => infos.forEach((info) => harness.watch(info, {}))",
            [info for _, info in jobs],
        )
        page.wait_for_function(
            "() => harness.runs.every((run) => run.done || run.progress.length > 0)",
            timeout=TIMEOUT_MS,
        )
        release(site, jobs)
        page.wait_for_function("() => harness.runs.every((run) => run.done)", timeout=TIMEOUT_MS)
        most = counter.most

    runs: list[dict[str, Any]] = page.evaluate("() => harness.runs.map((r, k) => harness.state(k))")
    for (outcome, info), run in zip(jobs, runs, strict=True):
        if outcome in ("finished", "failed"):
            assert run["error"] is None, (outcome, run)
            assert (run["result"]["job_id"], run["result"]["status"]) == (info["job_id"], outcome)
            assert run["progress"][-1] == run["result"]
        else:
            assert (run["error"]["status"], run["error"]["body"]["status"]) == (404, "unknown")
            assert run["progress"] == []
    streams = stream_requests(requests)
    assert len(streams) == 1  # every job joined before the stream opened
    assert posted_ids(streams[0]) == [info["job_id"] for _, info in jobs]
    assert [r.url for r in requests if "/immortus/verify" in r.url] == []  # no poll at all
    assert most <= 2, f"the page held {most} connections to the server"


def test_fifty_widgets_share_one_connection(
    page: Page, site: Site, requests: list[Request]
) -> None:
    with counting(site.url) as counter:
        page.goto(counter.url + "/")
        jobs = mixed_jobs(page)
        counter.restart_count()
        page.evaluate(
            """(infos) => infos.forEach((info, index) => {
                const element = document.createElement('immortus-job');
                element.id = 'w' + index;
                element.job = info;
                document.body.append(element);
            })""",
            [info for _, info in jobs],
        )
        shown = """(states) => states.every((state, index) => document.querySelector('#w' + index)
            .shadowRoot.querySelector('.card').dataset.state === state)"""
        before = [
            "unknown" if outcome in ("forged token", "unknown job") else "started"
            for outcome, _ in jobs
        ]
        page.wait_for_function(shown, arg=before, timeout=TIMEOUT_MS)
        release(site, jobs)
        after = [
            state if state == "unknown" else outcome
            for state, (outcome, _) in zip(before, jobs, strict=True)
        ]
        page.wait_for_function(shown, arg=after, timeout=TIMEOUT_MS)
        most = counter.most

    assert len(stream_requests(requests)) == 1
    assert most <= 2, f"the page held {most} connections to the server"


def refuse(status: int, seen: list[str]) -> Any:
    """A route handler answering the stream request ``status``, as a server past its limits."""

    def handle(route: Route) -> None:
        seen.append(route.request.url)
        body = {"job_id": None, "error": {"type": "TooManyStreams", "message": "busy"}}
        route.fulfill(
            status=status,
            content_type="application/json",
            headers={"Retry-After": "1"},
            body=json.dumps(body),
        )

    return handle


@starlette_only
@pytest.mark.parametrize("status", [503, 429, 404])
def test_a_refused_stream_falls_back_to_one_batched_poll(
    page: Page, site: Site, requests: list[Request], status: int
) -> None:
    jobs = [create(site, "slow") for _ in range(10)]
    refused: list[str] = []
    page.goto(site.url + "/")
    page.route("**/immortus/stream", refuse(status, refused))
    page.evaluate(
        "(infos) => infos.forEach((info) => harness.watch(info, {polling: {interval: 20}}))", jobs
    )
    page.wait_for_function(
        "() => harness.runs.every((run) => run.progress.length > 0)", timeout=TIMEOUT_MS
    )
    for info in jobs:
        site.step(info["job_id"])
    page.wait_for_function("() => harness.runs.every((run) => run.done)", timeout=TIMEOUT_MS)

    runs: list[dict[str, Any]] = page.evaluate("() => harness.runs.map((r, k) => harness.state(k))")
    assert [run["result"]["status"] for run in runs] == ["finished"] * len(jobs)
    assert len(refused) == 1
    polls = [r for r in requests if r.url.endswith("/immortus/verify")]
    assert polls, "the jobs were never polled"
    assert [r.method for r in polls] == ["POST"] * len(polls)
    # One request asks about every open job: the first, all ten.
    assert posted_ids(polls[0]) == [info["job_id"] for info in jobs]
    assert [r.url for r in requests if "/immortus/verify/" in r.url] == []  # never one per job


@pytest.mark.parametrize("site", ["starlette", "flask"], indirect=True)
def test_a_stream_at_its_lifetime_is_reopened_with_the_open_jobs(
    page: Page, site: Site, requests: list[Request]
) -> None:
    early, late = create(site, "slow"), create(site, "slow")
    page.goto(site.url + "/")
    page.evaluate(
        "(infos) => infos.forEach((info) => harness.watch(info, {baseUrl: '/short'}))",
        [early, late],
    )
    page.wait_for_function("() => harness.runs.every((run) => run.progress.length > 0)")
    site.step(early["job_id"])
    page.wait_for_function("() => harness.runs[0].done", timeout=TIMEOUT_MS)
    streams = stream_requests(requests, "/short/stream")
    count = len(streams)
    wait_until(
        lambda: page.evaluate("0") == 0 and len(stream_requests(requests, "/short/stream")) > count,
        "the stream to be reopened after its lifetime",
    )
    site.step(late["job_id"])
    page.wait_for_function("() => harness.runs[1].done", timeout=TIMEOUT_MS)

    runs: list[dict[str, Any]] = page.evaluate("() => harness.runs.map((r, k) => harness.state(k))")
    assert [run["result"]["status"] for run in runs] == ["finished", "finished"]
    reopened = stream_requests(requests, "/short/stream")[-1]
    assert posted_ids(reopened) == [late["job_id"]]  # the ended job is dropped
    assert [r.url for r in requests if "/verify" in r.url] == []  # never fell back to polling
    # Each body is reported once, however often the stream was reopened.
    assert len(runs[1]["progress"]) == 2


@starlette_only
def test_aborting_one_job_leaves_the_others_followed(page: Page, site: Site) -> None:
    first, second = create(site, "slow"), create(site, "slow")
    page.goto(site.url + "/")
    page.evaluate("(infos) => infos.forEach((info) => harness.watch(info, {}))", [first, second])
    page.wait_for_function("() => harness.runs.every((run) => run.progress.length > 0)")
    page.evaluate("() => harness.runs[0].abort()")
    site.step(second["job_id"])
    page.wait_for_function("() => harness.runs[1].done", timeout=TIMEOUT_MS)
    site.step(first["job_id"])

    runs: list[dict[str, Any]] = page.evaluate("() => harness.runs.map((r, k) => harness.state(k))")
    assert runs[0]["error"]["name"] == "AbortError"
    assert runs[1]["result"]["status"] == "finished"


@starlette_only
def test_a_job_added_later_reopens_the_stream_with_every_open_job(
    page: Page, site: Site, requests: list[Request]
) -> None:
    first, second = create(site, "slow"), create(site, "slow")
    page.goto(site.url + "/")
    page.evaluate("(info) => harness.watch(info, {})", first)
    page.wait_for_function("() => harness.runs[0].progress.length > 0")
    page.evaluate("(info) => harness.watch(info, {})", second)
    page.wait_for_function("() => harness.runs[1].progress.length > 0")
    site.step(first["job_id"])
    site.step(second["job_id"])
    page.wait_for_function("() => harness.runs.every((run) => run.done)", timeout=TIMEOUT_MS)

    streams = stream_requests(requests)
    assert [posted_ids(s) for s in streams] == [
        [first["job_id"]],
        [first["job_id"], second["job_id"]],
    ]
    runs: list[dict[str, Any]] = page.evaluate("() => harness.runs.map((r, k) => harness.state(k))")
    assert len(runs[0]["progress"]) == 2  # the reopened stream's first frame is not reported again


@starlette_only
def test_cancel_answers_each_outcome(harness: Harness) -> None:
    running, ended = create(harness.site, "steps"), create(harness.site, "slow")
    harness.site.step(ended["job_id"])
    wait_until(lambda: verify(harness.site, ended)["completed"] is True, "the job to finish")
    cancel = """async (info) => {
        try {
            return await Immortus.cancel(info);
        } catch (error) {
            return {code: error.status, body: error.body, error: error.name};
        }
    }"""
    refused = harness.page.evaluate(cancel, {**running, "token": forged(running["token"])})
    asked = harness.page.evaluate(cancel, running)
    harness.site.step(running["job_id"])  # its next progress report sees the request, and stops
    wait_until(lambda: verify(harness.site, running)["status"] == "cancelled", "the cancel")
    too_late = harness.page.evaluate(cancel, ended)

    assert refused["error"] == "ImmortusError"
    assert (refused["code"], refused["body"]["status"]) == (404, "unknown")
    assert (asked["code"], asked["body"]["status"]) == (202, "started")
    assert (too_late["code"], too_late["body"]["status"]) == (409, "finished")


def verify(site: Site, info: dict[str, Any]) -> dict[str, Any]:
    """The job's verify body, asked by the test."""
    path = f"/immortus/verify/{info['job_id']}/{info['job_class']}?token={info['token']}"
    body: dict[str, Any] = site.get(path).json()
    return body


@starlette_only
def test_the_widget_cancels_through_the_default_route(harness: Harness) -> None:
    page = harness.page
    page.evaluate(
        """() => {
            const meta = document.createElement('meta');
            meta.name = 'csrf-token';
            meta.content = 'csrf-of-the-page';
            document.head.append(meta);
        }"""
    )
    info = create(harness.site, "steps")
    page.evaluate(
        """(info) => {
            const element = document.createElement('immortus-job');
            element.id = 'w';
            element.setAttribute('cancellable', '');
            element.job = info;
            document.body.append(element);
        }""",
        info,
    )
    button = page.locator("#w").get_by_role("button", name="Cancel")
    button.wait_for()
    with page.expect_request("**/immortus/cancel/**") as sent:
        button.click()
    page.locator("#w").get_by_role("button", name="Cancelling…").wait_for()
    harness.site.step(info["job_id"])  # the job sees the request at its next progress report
    page.wait_for_function(
        "() => document.querySelector('#w').shadowRoot.querySelector('.card').dataset.state"
        " === 'cancelled'",
        timeout=TIMEOUT_MS,
    )

    request = sent.value
    assert request.url == (
        f"{harness.site.url}/immortus/cancel/{info['job_id']}/{info['job_class']}"
    )
    assert request.headers["x-csrftoken"] == "csrf-of-the-page"
    assert request.headers["content-type"] == "application/json"
    assert posted(request)["token"] == info["token"]
    hidden = page.evaluate(
        "() => document.querySelector('#w').shadowRoot.querySelector('.actions').hidden"
    )
    assert hidden is True


@starlette_only
def test_a_malformed_job_rejects_alone(page: Page, site: Site, requests: list[Request]) -> None:
    good = create(site, "slow")
    page.goto(site.url + "/")
    page.evaluate(
        "(infos) => infos.forEach((info) => harness.watch(info, {}))",
        [{"job_id": "bad\nid", "job_class": good["job_class"]}, good],
    )
    page.wait_for_function("() => harness.runs[0].done", timeout=TIMEOUT_MS)
    page.wait_for_function("() => harness.runs[1].progress.length > 0", timeout=TIMEOUT_MS)
    site.step(good["job_id"])
    page.wait_for_function("() => harness.runs[1].done", timeout=TIMEOUT_MS)

    runs: list[dict[str, Any]] = page.evaluate("() => harness.runs.map((r, k) => harness.state(k))")
    assert (runs[0]["error"]["status"], runs[0]["error"]["body"]["error"]["type"]) == (
        400,
        "InvalidInput",
    )
    assert runs[1]["result"]["status"] == "finished"
    assert [posted_ids(s) for s in stream_requests(requests)] == [
        ["bad\nid", good["job_id"]],
        [good["job_id"]],
    ]
