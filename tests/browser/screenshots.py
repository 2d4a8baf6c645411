"""Take the widget's screenshots in docs/images: ``python -m tests.browser.screenshots``.

One picture per state (light theme), the eight states in the dark theme, the group card in
four states, and the demo's page with its sample jobs running. ``--groups`` takes the group's
pictures alone. Uses Debian's chromium; never downloads a browser.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Literal

from playwright.sync_api import Browser, sync_playwright

from immortus.demo.samples import SAMPLES
from tests.browser.demo_process import running_demo
from tests.browser.widget_bodies import GROUP_STATES, SCRIPT, STATES, bodies, group_bodies

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "docs" / "images"
PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>widget</title>
<style>body {{ margin: 0; padding: 16px; background: {background}; width: 560px; }}
immortus-job + immortus-job {{ margin-top: 12px; }}</style></head><body></body></html>"""
# Show each body in its widget; the started one twice, 1.5 s apart, so it knows its rate.
SHOW = """async ([bodies, theme]) => {
    for (const body of bodies) {
        const widget = document.createElement('immortus-job');
        widget.id = body.status;
        widget.setAttribute('label', 'Build the quarterly report');
        widget.setAttribute('theme', theme);
        if (body.status === 'started') widget.setAttribute('cancel-url', '/cancel');
        document.body.append(widget);
        const first = body.status === 'started'
            ? {...body, progress: {...body.progress, percent: 30}} : body;
        widget.show(first);
    }
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const started = bodies.find((body) => body.status === 'started');
    if (started) document.querySelector('#started').show(started);
}"""


def widget_pictures(browser: Browser) -> None:
    """widget-<state>.png for each state, and widget-dark.png with all of them."""
    themes: tuple[tuple[Literal["light", "dark"], str, tuple[str, ...] | None], ...] = (
        ("light", "#f5f6f8", STATES),
        ("dark", "#11141a", None),
    )
    for theme, background, states in themes:
        page = browser.new_page(device_scale_factor=2, color_scheme=theme)
        page.set_content(PAGE.format(background=background))
        page.add_script_tag(path=str(SCRIPT))
        page.evaluate(SHOW, [bodies(), theme])
        if states is None:
            page.locator("body").screenshot(path=IMAGES / "widget-dark.png")
        else:
            for state in states:
                page.locator(f"#{state}").screenshot(path=IMAGES / f"widget-{state}.png")
        page.close()


SHOW_GROUPS = """(bodies) => {
    for (const body of bodies) {
        const widget = document.createElement('immortus-group');
        widget.id = body.status;
        widget.setAttribute('label', 'Import the ledger');
        document.body.append(widget);
        widget.show(body);
    }
}"""


def group_pictures(browser: Browser) -> None:
    """widget-group-<state>.png for each state of :data:`GROUP_STATES`."""
    page = browser.new_page(device_scale_factor=2)
    page.set_content(PAGE.format(background="#f5f6f8"))
    page.add_script_tag(path=str(SCRIPT))
    page.evaluate(SHOW_GROUPS, group_bodies())
    for state in GROUP_STATES:
        page.locator(f"#{state}").screenshot(path=IMAGES / f"widget-group-{state}.png")
    page.close()


def demo_picture(browser: Browser) -> None:
    """demo.png: the demo's page with each sample started."""
    with running_demo() as url:
        page = browser.new_page(device_scale_factor=1, viewport={"width": 1000, "height": 900})
        page.goto(url + "/")
        for sample in reversed(SAMPLES):
            page.get_by_role("button", name=sample.title).click()
            time.sleep(0.3)
        time.sleep(4)  # the jobs run at their demo pace meanwhile
        page.mouse.click(5, 5)  # no button left focused
        page.screenshot(path=IMAGES / "demo.png", full_page=True)
        page.close()


def main() -> None:
    """Write every picture into docs/images."""
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium is missing: apt-get install chromium")
    IMAGES.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        if "--groups" in sys.argv[1:]:
            group_pictures(browser)
        else:
            widget_pictures(browser)
            group_pictures(browser)
            demo_picture(browser)
        browser.close()


if __name__ == "__main__":
    main()
