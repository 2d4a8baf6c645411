"""The dashboard in a real chromium: zero axe violations, usable at 390 px, updates live.

Screenshots go to ``docs/images/dashboard-*.png`` when ``IMMORTUS_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Page, sync_playwright
from starlette.applications import Starlette
from starlette.requests import Request

from immortus.status import Progress
from immortus.stores.memory import MemoryStore
from immortus.transitions import Event, EventKind
from immortus.web.dashboard.starlette import dashboard_routes
from tests.dashboard.conftest import HOSTILE_ID
from tests.web.servers import serve_asgi

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "tests" / "browser" / "vendor" / "axe.min.js"
IMAGES = ROOT / "docs" / "images"
TIMEOUT_MS = 10_000


def _anyone(request: Request) -> bool:
    return True


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "install Debian's chromium: the browser tests never download a browser"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def site(store: MemoryStore) -> Iterator[str]:
    app = Starlette(routes=[dashboard_routes("/ops", authorize=_anyone)])
    with serve_asgi(app) as url:
        yield f"{url}/ops"


def _axe(page: Page) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    violations: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document)).violations"
        ".map(v => ({id: v.id, nodes: v.nodes.map(n => n.html)}))"
    )
    return violations


def _shoot(page: Page, name: str) -> None:
    if os.environ.get("IMMORTUS_SCREENSHOTS") == "1":
        page.screenshot(path=str(IMAGES / f"dashboard-{name}.png"), full_page=True)


@pytest.mark.parametrize("width", [1280, 390])
def test_every_page_has_no_axe_violation_and_fits(browser: Browser, site: str, width: int) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900}, bypass_csp=True)  # axe
    page.set_default_timeout(TIMEOUT_MS)
    dialogs: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    suffix = "" if width > 600 else "-phone"
    for path, name in (("/", "overview"), ("/jobs", "list"), ("/jobs/failed-1", "job")):
        page.goto(site + path)
        assert _axe(page) == [], path
        scroll = page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, f"{path} is {scroll} px wide in a {width} px window"
        _shoot(page, name + suffix)
    page.goto(site + "/jobs")
    assert page.get_by_text(HOSTILE_ID).count() == 1  # shown as text
    assert dialogs == []  # and never run
    page.close()


def test_the_list_updates_a_row_live(browser: Browser, site: str, store: MemoryStore) -> None:
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(site + "/jobs")
    row = page.locator('#rows tr[data-job="running-1"]')
    assert "37 %" in row.inner_text()
    page.wait_for_function("() => document.body.dataset.cursor !== undefined")
    store.record(
        Event(kind=EventKind.PROGRESS, job_id="running-1", progress=Progress(current=80, total=100))
    )
    row_text = "document.querySelector('#rows tr[data-job=\"running-1\"]').innerText"
    page.wait_for_function(f"() => {row_text}.includes('80 %')")
    page.close()
