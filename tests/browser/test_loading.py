"""Loading the client (classic script, ES module) and its create(): JSON, errors and CSRF."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import Harness, Site

FAST = {"interval": 20}
API = [
    "GroupElement",
    "ImmortusError",
    "JobElement",
    "batch",
    "cancel",
    "create",
    "mount",
    "mountGroup",
    "verify",
    "version",
]


def test_the_classic_script_defines_only_the_immortus_global(page: Page, site: Site) -> None:
    page.goto(f"{site.url}/pages/blank")
    before = page.evaluate("() => Object.getOwnPropertyNames(globalThis)")
    page.add_script_tag(url="/immortus/immortus.js")
    after = page.evaluate("() => Object.getOwnPropertyNames(globalThis)")

    assert sorted(set(after) - set(before)) == ["Immortus"]
    assert page.evaluate("() => Object.keys(Immortus).sort()") == API
    assert page.evaluate("() => Object.isFrozen(Immortus)") is True


def test_the_es_module_exports_the_client(page: Page, site: Site) -> None:
    served = site.get("/immortus/immortus.mjs")
    assert served.status_code == 200, (
        f"{site.framework} does not serve {{prefix}}/immortus.mjs (answered "
        f"{served.status_code}): the ES module form needs that route"
    )
    assert "javascript" in served.headers["content-type"]
    page.goto(f"{site.url}/pages/module")
    page.wait_for_function("() => window.moduleExports !== undefined")

    assert page.evaluate(
        """() => {
            const m = window.moduleExports;
            return m.Immortus === globalThis.Immortus && m.create === m.Immortus.create
                && m.verify === m.Immortus.verify && m.batch === m.Immortus.batch
                && m.ImmortusError === m.Immortus.ImmortusError && m.version === m.Immortus.version
                && m.mount === m.Immortus.mount && m.JobElement === m.Immortus.JobElement
                && m.cancel === m.Immortus.cancel && m.mountGroup === m.Immortus.mountGroup
                && m.JobElement === customElements.get('immortus-job')
                && m.GroupElement === customElements.get('immortus-group');
        }"""
    )
    info = page.evaluate("() => window.moduleExports.create('/jobs', {kind: 'slow'})")
    site.step(info["job_id"])
    result = page.evaluate(
        "([info, polling]) => window.moduleExports.verify(info, {transport: 'polling', polling})",
        [info, FAST],
    )
    assert (result["job_id"], result["status"]) == (info["job_id"], "finished")


def test_loading_the_script_twice_keeps_one_client(page: Page, site: Site) -> None:
    page.goto(f"{site.url}/")
    same = page.evaluate(
        """async () => {
            const first = globalThis.Immortus;
            await import('/immortus/immortus.js');   // as a module body, for its side effect
            return globalThis.Immortus === first;
        }"""
    )
    assert same is True


def create(page: Page, body: dict[str, Any]) -> dict[str, Any]:
    """Call Immortus.create in the page; answer {ok, value} or {ok: false, error}."""
    result: dict[str, Any] = page.evaluate(
        """async (body) => {
            try {
                return {ok: true, value: await Immortus.create('/jobs', body)};
            } catch (error) {
                return {ok: false, error: {name: error.name, status: error.status,
                                           body: error.body,
                                           immortusError: error instanceof Immortus.ImmortusError}};
            }
        }""",
        body,
    )
    return result


def test_create_resolves_with_the_job_info(harness: Harness) -> None:
    answer = create(harness.page, {"kind": "slow"})

    assert answer["ok"] is True
    info = answer["value"]
    assert sorted(info) == ["job_class", "job_id", "token"]
    assert info["job_class"] == "browser.slow"
    harness.site.step(info["job_id"])


def test_create_rejects_an_error_answer_with_its_status(harness: Harness) -> None:
    answer = create(harness.page, {"kind": "no such kind"})

    assert answer["ok"] is False
    assert answer["error"]["name"] == "ImmortusError"
    assert answer["error"]["immortusError"] is True
    assert answer["error"]["status"] == 400


def test_create_sends_json_and_the_pages_csrf_token(harness: Harness) -> None:
    page = harness.page
    page.evaluate(
        """() => {
            document.querySelector('meta[name="csrf-token"]')?.remove();
            const meta = document.createElement('meta');
            meta.name = 'csrf-token';
            meta.content = 'token-from-meta';
            document.head.append(meta);
        }"""
    )
    with page.expect_request("**/jobs") as sent:
        answer = create(page, {"kind": "slow"})
    headers = sent.value.headers

    assert sent.value.post_data_json == {"kind": "slow"}
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert headers["x-csrftoken"] == headers["x-csrf-token"] == "token-from-meta"
    if harness.site.framework != "django":  # Django refuses a token it did not hand out
        assert answer["ok"] is True
        harness.site.step(answer["value"]["job_id"])


@pytest.mark.parametrize("site", ["django"], indirect=True)  # the one checking CSRF
@pytest.mark.parametrize(
    ("meta", "cookie", "status"),
    [(True, True, 200), (False, True, 200), (True, False, 403), (False, False, 403)],
)
def test_django_checks_the_csrf_token_create_sends(
    harness: Harness, meta: bool, cookie: bool, status: int
) -> None:
    page = harness.page
    token = page.evaluate("() => document.querySelector('meta[name=csrf-token]').content")
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    assert token
    assert "csrftoken" in cookies
    if not meta:
        page.evaluate("() => document.querySelector('meta[name=csrf-token]').remove()")
    if not cookie:
        page.context.clear_cookies()
    with page.expect_request("**/jobs") as sent:
        answer = create(page, {"kind": "slow"})

    if status == 200:
        assert answer["ok"] is True, answer
        expected = token if meta else cookies["csrftoken"]
        assert sent.value.headers["x-csrftoken"] == expected
        harness.site.step(answer["value"]["job_id"])
    else:
        assert answer["ok"] is False
        assert answer["error"]["status"] == 403


class _Recorder(BaseHTTPRequestHandler):
    """A server of another origin that lets any page POST to it, and records what it got."""

    seen: ClassVar[list[tuple[str, dict[str, str]]]] = []

    def _answer(self) -> None:
        self.seen.append((self.command, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(200 if self.command == "POST" else 204)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "POST")
        self.send_header("Access-Control-Allow-Headers", "*")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        if self.command == "POST":
            self.wfile.write(b'{"job_id": "stolen"}')

    do_OPTIONS = do_POST = _answer  # noqa: N815  # the names http.server calls

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def other_origin() -> Iterator[tuple[str, list[tuple[str, dict[str, str]]]]]:
    """A second server on another port of 127.0.0.1: its URL and the requests it received."""
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/steal", _Recorder.seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("site", ["starlette"], indirect=True)
def test_create_never_sends_the_csrf_token_across_a_redirect(
    harness: Harness, other_origin: tuple[str, list[tuple[str, dict[str, str]]]]
) -> None:
    target, seen = other_origin
    page = harness.page
    page.evaluate(
        """() => {
            const meta = document.createElement('meta');
            meta.name = 'csrf-token';
            meta.content = 'secret-csrf';
            document.head.append(meta);
        }"""
    )
    answer = page.evaluate(
        """async (to) => {
            try {
                return {ok: true, value: await Immortus.create(
                    '/redirect?to=' + encodeURIComponent(to), {kind: 'slow'})};
            } catch (error) {
                return {ok: false, name: error.name, message: error.message};
            }
        }""",
        target,
    )

    assert answer["ok"] is False, answer
    assert answer["name"] == "ImmortusError"
    assert "redirect" in answer["message"]
    assert all("secret-csrf" not in headers.values() for _, headers in seen), seen
    assert [method for method, _ in seen if method == "POST"] == []
    # A POST without the token follows a redirect as fetch does.
    followed = page.evaluate(
        """(to) => Immortus.create(
            '/redirect?to=' + encodeURIComponent(to), {}, {csrfToken: null})""",
        target,
    )
    assert followed == {"job_id": "stolen"}
    assert [method for method, _ in seen if method == "POST"] == ["POST"]
