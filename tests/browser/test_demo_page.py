"""The web demo's page in chromium: every sample shown by the widget, to its expected end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from immortus.demo.samples import SAMPLES
from tests.browser.conftest import TIMEOUT_MS
from tests.browser.demo_process import running_demo

AXE = Path(__file__).with_name("vendor") / "axe.min.js"


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``immortus demo`` at 10 times its pace on a free port; its URL.

    Not faster: the cancellable report then runs about 2 s, and the cancel clicked once its
    card shows it running must land before it ends, on a machine the other tests load too.
    """
    with running_demo("--speed", "10", temporary=tmp_path_factory.mktemp("demo")) as url:
        yield url


@pytest.fixture
def demo_page(browser: Browser, demo_url: str) -> Iterator[tuple[Page, list[str]]]:
    """The demo's page, and the errors its console shows (a refused script or style...)."""
    context = browser.new_context()  # the page's policy applies: only its own scripts run
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(demo_url + "/")
    yield page, errors
    context.close()


def test_every_sample_runs_in_a_widget_to_its_expected_end(
    demo_page: tuple[Page, list[str]],
) -> None:
    page, errors = demo_page
    for sample in SAMPLES:
        page.get_by_role("button", name=sample.title).click()
        page.wait_for_function(
            "(title) => [...document.querySelectorAll('immortus-job')]"
            ".some((w) => w.getAttribute('label') === title)",
            arg=sample.title,
        )
    cancel = page.locator("immortus-job[cancel-url]")
    page.wait_for_function(
        "() => !document.querySelector('immortus-job[cancel-url]')"
        ".shadowRoot.querySelector('.actions').hidden"
    )
    cancel.locator("button").click()  # Playwright pierces the shadow root
    page.wait_for_function(
        "() => [...document.querySelectorAll('immortus-job')].every((w) => w.body?.completed)",
        timeout=60_000,
    )
    ended = page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('immortus-job')]"
        ".map((w) => [w.getAttribute('label'), [w.body.status, w.body.attempts]]))"
    )
    expected = {
        sample.title: [
            "cancelled" if sample.cancellable else sample.expected.value,
            sample.attempts,
        ]
        for sample in SAMPLES
    }
    assert ended == expected
    assert page.locator("#count").inner_text() == f"{len(SAMPLES)} jobs · 0 in progress"
    page.evaluate(AXE.read_text(encoding="utf-8"))  # the test's own code: not the page's script
    violations = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map((v) => v.id)"
    )
    assert violations == []
    assert errors == []
