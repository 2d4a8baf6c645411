"""The ``<immortus-job>`` widget in chromium: following, events, cancel, theming, accessibility."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import TIMEOUT_MS, Harness, Site
from tests.browser.sites.jobs import FAILURE_MESSAGE
from tests.browser.widget_bodies import STATES, bodies, show_bodies

pytestmark = pytest.mark.parametrize("site", ["starlette"], indirect=True)

AXE = Path(__file__).with_name("vendor") / "axe.min.js"

# What the test reads of a widget: its shadow tree, as the user sees it.
READ = """(selector) => {
    const element = document.querySelector(selector);
    const root = element.shadowRoot;
    const one = (css) => root.querySelector(css);
    const facts = {};
    root.querySelectorAll('[data-fact]').forEach((row) => {
        if (!row.hidden) facts[row.dataset.fact] = row.querySelector('dd').textContent;
    });
    const bar = one('[role=progressbar]');
    return {
        state: one('.card').dataset.state,
        badge: one('.badge').textContent,
        valuenow: bar.getAttribute('aria-valuenow'),
        valuetext: bar.getAttribute('aria-valuetext'),
        label: bar.getAttribute('aria-label'),
        percent: one('.percent').textContent,
        message: one('.message').textContent,
        error: one('.error').hidden ? null : one('.error').textContent,
        facts,
        announced: one('[aria-live=polite]').textContent,
        cancel: one('.actions').hidden ? null : one('.cancel').textContent,
        title: one('.title').textContent,
    };
}"""

# Record every widget event reaching the document (they bubble, and are composed).
LISTEN = """() => {
    window.widgetEvents = [];
    const types = ['immortus:progress', 'immortus:done', 'immortus:failed', 'immortus:error'];
    for (const type of types) {
        document.addEventListener(type, (event) => window.widgetEvents.push({
            type, target: event.target.id, composed: event.composed,
            status: event.detail && event.detail.status, detail: event.detail}));
    }
}"""


def read(page: Page, selector: str = "immortus-job") -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate(READ, selector)
    return state


def events(page: Page) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate("() => window.widgetEvents")
    return found


def wait_state(page: Page, state: str, selector: str = "immortus-job") -> dict[str, Any]:
    page.wait_for_function(
        "([s, state]) => document.querySelector(s).shadowRoot"
        "?.querySelector('.card').dataset.state === state",
        arg=[selector, state],
        timeout=TIMEOUT_MS,
    )
    return read(page, selector)


def add_widget(harness: Harness, kind: str, **attributes: str) -> dict[str, Any]:
    """Create a job of ``kind`` and put an ``<immortus-job id=w>`` following it on the page."""
    info: dict[str, Any] = harness.page.evaluate("(k) => Immortus.create('/jobs', {kind: k})", kind)
    attributes = {
        "id": "w",
        "job-id": info["job_id"],
        "job-class": info["job_class"],
        "token": info["token"],
        **attributes,
    }
    harness.page.evaluate(
        """(attributes) => {
            const element = document.createElement('immortus-job');
            for (const [name, value] of Object.entries(attributes)) {
                element.setAttribute(name, value);
            }
            element.textContent = 'Job ' + attributes['job-id'] + ' — waiting';
            document.body.append(element);
        }""",
        attributes,
    )
    return info


@pytest.fixture
def widget_page(harness: Harness) -> Harness:
    harness.page.evaluate(LISTEN)
    return harness


def test_the_widget_follows_a_job_to_the_end(widget_page: Harness) -> None:
    page = widget_page.page
    info = add_widget(widget_page, "steps", label="Import rows", interval="20")
    job_id = info["job_id"]
    seen = wait_state(page, "started")
    assert (seen["badge"], seen["title"], seen["label"]) == (
        "started",
        "Import rows",
        "Import rows progress",
    )
    widget_page.site.step(job_id)
    page.wait_for_function(
        "() => document.querySelector('#w').shadowRoot.querySelector('.percent').textContent"
        " === '33 %'",
        timeout=TIMEOUT_MS,
    )
    seen = read(page)
    assert (seen["valuenow"], seen["valuetext"], seen["message"]) == (
        "33",
        "33 %, started, step 1",
        "step 1",
    )
    assert seen["facts"]["attempts"] == "1"
    assert "started" in seen["facts"]
    widget_page.site.step(job_id, times=3)
    seen = wait_state(page, "finished")

    assert (seen["badge"], seen["valuenow"], seen["percent"]) == ("finished", "100", "100 %")
    assert seen["announced"] == "Import rows: finished"
    assert "finished" in seen["facts"]
    assert "duration" in seen["facts"]
    assert seen["error"] is None
    page.wait_for_function("() => window.widgetEvents.some((e) => e.type === 'immortus:done')")
    got = events(page)
    assert [e["type"] for e in got if e["type"] != "immortus:progress"] == ["immortus:done"]
    assert got[-1]["type"] == "immortus:done"
    assert got[-2]["type"] == "immortus:progress"
    assert got[-2]["detail"] == got[-1]["detail"]  # the final body reaches progress too
    assert got[-1]["status"] == "finished"
    assert all(e["target"] == "w" and e["composed"] is True for e in got)


def test_a_failing_job_shows_its_error(widget_page: Harness) -> None:
    page = widget_page.page
    info = add_widget(widget_page, "fails", interval="20")
    wait_state(page, "started")
    widget_page.site.step(info["job_id"], times=2)
    seen = wait_state(page, "failed")

    assert seen["error"] == f"JobFailed: {FAILURE_MESSAGE}"
    assert seen["percent"] == "60 %"
    assert seen["title"] == "browser.fails"  # no label: the job class
    assert seen["announced"] == f"browser.fails: failed ({FAILURE_MESSAGE})"
    page.wait_for_function("() => window.widgetEvents.some((e) => e.type === 'immortus:failed')")
    assert events(page)[-1]["status"] == "failed"


def test_a_job_the_page_may_not_see_reads_unknown(widget_page: Harness) -> None:
    page = widget_page.page
    info = add_widget(widget_page, "slow", token="v1.1.forged")  # noqa: S106
    seen = wait_state(page, "unknown")

    assert seen["message"] == "no record of this job"
    page.wait_for_function("() => window.widgetEvents.some((e) => e.type === 'immortus:error')")
    error = events(page)[-1]
    assert (error["type"], error["status"]) == ("immortus:error", "unknown")
    assert error["detail"]["job_id"] == info["job_id"]
    widget_page.site.step(info["job_id"])


def test_cancel_posts_both_tokens_and_the_widget_ends_cancelled(widget_page: Harness) -> None:
    page = widget_page.page
    page.evaluate(
        """() => {
            const meta = document.createElement('meta');
            meta.name = 'csrf-token';
            meta.content = 'csrf-of-the-page';
            document.head.append(meta);
        }"""
    )
    info = add_widget(widget_page, "slow")
    page.evaluate(
        "(id) => document.querySelector('#w').setAttribute('cancel-url', '/cancel/' + id)",
        info["job_id"],
    )
    seen = wait_state(page, "started")
    assert seen["cancel"] == "Cancel"
    # Keyboard: the cancel button is the page's first stop, and Enter presses it.
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "() => document.activeElement.id + ' '"
        " + document.activeElement.shadowRoot.activeElement.textContent"
    )
    assert focused == "w Cancel"
    with page.expect_request("**/cancel/**") as sent:
        page.keyboard.press("Enter")
    seen = wait_state(page, "cancelled")

    assert sent.value.headers["x-csrf-token"] == "csrf-of-the-page"
    assert sent.value.post_data_json == {
        "job_id": info["job_id"],
        "job_class": info["job_class"],
        "token": info["token"],
    }
    assert seen["cancel"] is None
    assert seen["announced"] == "browser.slow: cancelled"
    page.wait_for_function("() => window.widgetEvents.some((e) => e.type === 'immortus:failed')")
    widget_page.site.step(info["job_id"])


def test_mount_follows_a_job_in_any_element(widget_page: Harness) -> None:
    page = widget_page.page
    info = page.evaluate("() => Immortus.create('/jobs', {kind: 'slow'})")
    tag = page.evaluate(
        """(info) => {
            const box = document.createElement('div');
            box.id = 'box';
            box.textContent = 'loading…';
            document.body.append(box);
            const widget = Immortus.mount(box, info, {label: 'Mounted', interval: 20});
            widget.id = 'm';
            return [widget.localName, box.children.length, box.textContent];
        }""",
        info,
    )
    assert tag == ["immortus-job", 1, ""]
    wait_state(page, "started", "#m")
    widget_page.site.step(info["job_id"])
    seen = wait_state(page, "finished", "#m")
    assert seen["title"] == "Mounted"


def test_the_fallback_text_shows_until_the_script_runs(page: Page) -> None:
    page.set_content("<immortus-job job-id='7f0c'>Job 7f0c — waiting</immortus-job>")
    assert page.inner_text("immortus-job") == "Job 7f0c — waiting"
    assert page.evaluate("() => document.querySelector('immortus-job').shadowRoot") is None


def show_every_state(page: Page, theme: str = "light") -> None:
    """A page with one widget per state, each shown a fixed body (no server involved)."""
    show_bodies(
        page,
        "immortus-job",
        bodies(),
        title="widgets",
        heading="Jobs",
        label="Build the report",
        theme=theme,
        cancel_url="/cancel",
    )


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_state_renders_and_axe_finds_no_violation(page: Page, theme: str) -> None:
    show_every_state(page, theme)
    for state in STATES:
        seen = read(page, f"#{state}")
        assert (seen["state"], seen["badge"]) == (state, state)
    retrying = read(page, "#retrying")["facts"]
    assert retrying["retry"].startswith("in ")
    assert read(page, "#lost")["message"] == "its worker stopped; no retry is coming"
    page.add_script_tag(path=str(AXE))
    assert axe_violations(page) == []
    # axe does look inside the shadow roots: grey on grey is caught there.
    page.evaluate(
        "() => document.querySelector('#started').style.cssText ="
        " '--immortus-panel: #808080; --immortus-ink: #909090'"
    )
    assert [violation["id"] for violation in axe_violations(page)] == ["color-contrast"]


def axe_violations(page: Page) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map((v) => ({id: v.id, nodes: v.nodes.map((n) => n.target)}))"
    )
    return found


def test_reduced_motion_stops_the_bar(page: Page) -> None:
    page.emulate_media(reduced_motion="reduce")
    show_every_state(page)
    style = page.evaluate(
        """() => {
            const widget = document.querySelector('#started');
            const style = getComputedStyle(widget.shadowRoot.querySelector('.fill'));
            return [style.animationName, style.transitionDuration];
        }"""
    )
    assert style == ["none", "0s"]
    page.emulate_media(reduced_motion="no-preference")
    moving = page.evaluate(
        "() => getComputedStyle(document.querySelector('#started').shadowRoot"
        ".querySelector('.fill')).animationName"
    )
    assert moving == "stripes"


def test_the_page_css_stays_out_and_themes_come_in(page: Page) -> None:
    show_every_state(page)
    page.add_style_tag(
        content="span, p, div { color: rgb(255, 0, 0) !important; }"
        " #finished { --immortus-finished: rgb(1, 2, 3); }"
        " #failed::part(badge) { color: rgb(4, 5, 6); }"
    )
    colours = page.evaluate(
        """() => Object.fromEntries(['started', 'finished', 'failed'].map((id) => {
            const badge = document.querySelector('#' + id).shadowRoot.querySelector('.badge');
            return [id, getComputedStyle(badge).color];
        }))"""
    )
    assert colours == {
        "started": "rgb(37, 99, 235)",
        "finished": "rgb(1, 2, 3)",
        "failed": "rgb(4, 5, 6)",
    }


def test_the_time_left_comes_from_the_progress_rate(page: Page) -> None:
    show_every_state(page)
    page.evaluate(
        """async () => {
            const element = document.querySelector('#started');
            const body = element.body;
            element.show({...body, progress: {...body.progress, percent: 20}});
            await new Promise((resolve) => setTimeout(resolve, 200));
            element.show({...body, progress: {...body.progress, percent: 40}});
        }"""
    )
    left = read(page, "#started")["facts"]["eta"]
    assert left.startswith("about ")
    assert left.endswith(" s")
    # The rate starts again with each attempt, and no time left shows once the job ended.
    assert "eta" not in read(page, "#finished")["facts"]


def test_a_refused_cancel_says_so_and_the_button_comes_back(widget_page: Harness) -> None:
    page = widget_page.page
    info = add_widget(widget_page, "slow", **{"cancel-url": "/nowhere"})
    wait_state(page, "started")
    page.locator("#w").get_by_role("button", name="Cancel").click()
    page.wait_for_function("() => window.widgetEvents.some((e) => e.type === 'immortus:error')")
    seen = read(page)

    assert seen["message"] == "could not cancel: the server answered HTTP 404"
    assert seen["cancel"] == "Cancel"
    assert (
        page.evaluate(
            "() => document.querySelector('#w').shadowRoot.querySelector('.cancel').disabled"
        )
        is False
    )
    assert seen["state"] == "started"  # it is still followed
    widget_page.site.step(info["job_id"])
    wait_state(page, "finished")


def test_a_job_set_before_the_script_ran_is_followed(page: Page, site: Site) -> None:
    page.goto(f"{site.url}/pages/blank")
    info = page.evaluate(
        """async () => {
            const answer = await fetch('/jobs', {method: 'POST', body: '{"kind": "slow"}'});
            const info = await answer.json();
            const element = document.createElement('immortus-job');
            element.job = info;   // no class yet: an own property of a plain element
            document.body.append(element);
            return info;
        }"""
    )
    page.add_script_tag(url="/immortus/immortus.js")
    wait_state(page, "started")
    site.step(info["job_id"])
    assert wait_state(page, "finished")["title"] == "browser.slow"
    # It went through the element's own `job`: the attributes say which job it follows.
    assert (
        page.evaluate("() => document.querySelector('immortus-job').getAttribute('job-id')")
        == (info["job_id"])
    )


def test_a_custom_verify_endpoint_is_polled(widget_page: Harness) -> None:
    page = widget_page.page
    info = page.evaluate("() => Immortus.create('/jobs', {kind: 'slow'})")
    page.evaluate(
        """(id) => {
            const element = document.createElement('immortus-job');
            element.id = 'w';
            element.setAttribute('verify-url', '/custom/' + id);
            element.setAttribute('interval', '20');
            document.body.append(element);
        }""",
        info["job_id"],
    )
    page.wait_for_function("() => window.widgetEvents.length > 0")
    widget_page.site.step(info["job_id"])
    seen = wait_state(page, "finished")  # told by `completed` and `success` alone

    assert seen["title"] == "Job"
    assert seen["valuenow"] == "100"
    assert events(page)[-1]["type"] == "immortus:done"
