"""The group's server helpers: ``render_group``, ``render_group_widget`` and their templates."""

from __future__ import annotations

from typing import Any

import jinja2
import pytest

import immortus
from immortus import config
from immortus.exceptions import EndpointsNotSecured, InvalidInput
from immortus.web import Verifier, get_verifier, render_group
from immortus.web.jinja import install
from immortus.web.widget import SafeHTML, render_group_widget
from tests.web.test_widget_helpers import HOSTILE, SECRET, Element, django_engine, keyed

__all__ = ["django_engine", "keyed"]  # the fixtures, used here by name


def only_group(html: str) -> tuple[dict[str, str | None], str]:
    """The attributes and the text of the one ``<immortus-group>`` that ``html`` must be."""
    parsed = Element(html)
    assert [tag for tag, _ in parsed.tags] == ["immortus-group"], html
    return parsed.tags[0][1], parsed.text


def opens(token: object, group_id: str, subject: str | None = None) -> bool:
    tokens = get_verifier().tokens
    assert tokens is not None
    return tokens.check_group(token, group_id, subject)


@pytest.mark.parametrize("group_id", [HOSTILE, "' onmouseover='alert(1)", "a&b<c>d", "é—ü"])
def test_hostile_values_stay_inside_their_attributes(group_id: str, keyed: None) -> None:
    label = '"><img src=x onerror=alert(1)>'
    html = render_group_widget(group_id, label=label)
    assert isinstance(html, SafeHTML)
    attributes, text = only_group(html)
    token = attributes.pop("token")
    assert attributes == {"group-id": group_id, "label": label}
    assert opens(token, group_id)
    assert not get_verifier().tokens.check(token, group_id)  # type: ignore[union-attr]
    assert text == f"{label} — waiting"
    assert "<script" not in html
    assert "<img" not in html


def test_a_group_object_and_the_fallback_text(keyed: None) -> None:
    with immortus.group("import-2026-01-02") as batch:
        attributes, text = only_group(render_group_widget(batch))
    assert attributes["group-id"] == "import-2026-01-02"
    assert text == "Group import-2… — waiting"


def test_open_routes_render_no_token() -> None:
    config.configure(open_endpoints=True)
    attributes, _ = only_group(render_group_widget("import-7"))
    assert attributes == {"group-id": "import-7"}
    assert render_group("import-7").body == {"group_id": "import-7"}


def test_a_token_bound_to_a_subject_opens_only_for_it(keyed: None) -> None:
    body = render_group("import-7", subject="alice").body
    assert opens(body["token"], "import-7", "alice")
    assert not opens(body["token"], "import-7", "bob")
    assert not opens(body["token"], "import-7")


def test_unsecured_routes_refuse_to_render() -> None:
    config.configure(open_endpoints=False)
    with pytest.raises(EndpointsNotSecured, match="secret_key"):
        render_group_widget("import-7")
    assert render_group("import-7").status == 500


@pytest.mark.parametrize(
    ("group", "label", "subject", "message"),
    [
        ("", None, None, "group id must not be empty"),
        ("a\nb", None, None, "non-printable"),
        (7, None, None, "group id must be a string"),
        ("import-7", 7, None, "label must be a string or None, not int"),
        ("import-7", None, 42, "subject must be a string or None, not int"),
    ],
    ids=["empty", "unprintable", "not-text", "label-not-text", "subject-not-text"],
)
def test_what_is_refused_raises(
    keyed: None, group: Any, label: Any, subject: Any, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        render_group_widget(group, label=label, subject=subject)
    assert Verifier(secret_key=SECRET).render_group(group, subject=subject).status == (
        200 if isinstance(group, str) and group == "import-7" and subject is None else 500
    )


def test_install_registers_the_group_global(keyed: None) -> None:
    env = jinja2.Environment(autoescape=True)
    install(env, subject=lambda: "alice")
    page = env.from_string('{{ immortus_group(group_id, label="Import") }}').render(
        group_id="import-7"
    )
    attributes, text = only_group(page)
    assert (attributes["group-id"], attributes["label"], text) == (
        "import-7",
        "Import",
        "Import — waiting",
    )
    assert opens(attributes["token"], "import-7", "alice")


def test_the_django_tag_renders_a_bound_group(django_engine: Any) -> None:
    from django.test import RequestFactory

    request = RequestFactory().get("/page", headers={"X-User": "alice"})
    template = django_engine.from_string(
        "{% load immortus %}{% immortus_group group_id label=label %}"
    )
    page = template.render({"group_id": "import-7", "label": HOSTILE}, request)
    attributes, text = only_group(page)
    assert (attributes["group-id"], attributes["label"], text) == (
        "import-7",
        HOSTILE,
        f"{HOSTILE} — waiting",
    )
    assert opens(attributes["token"], "import-7", "alice")
