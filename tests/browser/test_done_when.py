"""A page written from the docs follows 50 jobs and a 1 000-job group to their ends, in chromium.

On Starlette, Flask and Django (the ``widget_*`` sites, ``tests/browser/sites/done_when.py``):
the page is the framework's helpers and nothing else (the script tag, one ``<immortus-job>``
per job, one ``<immortus-group>``), no JavaScript of its own. Jobs finish, fail, retry with a
countdown the card shows, are cancelled from their card's button, are lost or unknown; the
group's 1 000 members are recorded through the public lifecycle API. Every card must reach its
final state over at most two connections to the server, and axe-core must find nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser

from tests.browser.conftest import Site
from tests.browser.connections import counting
from tests.browser.sites.done_when import GROUP_SIZE
from tests.browser.sites.widget_pages import USER_COOKIE

pytestmark = pytest.mark.parametrize(
    "site", ["widget_starlette", "widget_flask", "widget_django"], indirect=True
)

AXE = Path(__file__).with_name("vendor") / "axe.min.js"
#: Generous: a loaded 2-core machine records 1 000 members in a few seconds.
TIMEOUT_MS = 60_000
#: The state each kind of job's card ends in.
FINAL = {
    "finished": "finished",
    "failed": "failed",
    "retried": "finished",
    "cancelled": "cancelled",
    "lost": "lost",
    "unknown": "unknown",
}
#: Every card's state, by job id, and the group's card: state and line.
_CARDS = """() => {
  const cards = {};
  for (const element of document.querySelectorAll('immortus-job')) {
    const root = element.shadowRoot;
    cards[element.getAttribute('job-id')] = root && root.querySelector('.card').dataset.state;
  }
  const group = document.querySelector('immortus-group').shadowRoot;
  return {cards, group: group && {state: group.querySelector('.card').dataset.state,
    message: group.querySelector('.message').textContent,
    percent: group.querySelector('.percent').textContent}};
}"""


def _retry_text(job_id: str) -> str:
    return (
        f"() => document.querySelector('immortus-job[job-id=\"{job_id}\"]').shadowRoot"
        ".querySelector('[data-fact=retry] dd').textContent"
    )


def test_fifty_jobs_and_a_group_reach_their_ends_on_two_connections(
    browser: Browser, site: Site
) -> None:
    scene: dict[str, Any] = httpx.post(f"{site.url}/imports", timeout=60).json()
    jobs = scene["jobs"]
    assert len(jobs) == 50
    by_ending: dict[str, list[str]] = {}
    for job in jobs:
        by_ending.setdefault(job["ending"], []).append(job["job_id"])

    with counting(site.url) as counter:
        context = browser.new_context()
        context.set_default_timeout(TIMEOUT_MS)
        context.add_cookies([{"name": USER_COOKIE, "value": "alice", "url": counter.url}])
        try:
            page = context.new_page()
            page.goto(f"{counter.url}/imports/{scene['id']}")
            assert page.evaluate("() => document.querySelectorAll('script').length") == 1

            # Every card has its first answer; the retry's countdown is on its card.
            page.wait_for_function(
                "() => [...document.querySelectorAll('immortus-job, immortus-group')]"
                ".every((element) => element.body !== null)"
            )
            (retried,) = by_ending["retried"]
            page.wait_for_function(f"() => /^in \\d+ s$/.test(({_retry_text(retried)})())")
            assert re.fullmatch(r"in \d+ s", page.evaluate(_retry_text(retried)))

            # The cancel is clicked in its card.
            (cancelled,) = by_ending["cancelled"]
            with page.expect_response(
                lambda answer: f"/cancel/{cancelled}/" in answer.url
            ) as asked:
                page.locator(f'immortus-job[job-id="{cancelled}"] button.cancel').click()
            assert asked.value.status == 202  # asked to stop: it still runs

            finished = httpx.post(f"{site.url}/imports/{scene['id']}/finish", timeout=30)
            assert finished.status_code == 200
            expected = {job["job_id"]: FINAL[job["ending"]] for job in jobs}
            page.wait_for_function(
                f"""(expected) => {{
                  const seen = ({_CARDS})();
                  return Object.keys(expected).every((id) => seen.cards[id] === expected[id])
                    && seen.group && seen.group.state === 'finished';
                }}""",
                arg=expected,
            )
            seen = page.evaluate(_CARDS)
            assert seen["cards"] == expected
            assert seen["group"] == {
                "state": "finished",
                "message": f"{GROUP_SIZE} / {GROUP_SIZE} done",
                "percent": "100 %",
            }
            most = counter.most

            page.add_script_tag(path=str(AXE))
            violations = page.evaluate(
                "async () => (await axe.run(document, {resultTypes: ['violations']}))"
                ".violations.map((v) => ({id: v.id, nodes: v.nodes.map((n) => n.target)}))"
            )
        finally:
            context.close()
    assert most <= 2, f"the page held {most} connections at once"
    assert violations == []
