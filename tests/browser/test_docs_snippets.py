"""Every JavaScript and HTML snippet of README.md and docs/ runs in chromium as written.

Each snippet (```html, ```js) that is not a declared fragment (``<!-- docs: fragment -->``
above its fence) runs on a page of a real Starlette app with immortus's routes, signed tokens
and two enqueue views, ``POST /imports`` and ``POST /reports``, whose jobs really run (in a
thread, reporting progress) and finish. The names the snippets leave to the reader are given
by the page: ``show``, ``done``, ``failed`` and ``progress`` record what they are called with,
``bar`` is a ``<progress>``, ``job`` is a running job's info from ``render_job``, and
``#report`` is an empty element. A snippet passes when the page raised nothing, rejected no
promise unhandled, and (when it calls any of them) one of the reader functions was called.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

import immortus
from immortus.web.asgi import immortus_routes, render_job_response
from tests.docs.blocks import Block, blocks_of, doc_files
from tests.support import pristine_immortus
from tests.web.servers import serve_asgi

JOB_CLASS = "docs.report"
_LANGUAGES = {"html", "js", "javascript"}
_READER_FUNCTIONS = ("show", "done", "failed", "progress")

SNIPPETS = [
    block
    for path in doc_files()
    for block in blocks_of(path)
    if block.language in _LANGUAGES and not block.fragment
]

_HARNESS = """<!doctype html><meta charset="utf-8"><title>docs snippet</title>
<script src="/immortus/immortus.js"></script>
<progress id="bar" max="100" value="0"></progress><div id="report"></div>
<script>
  window.__docs = {calls: [], errors: []};
  for (const name of ["show", "done", "failed", "progress"]) {
    window[name] = (...values) => { window.__docs.calls.push(name); };
  }
  window.bar = document.getElementById("bar");
  window.job = JOB_INFO;
  addEventListener("error", (event) => window.__docs.errors.push(String(event.message)));
  addEventListener("unhandledrejection",
                   (event) => window.__docs.errors.push(String(event.reason)));
</script>
"""


def _run_job(job_id: str) -> None:
    with immortus.running(job_id, JOB_CLASS):
        for step in range(1, 5):
            time.sleep(0.05)
            immortus.progress(step, 4, f"step {step}")


def _start_job() -> str:
    job_id = str(uuid.uuid4())
    immortus.lifecycle.job_enqueued(job_id, JOB_CLASS)
    threading.Thread(target=_run_job, args=(job_id,), daemon=True).start()
    return job_id


async def _enqueue(request: Request) -> Response:
    return render_job_response(_start_job(), JOB_CLASS)


def _page_for(block: Block) -> str:
    job = json.loads(bytes(render_job_response(_start_job(), JOB_CLASS).body))
    harness = _HARNESS.replace("JOB_INFO", json.dumps(job))
    code = block.code.replace('<script src="/immortus/immortus.js"></script>', "")
    if block.language == "html":
        return harness + code
    kind = ' type="module"' if re.search(r"^\s*(import|export)\b|\bawait\b", code, re.M) else ""
    return f"{harness}<script{kind}>\n{code}\n</script>"


class DocsSite:
    """The app the snippets run on: its URL, and the pages published on it."""

    def __init__(self) -> None:
        self.url = ""
        self.pages: dict[str, str] = {}

    def publish(self, html: str) -> str:
        """Serve ``html`` at a new ``/pages/{name}``; return the page's URL."""
        name = str(len(self.pages))
        self.pages[name] = html
        return f"{self.url}/pages/{name}"

    async def page(self, request: Request) -> Response:
        return HTMLResponse(self.pages[request.path_params["name"]])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsSite]:
    docs_site = DocsSite()

    with pristine_immortus():
        store = tmp_path_factory.mktemp("docs-snippets") / "jobs.sqlite3"
        immortus.configure(
            store=f"sqlite:///{store}",
            secret_key="docs-snippets",  # noqa: S106  # this test's own key
            progress_interval=0,
        )
        immortus.declare(JOB_CLASS)
        app = Starlette(
            routes=[
                immortus_routes(),
                Route("/imports", _enqueue, methods=["POST"]),
                Route("/reports", _enqueue, methods=["POST"]),
                Route("/pages/{name}", docs_site.page),
            ]
        )
        with serve_asgi(app) as url:
            docs_site.url = url
            yield docs_site


@pytest.mark.parametrize("block", SNIPPETS, ids=lambda block: block.where)
def test_the_snippet_runs_in_chromium(block: Block, site: DocsSite, browser: Browser) -> None:
    address = site.publish(_page_for(block))
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(address)
        called = [name for name in _READER_FUNCTIONS if re.search(rf"\b{name}\(", block.code)]
        deadline = time.monotonic() + (15 if called else 0)
        while time.monotonic() < deadline:
            state = page.evaluate("window.__docs")
            if state["errors"] or any(name in state["calls"] for name in called):
                break
            time.sleep(0.05)
        if not called:
            time.sleep(1)  # give a snippet that calls nothing of ours time to fail
            state = page.evaluate("window.__docs")
        assert state["errors"] == [], f"{block.where} raised in the page: {state['errors']}"
        if called:
            assert state["calls"], f"{block.where} never called any of {called}"
    finally:
        context.close()


def test_the_docs_hold_snippets_to_run() -> None:
    assert len(SNIPPETS) >= 5
