"""Pages whose server renders ``<immortus-job>`` with the helpers, followed in chromium.

One site per framework (``tests/browser/sites/widget_*``): Starlette with ``Jinja2Templates``,
Flask with ``render_template_string``, Django with ``{% load immortus %}``. Each page is the
script tag and the element its helper wrote, and no JavaScript of its own; its token is bound
to the ``user`` cookie by the same function the framework's routes read it with.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext

from tests.browser.conftest import TIMEOUT_MS, Site
from tests.browser.sites.widget_pages import LABEL, USER_COOKIE

pytestmark = pytest.mark.parametrize(
    "site", ["widget_starlette", "widget_flask", "widget_django"], indirect=True
)

USER = "alice"


class Tags(HTMLParser):
    """The start tags of a page with their attributes, and the text of its ``immortus-job``."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inside = False
        self.fallback = ""
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.inside = tag == "immortus-job"

    def handle_endtag(self, tag: str) -> None:
        self.inside = self.inside and tag != "immortus-job"

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.fallback += data

    def all(self, name: str) -> list[dict[str, str | None]]:
        return [attributes for tag, attributes in self.tags if tag == name]


def context_of(browser: Browser, site: Site, **options: Any) -> BrowserContext:
    """A browser context holding the ``user`` cookie of ``site``."""
    context = browser.new_context(**options)
    context.set_default_timeout(TIMEOUT_MS)
    context.add_cookies([{"name": USER_COOKIE, "value": USER, "url": site.url}])
    return context


def card_state(context: BrowserContext, url: str, state: str) -> dict[str, str]:
    """Open ``url`` in ``context``; wait until its widget's card reads ``state``."""
    page = context.pages[0] if context.pages else context.new_page()
    if page.url != url:
        page.goto(url)
    page.wait_for_function(
        "(state) => document.querySelector('immortus-job').shadowRoot"
        "?.querySelector('.card')?.dataset.state === state",
        arg=state,
        timeout=TIMEOUT_MS,
    )
    seen: dict[str, str] = page.evaluate(
        """() => {
            const root = document.querySelector('immortus-job').shadowRoot;
            return {badge: root.querySelector('.badge').textContent,
                    title: root.querySelector('.title').textContent,
                    percent: root.querySelector('.percent').textContent};
        }"""
    )
    return seen


def test_a_rendered_widget_follows_its_job_to_finished(browser: Browser, site: Site) -> None:
    cookies = {USER_COOKIE: USER}
    job = httpx.post(f"{site.url}/jobs", json={"kind": "steps"}, timeout=10).json()
    url = f"{site.url}/report/{job['job_id']}/{job['job_class']}"

    # The HTML: the client's script tag, one element with the signed token, no other script.
    page_html = httpx.get(url, cookies=cookies, timeout=10)
    assert page_html.status_code == 200, page_html.text
    tags = Tags(page_html.text)
    assert tags.all("script") == [{"src": "/immortus/immortus.js", "defer": None}]
    (widget,) = tags.all("immortus-job")
    assert (widget["job-id"], widget["job-class"], widget["label"]) == (
        job["job_id"],
        job["job_class"],
        LABEL,
    )
    assert tags.fallback.strip() == f"{LABEL} — waiting"

    # The token is bound to the cookie's user, as the routes read it.
    verify = f"{site.url}/immortus/verify/{job['job_id']}/{job['job_class']}"
    params = {"token": widget["token"]}
    assert httpx.get(verify, params=params, cookies=cookies, timeout=10).status_code == 200
    assert httpx.get(verify, params=params, timeout=10).status_code == 404

    # Before (without) the script: the fallback text.
    still = context_of(browser, site, java_script_enabled=False)
    try:
        page = still.new_page()
        page.goto(url)
        assert page.inner_text("immortus-job") == f"{LABEL} — waiting"
    finally:
        still.close()

    # With it: the card follows the job to its end.
    live = context_of(browser, site)
    try:
        seen = card_state(live, url, "started")
        assert (seen["badge"], seen["title"]) == ("started", LABEL)
        site.step(job["job_id"], times=4)
        seen = card_state(live, url, "finished")
        assert (seen["badge"], seen["percent"]) == ("finished", "100 %")
    finally:
        live.close()
