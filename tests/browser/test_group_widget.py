"""``<immortus-group>`` in chromium: its card in each state, its accessibility, and a live group.

The cards are shown fixed group bodies (made by :class:`immortus.groups.GroupStatus`, as a
store answers); the live test follows a real group on the widget sites with
``Immortus.mountGroup`` and checks its events.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import TIMEOUT_MS, Site
from tests.browser.widget_bodies import GROUP_ID, GROUP_STATES, group_bodies, show_bodies

AXE = Path(__file__).with_name("vendor") / "axe.min.js"

READ = """(selector) => {
  const root = document.querySelector(selector).shadowRoot;
  const bar = root.querySelector('.bar');
  const error = root.querySelector('.error');
  return {
    state: root.querySelector('.card').dataset.state,
    badge: root.querySelector('.badge').textContent,
    title: root.querySelector('.title').textContent,
    id: root.querySelector('.id').textContent,
    percent: root.querySelector('.percent').textContent,
    message: root.querySelector('.message').textContent,
    counts: [...root.querySelectorAll('.count')].map((count) => count.textContent),
    error: error.hidden ? null : error.textContent,
    valuenow: bar.getAttribute('aria-valuenow'),
    valuetext: bar.getAttribute('aria-valuetext'),
    role: bar.getAttribute('role'),
  };
}"""


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page of its own: the cards need no server."""
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


def show_every_group_state(page: Page, theme: str = "light") -> None:
    """A page with one group widget per state, each shown a fixed body (no server involved)."""
    show_bodies(
        page,
        "immortus-group",
        group_bodies(),
        title="groups",
        heading="Imports",
        label="Import the ledger",
        theme=theme,
    )


def read(page: Page, selector: str) -> dict[str, Any]:
    seen: dict[str, Any] = page.evaluate(READ, selector)
    return seen


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_group_state_renders_and_axe_finds_no_violation(page: Page, theme: str) -> None:
    show_every_group_state(page, theme)
    for state in GROUP_STATES:
        seen = read(page, f"#{state}")
        assert (seen["state"], seen["badge"], seen["role"]) == (state, state, "progressbar")
        assert (seen["title"], seen["id"]) == ("Import the ledger", GROUP_ID)
    started = read(page, "#started")
    assert (started["percent"], started["message"]) == ("38 %", "380 / 1000 done")
    assert started["counts"] == ["created 612", "started 8", "finished 379", "failed 1"]
    assert started["valuenow"] == "38"
    assert started["valuetext"] == "38 %, 380 / 1000 done, started"
    assert started["error"] == "first error, BadRow: row 17: the date is not a date"
    assert read(page, "#created")["error"] is None
    failed = read(page, "#failed")
    assert failed["counts"] == ["finished 994", "failed 4", "cancelled 2"]
    assert failed["message"] == "1000 / 1000 done"
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']}))"
        ".violations.map((v) => ({id: v.id, nodes: v.nodes.map((n) => n.target)}))"
    )
    assert violations == []


def test_the_group_card_keeps_the_job_cards_rules(page: Page) -> None:
    """Reduced motion, parts, custom properties, fallback text: as the job widget's."""
    page.set_content(
        "<!doctype html><html lang=en><title>g</title><body>"
        "<immortus-group group-id='import-7'>Group import-7 — waiting</immortus-group></body>"
    )
    assert page.inner_text("immortus-group") == "Group import-7 — waiting"  # before the script
    page.emulate_media(reduced_motion="reduce")
    show_every_group_state(page)
    style = page.evaluate(
        """() => {
            const fill = document.querySelector('#started').shadowRoot.querySelector('.fill');
            const style = getComputedStyle(fill);
            return [style.animationName, style.transitionDuration];
        }"""
    )
    assert style == ["none", "0s"]
    page.add_style_tag(
        content="#finished { --immortus-finished: rgb(1, 2, 3); }"
        " #failed::part(badge) { color: rgb(4, 5, 6); }"
        " #started::part(count) { color: rgb(7, 8, 9); }"
    )
    colours = page.evaluate(
        """() => {
            const of = (id, selector) => getComputedStyle(
                document.querySelector(id).shadowRoot.querySelector(selector)).color;
            return [of('#finished', '.badge'), of('#failed', '.badge'), of('#started', '.count')];
        }"""
    )
    assert colours == ["rgb(1, 2, 3)", "rgb(4, 5, 6)", "rgb(7, 8, 9)"]


def test_a_state_change_is_announced(page: Page) -> None:
    show_every_group_state(page)
    bodies = {body["status"]: body for body in group_bodies()}
    page.evaluate("(body) => document.querySelector('#created').show(body)", bodies["started"])
    announced = page.evaluate(
        "() => document.querySelector('#created').shadowRoot.querySelector('[role=status]')"
        ".textContent"
    )
    assert announced == "Import the ledger: started, 380 / 1000 done"


@pytest.mark.parametrize("site", ["widget_starlette"], indirect=True)
def test_mount_group_follows_a_group_and_fires_its_events(browser: Browser, site: Site) -> None:
    scene: dict[str, Any] = httpx.post(f"{site.url}/imports", timeout=60).json()
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        html = httpx.get(f"{site.url}/imports/{scene['id']}", timeout=10).text
        token = html.split(f'group-id="{scene["group_id"]}" token="', 1)[1].split('"', 1)[0]
        page.goto(f"{site.url}/pages/blank")
        page.add_script_tag(url="/immortus/immortus.js")
        page.evaluate(
            """(group) => {
                window.seen = [];
                const holder = document.body.appendChild(document.createElement('div'));
                const note = (kind) => (event) => seen.push([kind, event.detail]);
                holder.addEventListener('immortus:progress', note('progress'));
                holder.addEventListener('immortus:done', note('done'));
                Immortus.mountGroup(holder, group, {label: 'Import'});
            }""",
            {"group_id": scene["group_id"], "token": token},
        )
        page.wait_for_function("() => seen.length > 0")
        assert httpx.post(f"{site.url}/imports/{scene['id']}/finish", timeout=30).status_code == 200
        page.wait_for_function("() => seen.some(([kind]) => kind === 'done')", timeout=60_000)
        seen = page.evaluate("() => seen")
        assert [kind for kind, _ in seen].count("done") == 1
        kind, last = seen[-1]
        assert (kind, last["status"], last["completed"], last["total"]) == (
            "done",
            "finished",
            1000,
            1000,
        )
        assert seen[-2] == ["progress", last]  # the final body is a progress too, as for jobs
    finally:
        page.close()
