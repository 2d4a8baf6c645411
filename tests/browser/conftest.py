"""Fixtures of the browser tests: one chromium per session, one site process per framework.

Each site (``tests/browser/sites/``) runs in its own process on a free port of 127.0.0.1, so it
has its own immortus settings (and, for Django, its own Django settings). A test gets a fresh
browser context and page on the site, and a :class:`Harness` that drives ``page.html``'s
``window.harness``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = ("starlette", "flask", "django")
#: Generous: a loaded 2-core machine must not fail a test by slowness.
TIMEOUT_MS = 10_000
STARTUP_SECONDS = 30.0


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``predicate()`` until it is true; fail saying ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@dataclass
class Site:
    """A test site running in its own process."""

    framework: str
    url: str
    process: subprocess.Popen[bytes]

    def step(self, job_id: str, times: int = 1) -> None:
        """Release ``times`` steps of job ``job_id`` in the site's process."""
        for _ in range(times):
            answer = httpx.post(f"{self.url}/jobs/{job_id}/step", timeout=10)
            assert answer.status_code == 200, answer.text

    def get(self, path: str) -> httpx.Response:
        """GET ``path`` of the site."""
        return httpx.get(f"{self.url}{path}", timeout=10)


def _output(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/pages/blank", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_site(framework: str, workdir: Path) -> Site:
    """Start the site of ``framework``; return it once it answers HTTP."""
    port_file = workdir / f"{framework}.port"
    log = workdir / f"{framework}.log"
    store = "memory://" if framework == "starlette" else f"sqlite:///{workdir / framework}.db"
    command = [sys.executable, "-m", f"tests.browser.sites.{framework}_site"]
    command += ["--port-file", str(port_file), "--store", store]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + STARTUP_SECONDS
    url = None
    while url is None or not _answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_site(process)
            pytest.fail(
                f"the {framework} test site did not start (exit code {process.returncode}); "
                f"its output:\n{_output(log)}",
                pytrace=False,
            )
        if url is None and port_file.exists():
            url = f"http://127.0.0.1:{int(port_file.read_text(encoding='utf-8'))}"
        time.sleep(0.05)
    return Site(framework, url, process)


def stop_site(process: subprocess.Popen[bytes]) -> None:
    """Stop a site's process and wait for it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.hookimpl(trylast=True)  # after pytest has grouped the items by their fixtures
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the browser tests after every other test of the session.

    Playwright's sync API keeps an asyncio event loop running in the main thread for as long
    as it is started (the whole browser session), and ``asyncio.run`` refuses to start inside
    it.
    """
    here = Path(__file__).parent
    items.sort(key=lambda item: here in item.path.parents)  # a stable sort keeps the order


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's chromium, launched once for the session."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium); "
            "the browser tests never download a browser",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session", params=FRAMEWORKS)
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """The test site of each framework, started once per session."""
    framework: str = request.param
    site = start_site(framework, tmp_path_factory.mktemp(framework))
    yield site
    stop_site(site.process)


@dataclass
class Harness:
    """The test's side of ``page.html``: start jobs, watch them, read what the client saw."""

    page: Page
    site: Site
    requests: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)

    def open(self, path: str = "/") -> None:
        """Go to ``path`` of the site and record every request the page makes from now on."""
        self.page.goto(self.site.url + path)

    def start(self, kind: str, **options: Any) -> int:
        """Create a job of ``kind`` in the page and verify it with ``options``; its run key."""
        key: int = self.page.evaluate("([k, o]) => harness.start(k, o)", [kind, options])
        return key

    def watch(self, info: dict[str, Any], **options: Any) -> int:
        """Verify job ``info`` in the page with ``options``; return its run key."""
        key: int = self.page.evaluate("([i, o]) => harness.watch(i, o)", [info, options])
        return key

    def state(self, key: int) -> dict[str, Any]:
        """What the client reported for run ``key``: progress, thenProgress, result, error."""
        state: dict[str, Any] = self.page.evaluate("(k) => harness.state(k)", key)
        return state

    def job_id(self, key: int) -> str:
        """The job id of run ``key``."""
        job_id: str = self.state(key)["info"]["job_id"]
        return job_id

    def wait_progress(self, key: int, current: float) -> None:
        """Wait until both progress callbacks of run ``key`` saw ``progress.current``."""
        self.page.wait_for_function(
            "([k, c]) => harness.sawProgress(k, c)", arg=[key, current], timeout=TIMEOUT_MS
        )

    def wait_reports(self, key: int, count: int) -> None:
        """Wait until run ``key`` reported ``count`` progress bodies."""
        self.page.wait_for_function(
            "([k, n]) => harness.runs[k].progress.length >= n", arg=[key, count], timeout=TIMEOUT_MS
        )

    def wait_done(self, key: int) -> dict[str, Any]:
        """Wait until run ``key`` resolved or rejected; return its state."""
        self.page.wait_for_function("(k) => harness.runs[k].done", arg=key, timeout=TIMEOUT_MS)
        return self.state(key)

    def abort(self, key: int) -> None:
        """Abort run ``key`` through its AbortSignal."""
        self.page.evaluate("(k) => harness.runs[k].abort()", key)

    def requested(self, fragment: str) -> list[str]:
        """The URLs the page requested that contain ``fragment``."""
        return [url for url in self.requests if fragment in url]

    def wait_ended(self, fragment: str) -> None:
        """Wait until a request whose URL contains ``fragment`` finished or failed."""
        wait = f"a request to {fragment} to end"
        wait_until(lambda: self.pump() and any(fragment in url for url in self.ended), wait)

    def pump(self) -> bool:
        """Let Playwright deliver the page's events (the sync API does so only in its calls)."""
        self.page.evaluate("0")
        return True


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    """A fresh browser context and page, with generous timeouts."""
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def harness(page: Page, site: Site) -> Harness:
    """The harness of ``page.html``, opened on the site, recording the page's requests."""
    harness = Harness(page, site)

    def record(request: Request) -> None:
        harness.requests.append(request.url)

    def ended(request: Request) -> None:
        harness.ended.append(request.url)

    page.on("request", record)
    page.on("requestfinished", ended)
    page.on("requestfailed", ended)
    harness.open()
    return harness
