"""The widgets, rendered on the server: ``<immortus-job>``, ``<immortus-group>``, the script.

    from immortus.web.widget import render_group_widget, render_widget, widget_script_tag

    html = widget_script_tag() + render_widget(job, "reports.build", label="Quarterly report")
    html += render_group_widget(batch.group_id, label="Import")

:func:`render_widget` writes the element with every attribute escaped and a fallback text inside
(``Job 7f0c2a9e… — waiting``), legible before the script runs or if it never does. Its token is
the one :func:`immortus.web.render_job` signs (for the same ``subject``): there is no other
signing path. Both functions return :class:`SafeHTML`, text that Jinja2 and Django insert as
it is (it has ``__html__``), so a template needs no ``|safe``. :func:`render_group_widget` does
the same for a group (:class:`immortus.group`), with the token of
:func:`immortus.web.render_group`. Framework helpers build on these:
:mod:`immortus.web.jinja` (Flask, Starlette) and ``{% load immortus %}`` (Django).
"""

from __future__ import annotations

import html
from typing import Final

from immortus.exceptions import InvalidInput
from immortus.validation import check_group_id, check_job_class, check_job_id
from immortus.web.core import Verifier, get_verifier, render_group, render_job

__all__ = ["SafeHTML", "render_group_widget", "render_widget", "widget_script_tag"]

#: How many characters of the job id the fallback text shows.
SHORT_ID: Final = 8


class SafeHTML(str):
    """HTML that templates insert unescaped: Jinja2 and Django honour ``__html__``."""

    __slots__ = ()

    def __html__(self) -> str:
        """Return the HTML itself (what ``markupsafe`` and Django's ``conditional_escape`` ask)."""
        return str(self)


def _text(value: object, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidInput(
        f"render_widget: {name} must be a string or None, not {type(value).__name__}"
    )


def _fallback(job_id: str, label: str | None, kind: str = "Job") -> str:
    short = job_id if len(job_id) <= SHORT_ID else f"{job_id[:SHORT_ID]}…"
    return f"{label} — waiting" if label else f"{kind} {short} — waiting"


def _element(tag: str, attributes: dict[str, str | None], text: str) -> SafeHTML:
    """``<tag ...>text</tag>``, every attribute and the text escaped; ``None`` ones left out."""
    written = "".join(
        f' {name}="{html.escape(value, quote=True)}"'
        for name, value in attributes.items()
        if value is not None
    )
    return SafeHTML(f"<{tag}{written}>{html.escape(text, quote=False)}</{tag}>")


def render_widget(
    job: object,
    job_class: str | None = None,
    *,
    subject: str | None = None,
    label: str | None = None,
    verify_url: str | None = None,
    cancel_url: str | None = None,
    verifier: Verifier | None = None,
) -> SafeHTML:
    """Return the ``<immortus-job>`` element following ``job``, its token signed for ``subject``.

    ``job`` is anything :func:`immortus.web.render_job` accepts (a job id, a mapping with
    ``job_id``, a queue's job object); ``job_class`` overrides the class it carries. ``subject``
    binds the token to the user or session of the request rendering the page (as the routes'
    subject function reads it). ``label`` titles the card, ``verify_url`` points the widget at
    a custom verify endpoint instead of the immortus routes, ``cancel_url`` adds its Cancel
    button. ``verifier`` defaults to the current settings' one. Nothing is read from any store.

    Raises:
        EndpointsNotSecured: no secret key, and the routes were not declared open (the widget
            would only ever read a 500).
        InvalidInput: ``job`` carries no usable job id, a job class or ``subject`` is
            malformed, or a text argument is not a string (never a broken element).
    """
    chosen = verifier or get_verifier()
    chosen.require_secured()
    _text(subject, "subject")
    if isinstance(job, str):
        check_job_id(job)  # the common case, refused with the exact reason
    if job_class is not None:
        check_job_class(job_class)
    label, verify_url, cancel_url = (
        _text(label, "label"),
        _text(verify_url, "verify_url"),
        _text(cancel_url, "cancel_url"),
    )
    answer = render_job(job, job_class, subject=subject, verifier=chosen)
    if answer.status != 200:
        raise InvalidInput(
            f"render_widget cannot follow a {type(job).__name__}: it carries no usable job id, "
            "or the job class it carries is malformed (the 'immortus.web' log says which)"
        )
    body = answer.body
    attributes = {
        "job-id": body["job_id"],
        "job-class": body.get("job_class"),
        "token": body.get("token"),
        "label": label,
        "verify-url": verify_url,
        "cancel-url": cancel_url,
    }
    return _element("immortus-job", attributes, _fallback(body["job_id"], label))


def render_group_widget(
    group: object,
    *,
    subject: str | None = None,
    label: str | None = None,
    verifier: Verifier | None = None,
) -> SafeHTML:
    """Return the ``<immortus-group>`` element following ``group``, its token for ``subject``.

    ``group`` is a group id or an :class:`immortus.group`; ``subject`` and ``verifier`` as in
    :func:`render_widget`; ``label`` titles the card (default ``Group``). The fallback text
    (``Import — waiting``) shows until the script runs. Nothing is read from any store.

    Raises:
        EndpointsNotSecured: no secret key, and the routes were not declared open.
        InvalidInput: the group id is malformed, or a text argument is not a string.
    """
    chosen = verifier or get_verifier()
    chosen.require_secured()
    _text(subject, "subject")
    label = _text(label, "label")
    check_group_id(getattr(group, "group_id", group))  # refused with the exact reason
    body = render_group(group, subject=subject, verifier=chosen).body
    attributes = {"group-id": body["group_id"], "token": body.get("token"), "label": label}
    return _element("immortus-group", attributes, _fallback(body["group_id"], label, "Group"))


def widget_script_tag(prefix: str = "/immortus", *, nonce: str | None = None) -> SafeHTML:
    """Return the ``<script defer>`` loading ``{prefix}/immortus.js``, which defines the widget.

    Loaded from the routes' prefix, the widget follows jobs there without a ``base-url``.
    ``nonce`` is the page's Content-Security-Policy nonce, if it uses one.

    Raises:
        InvalidInput: ``prefix`` or ``nonce`` is not a string.
    """
    src = (_text(prefix, "prefix") or "").rstrip("/") + "/immortus.js"
    given = _text(nonce, "nonce")
    extra = "" if given is None else f' nonce="{html.escape(given, quote=True)}"'
    return SafeHTML(f'<script src="{html.escape(src, quote=True)}"{extra} defer></script>')
