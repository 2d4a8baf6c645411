"""Immortus.create then Immortus.verify in a real browser, against each framework's site."""

from __future__ import annotations

import pytest

from tests.browser.conftest import Harness
from tests.browser.sites.jobs import FAILURE_MESSAGE

FAST = {"interval": 20}
TRANSPORTS = ("auto", "sse", "polling")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_job_reports_each_step_then_its_final_state(harness: Harness, transport: str) -> None:
    run = harness.start("steps", transport=transport, polling=FAST)
    job_id = harness.job_id(run)
    for current in (1, 2, 3):
        harness.site.step(job_id)
        harness.wait_progress(run, current)
    harness.site.step(job_id)
    state = harness.wait_done(run)

    assert state["error"] is None
    result = state["result"]
    assert result["job_id"] == job_id
    assert result["job_class"] == "browser.steps"
    assert (result["status"], result["completed"], result["success"]) == ("finished", True, True)
    assert result["progress"]["current"] == 3
    # Both progress callbacks saw every body, the final one last and once (a bar bound to
    # them ends at 100 %).
    for reported in (state["progress"], state["thenProgress"]):
        assert [body["completed"] for body in reported] == [False] * (len(reported) - 1) + [True]
        assert reported[-1] == result
        assert {body["status"] for body in reported[:-1]} == {"started"}
    messages = [body["progress"]["message"] for body in state["progress"] if body["progress"]]
    # In order; polling reports a body at each answer, so a step may be seen more than once.
    assert list(dict.fromkeys(messages)) == ["step 1", "step 2", "step 3"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_failing_job_resolves_with_its_error(harness: Harness, transport: str) -> None:
    run = harness.start("fails", transport=transport, polling=FAST)
    job_id = harness.job_id(run)
    harness.site.step(job_id)
    harness.wait_progress(run, 60)
    harness.site.step(job_id)
    state = harness.wait_done(run)

    assert state["error"] is None
    result = state["result"]
    assert (result["status"], result["completed"], result["success"]) == ("failed", True, False)
    assert result["error"]["type"].endswith("JobFailed")
    assert result["error"]["message"] == FAILURE_MESSAGE
    assert result["progress"]["percent"] == 60
    assert state["progress"][-1] == state["thenProgress"][-1] == result


def forged(token: str) -> str:
    """``token`` with its MAC's last character changed."""
    return token[:-1] + ("A" if token[-1] != "A" else "B")


@pytest.mark.parametrize("case", ["unknown job", "forged token", "missing token"])
def test_a_job_it_may_not_see_rejects_with_404(harness: Harness, case: str) -> None:
    info = harness.page.evaluate("() => Immortus.create('/jobs', {kind: 'slow'})")
    job_id = info["job_id"]
    if case == "unknown job":
        info["job_id"] = "no-such-job"
    elif case == "forged token":
        info["token"] = forged(info["token"])
    else:
        del info["token"]
    retry = {"limit": 2, "base": 10}
    runs = {t: harness.watch(info, transport=t, polling=FAST, retry=retry) for t in TRANSPORTS}
    states = {transport: harness.wait_done(run) for transport, run in runs.items()}
    harness.site.step(job_id)

    for transport, state in states.items():
        error = state["error"]
        assert error is not None, (transport, state)
        assert (error["name"], error["immortusError"]) == ("ImmortusError", True), transport
        assert error["status"] == 404, transport
        assert error["body"]["status"] == "unknown", transport
        assert state["progress"] == [], transport


def test_auto_transport_streams_and_never_polls(harness: Harness) -> None:
    run = harness.start("slow", polling=FAST)
    harness.wait_reports(run, 1)  # the stream's first frame: the job has started
    harness.site.step(harness.job_id(run))
    state = harness.wait_done(run)

    assert state["result"]["status"] == "finished"
    assert len(harness.requested("/immortus/stream")) == 1  # the page's one shared stream
    assert harness.requested("/immortus/verify") == []


def test_polling_never_opens_a_stream(harness: Harness) -> None:
    run = harness.start("slow", transport="polling", polling=FAST)
    harness.wait_reports(run, 3)
    harness.site.step(harness.job_id(run))
    state = harness.wait_done(run)

    assert state["result"]["status"] == "finished"
    assert len(harness.requested("/immortus/verify")) >= 4  # batch polls
    assert harness.requested("/immortus/stream") == []


def test_verify_job_url_polls_the_custom_endpoint(harness: Harness) -> None:
    info = harness.page.evaluate("() => Immortus.create('/jobs', {kind: 'slow'})")
    run = harness.watch({"verify_job_url": f"/custom/{info['job_id']}"}, polling=FAST)
    harness.wait_reports(run, 2)
    harness.site.step(info["job_id"])
    state = harness.wait_done(run)

    assert state["result"] == {
        "job_id": info["job_id"],
        "completed": True,
        "success": True,
        "state": "finished",
        "custom": True,
    }
    assert state["progress"][0]["completed"] is False
    assert harness.requested("/immortus/") == [harness.site.url + "/immortus/immortus.js"]


def test_a_custom_endpoint_answering_404_rejects(harness: Harness) -> None:
    run = harness.watch({"verify_job_url": "/custom/no-such-job"}, polling=FAST)
    state = harness.wait_done(run)

    assert state["error"]["status"] == 404
    assert state["error"]["body"]["custom"] is True


def test_batch_answers_every_job_in_order(harness: Harness) -> None:
    bodies = harness.page.evaluate(
        """async () => {
            const first = await Immortus.create('/jobs', {kind: 'slow'});
            const second = await Immortus.create('/jobs', {kind: 'steps'});
            const forged = {job_id: first.job_id, job_class: first.job_class, token: 'v1.1.x'};
            return Immortus.batch([second, first, forged]);
        }"""
    )

    assert [body["job_class"] for body in bodies] == [
        "browser.steps",
        "browser.slow",
        "browser.slow",
    ]
    assert [body["status"] for body in bodies] == ["started", "started", "unknown"]
    assert bodies[1]["job_id"] == bodies[2]["job_id"]
