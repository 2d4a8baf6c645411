"""The server helpers that render ``<immortus-job>``: escaping, tokens, refusals, templates."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from types import SimpleNamespace
from typing import Any

import httpx
import jinja2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request

import immortus
from immortus import config, lifecycle
from immortus.exceptions import (
    ConfigurationError,
    EndpointsNotSecured,
    InvalidInput,
    InvalidJobClass,
    InvalidJobId,
)
from immortus.web import get_verifier
from immortus.web.asgi import immortus_routes
from immortus.web.jinja import install
from immortus.web.widget import SafeHTML, render_widget, widget_script_tag
from tests.support import import_error_without, modules_loaded_by
from tests.web.servers import serve_asgi

SECRET = "widget-helpers-secret"  # noqa: S105  # a test key
REPORT = "widget.report"
HOSTILE = '"><script>alert(1)</script>'


@immortus.track(name=REPORT)
def build_report() -> None:
    """A tracked job class, so verify answers for it."""


class Element(HTMLParser):
    """Every start tag of a piece of HTML, with its attributes, and the text between them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text = ""
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text += data


def only_widget(html: str) -> tuple[dict[str, str | None], str]:
    """The attributes and the text of the one ``<immortus-job>`` that ``html`` must be."""
    parsed = Element(html)
    assert [tag for tag, _ in parsed.tags] == ["immortus-job"], html
    return parsed.tags[0][1], parsed.text


def opens(token: object, job_id: str, job_class: str | None, subject: str | None = None) -> bool:
    """Whether ``token`` opens the job for ``subject`` under the current settings' key."""
    tokens = get_verifier().tokens
    assert tokens is not None
    return tokens.check(token, job_id, job_class, subject)


@pytest.fixture
def keyed() -> None:
    """Tokens on, jobs in memory."""
    config.configure(secret_key=SECRET, store="memory://", open_endpoints=False)


# -- escaping and the fallback text ----------------------------------------------------------


@pytest.mark.parametrize("job_id", [HOSTILE, "' onmouseover='alert(1)", "a&b<c>d", "é—ü"])
def test_hostile_values_stay_inside_their_attributes(job_id: str, keyed: None) -> None:
    label = '"><img src=x onerror=alert(1)>'
    html = render_widget(
        job_id,
        REPORT,
        label=label,
        verify_url=f"/custom?x={HOSTILE}",
        cancel_url="javascript:'\"><b>",
    )
    attributes, text = only_widget(html)
    token = attributes.pop("token")
    assert attributes == {
        "job-id": job_id,
        "job-class": REPORT,
        "label": label,
        "verify-url": f"/custom?x={HOSTILE}",
        "cancel-url": "javascript:'\"><b>",
    }
    assert opens(token, job_id, REPORT)
    assert text == f"{label} — waiting"
    assert "<script" not in html
    assert "<img" not in html


def test_the_fallback_text_names_the_job_shortly() -> None:
    assert only_widget(render_widget("7f0c2a9e-4d1b-4c55"))[1] == "Job 7f0c2a9e… — waiting"
    assert only_widget(render_widget("short"))[1] == "Job short — waiting"
    assert only_widget(render_widget(HOSTILE))[1] == f"Job {HOSTILE[:8]}… — waiting"


def test_open_routes_render_no_token_and_no_absent_attribute() -> None:
    attributes, _ = only_widget(render_widget("job-1"))
    assert attributes == {"job-id": "job-1"}


@pytest.mark.parametrize(
    "job",
    [
        {"job_id": "m-1", "job_class": REPORT},
        SimpleNamespace(task_id="m-1", job_class=REPORT),
        SimpleNamespace(id="m-1", job_class=REPORT),
    ],
    ids=["mapping", "task_id", "id"],
)
def test_a_job_object_is_read_as_render_job_reads_it(job: object, keyed: None) -> None:
    attributes, _ = only_widget(render_widget(job))
    assert (attributes["job-id"], attributes["job-class"]) == ("m-1", REPORT)
    tokens = get_verifier().tokens  # the token render_job signs, whatever second it is now
    assert tokens is not None
    assert tokens.check(attributes["token"], "m-1", REPORT)


def test_a_uuid_job_id_is_written_as_text(keyed: None) -> None:
    job_id = uuid.UUID("7f0c2a9e-4d1b-4c55-9a3e-0123456789ab")
    attributes, _ = only_widget(render_widget(SimpleNamespace(id=job_id), REPORT))
    assert attributes["job-id"] == str(job_id)


# -- the token opens the job on the verify route ---------------------------------------------


@pytest.fixture
def routes_url(keyed: None) -> Iterator[str]:
    """The immortus routes under Starlette; the subject is the ``X-User`` header."""
    app = Starlette(routes=[immortus_routes(subject=lambda request: request.headers.get("x-user"))])
    with serve_asgi(app) as url:
        yield f"{url}/immortus"


def verify_with(base: str, attributes: dict[str, str | None], user: str | None = None) -> Any:
    headers = {} if user is None else {"X-User": user}
    path = f"{base}/verify/{attributes['job-id']}/{attributes['job-class']}"
    return httpx.get(path, params={"token": attributes["token"]}, headers=headers, timeout=10)


def test_the_token_in_the_element_opens_the_job_on_the_verify_route(routes_url: str) -> None:
    job_id = uuid.uuid4().hex
    lifecycle.job_enqueued(job_id, REPORT)
    attributes, _ = only_widget(render_widget(job_id, REPORT))
    answer = verify_with(routes_url, attributes)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["job_id"], answer.json()["status"]) == (job_id, "created")
    assert verify_with(routes_url, {**attributes, "token": "v1.1.x"}).status_code == 404


def test_a_token_bound_to_a_subject_opens_only_for_it(routes_url: str) -> None:
    job_id = uuid.uuid4().hex
    lifecycle.job_enqueued(job_id, REPORT)
    attributes, _ = only_widget(render_widget(job_id, REPORT, subject="alice"))
    assert verify_with(routes_url, attributes, user="alice").status_code == 200
    assert verify_with(routes_url, attributes, user="bob").status_code == 404
    assert verify_with(routes_url, attributes).status_code == 404


# -- refusals: an error, never a broken element ----------------------------------------------


def test_unsecured_routes_refuse_to_render() -> None:
    config.configure(open_endpoints=False)
    with pytest.raises(EndpointsNotSecured, match="secret_key"):
        render_widget("job-1", REPORT)


@pytest.mark.parametrize(
    ("job", "job_class", "subject", "error", "message"),
    [
        (object(), None, None, InvalidInput, "cannot follow a object: it carries no usable job"),
        ({"job_class": REPORT}, None, None, InvalidInput, "cannot follow a dict"),
        ("", None, None, InvalidJobId, "job id"),
        ("é\u202e", None, None, InvalidJobId, "non-printable"),
        ("job-1", "bad\nclass", None, InvalidJobClass, "job class"),
        ("job-1", REPORT, 42, InvalidInput, "subject must be a string or None, not int"),
    ],
    ids=[
        "no-id",
        "mapping-without-id",
        "empty-id",
        "unprintable-id",
        "bad-class",
        "subject-not-text",
    ],
)
def test_what_render_job_refuses_raises(
    keyed: None, job: object, job_class: Any, subject: Any, *, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        render_widget(job, job_class, subject=subject)


def test_a_label_that_is_not_text_is_refused() -> None:
    with pytest.raises(InvalidInput, match="label must be a string or None, not int"):
        render_widget("job-1", label=7)  # type: ignore[arg-type]  # what an untyped caller does


# -- the script tag and the safe text ----------------------------------------------------------


def test_the_script_tag_loads_the_client_from_the_prefix() -> None:
    assert widget_script_tag() == '<script src="/immortus/immortus.js" defer></script>'
    assert widget_script_tag("/jobs/") == '<script src="/jobs/immortus.js" defer></script>'
    tag = widget_script_tag("/a b", nonce='"x')
    assert tag == '<script src="/a b/immortus.js" nonce="&quot;x" defer></script>'


def test_jinja2_inserts_the_html_unescaped() -> None:
    env = jinja2.Environment(autoescape=True)
    html = render_widget(HOSTILE)
    assert isinstance(html, SafeHTML)
    assert env.from_string("{{ w }}").render(w=html) == html
    assert env.from_string("{{ w }}").render(w=str(html)) != html  # plain text is escaped


# -- Jinja2: install(env) ----------------------------------------------------------------------


TEMPLATE = "{{ immortus_script() }}{{ immortus_job(job, label=label) }}"


def test_install_registers_both_globals(keyed: None) -> None:
    env = jinja2.Environment(autoescape=True)
    install(env, prefix="/jobs")
    page = env.from_string(TEMPLATE).render(
        job={"job_id": "j-1", "job_class": REPORT}, label=HOSTILE
    )
    script, widget = page.split("</script>", 1)
    assert script + "</script>" == widget_script_tag("/jobs")
    attributes, text = only_widget(widget)
    assert (attributes["job-id"], attributes["label"], text) == (
        "j-1",
        HOSTILE,
        f"{HOSTILE} — waiting",
    )


def test_flask_subject_hook_binds_the_token(keyed: None) -> None:
    from flask import Flask, render_template_string, request

    app = Flask(__name__)

    def current_user() -> str | None:
        return request.headers.get("X-User")

    install(app.jinja_env, subject=current_user)
    with app.test_request_context(headers={"X-User": "alice"}):
        page = render_template_string(
            "{{ immortus_job(job) }}", job={"job_id": "j-2", "job_class": REPORT}
        )
    token = only_widget(page)[0]["token"]
    assert opens(token, "j-2", REPORT, "alice")
    assert not opens(token, "j-2", REPORT)


def test_request_subject_reads_the_template_request(keyed: None) -> None:
    env = jinja2.Environment(autoescape=True)
    install(env, request_subject=lambda request: request.headers.get("x-user"))
    request = Request({"type": "http", "headers": [(b"x-user", b"bob")]})
    page = env.from_string("{{ immortus_job('j-3') }}").render(request=request)
    assert opens(only_widget(page)[0]["token"], "j-3", None, "bob")
    explicit = env.from_string("{{ immortus_job('j-3', subject='carol') }}").render(request=request)
    assert opens(only_widget(explicit)[0]["token"], "j-3", None, "carol")


def test_an_async_request_subject_is_refused_when_rendering(keyed: None) -> None:
    async def subject_of(request: object) -> str:
        return "alice"

    env = jinja2.Environment(autoescape=True)
    install(env, request_subject=subject_of)  # type: ignore[arg-type]  # the mistake tested
    with pytest.raises(ConfigurationError, match="render synchronously"):
        env.from_string("{{ immortus_job('j-4') }}").render(request=None)


def test_install_takes_one_subject_hook() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        install(
            jinja2.Environment(autoescape=True),
            subject=lambda: None,
            request_subject=lambda r: None,
        )


# -- Django: {% load immortus %} ---------------------------------------------------------------


def alice(request: Any) -> str | None:
    """The ``IMMORTUS_SUBJECT`` function of these tests: the ``X-User`` header."""
    user: str | None = request.headers.get("X-User")
    return user


@pytest.fixture
def django_engine(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Django's template engine, Django set up from the web tests' project if it is not yet."""
    import django
    from django.conf import settings

    # At first use, not at import: test_django reads what the app's ready() configured.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.web.django_project.settings")
    django.setup()
    from django.template import engines

    config.configure(secret_key=SECRET, store="memory://", open_endpoints=False)
    monkeypatch.setattr(settings, "IMMORTUS_SUBJECT", f"{__name__}.alice", raising=False)
    return engines["django"]


DJANGO_TEMPLATE = (
    "{% load immortus %}{% immortus_script %}{% immortus_job job label=label job_class=kind %}"
)


def test_the_django_tags_render_the_script_and_a_bound_widget(django_engine: Any) -> None:
    from django.test import RequestFactory

    request = RequestFactory().get("/page", headers={"X-User": "alice"})
    template = django_engine.from_string(DJANGO_TEMPLATE)
    page = template.render({"job": "j-5", "label": HOSTILE, "kind": REPORT}, request)
    script, widget = page.split("</script>", 1)
    assert script + "</script>" == '<script src="/immortus/immortus.js" defer></script>'
    attributes, text = only_widget(widget)
    assert (attributes["job-id"], attributes["label"], text) == (
        "j-5",
        HOSTILE,
        f"{HOSTILE} — waiting",
    )
    assert opens(attributes["token"], "j-5", REPORT, "alice")


def test_the_django_tag_needs_the_request_when_tokens_are_bound(django_engine: Any) -> None:
    template = django_engine.from_string("{% load immortus %}{% immortus_job 'j-6' %}")
    with pytest.raises(ConfigurationError, match="render the template with it"):
        template.render({})


def test_the_django_tag_without_a_subject_setting_needs_no_request(
    django_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.conf import settings

    monkeypatch.delattr(settings, "IMMORTUS_SUBJECT")
    page = django_engine.from_string("{% load immortus %}{% immortus_job 'j-7' %}").render({})
    assert opens(only_widget(page)[0]["token"], "j-7", None)


# -- imports -----------------------------------------------------------------------------------


def test_the_neutral_helpers_import_no_framework() -> None:
    frameworks = ("jinja2", "django", "flask", "starlette", "markupsafe")
    assert modules_loaded_by("import immortus.web.widget", frameworks) == []


def test_the_jinja_helpers_without_jinja2_say_what_to_install() -> None:
    message = import_error_without("immortus.web.jinja", "jinja2")
    assert message.startswith("MissingDependency: 'jinja2' is not installed"), message
