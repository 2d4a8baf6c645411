"""The widgets in Jinja2 templates (Flask, Starlette, FastAPI): three template globals.

    from immortus.web.jinja import install

    install(app.jinja_env)                       # Flask
    install(templates.env)                       # Starlette's / FastAPI's Jinja2Templates

    {{ immortus_script() }}
    {{ immortus_job(job, label="Quarterly report") }}
    {{ immortus_group(batch.group_id, label="Import") }}

``immortus_job(job, job_class=None, *, label=None, verify_url=None, cancel_url=None,
subject=...)`` is :func:`immortus.web.widget.render_widget`; ``immortus_group(group, *,
label=None, subject=...)`` is :func:`~immortus.web.widget.render_group_widget`;
``immortus_script()`` is
:func:`~immortus.web.widget.widget_script_tag` of the prefix given to :func:`install`. Both
return HTML that autoescaping leaves alone.

When the app binds tokens to a user, give :func:`install` the function its routes read the
subject with, so that the page's tokens open on those routes: ``subject`` for Flask (the
function given to ``immortus_blueprint(subject=...)``, called without arguments) or
``request_subject`` for Starlette (the function given to ``immortus_routes(subject=...)``,
called with the template's ``request``; it must not be a coroutine function, templates render
synchronously). A template may pass ``subject=`` itself instead.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Final

from immortus.exceptions import ConfigurationError, InvalidInput, MissingDependency
from immortus.web.core import Verifier
from immortus.web.widget import (
    SafeHTML,
    render_group_widget,
    render_widget,
    widget_script_tag,
)

try:
    import jinja2
except ImportError as exc:
    raise MissingDependency("jinja2", "jinja") from exc

__all__ = ["install"]

#: Reads the subject of the current request, as Flask's ``immortus_blueprint(subject=...)``.
SubjectOf = Callable[[], str | None]
#: Reads the subject of a request, as Starlette's ``immortus_routes(subject=...)`` (sync only).
RequestSubjectOf = Callable[[Any], str | None]

#: What a template passes as ``subject`` when it passes none.
_UNSET: Final = object()


def install(
    env: jinja2.Environment,
    *,
    prefix: str = "/immortus",
    subject: SubjectOf | None = None,
    request_subject: RequestSubjectOf | None = None,
    verifier: Verifier | None = None,
) -> None:
    """Register ``immortus_job``, ``immortus_group`` and ``immortus_script`` in ``env``.

    ``prefix`` is where the immortus routes are mounted. ``subject`` or ``request_subject``
    (not both) is called each time a template renders a widget, unless the template passes
    ``subject=``; what it raises propagates out of the rendering, as does what
    :func:`~immortus.web.widget.render_widget` raises (``EndpointsNotSecured``,
    ``InvalidInput``). ``verifier`` defaults to the
    current settings' one, looked up at each rendering.

    Raises:
        ConfigurationError: both ``subject`` and ``request_subject`` are given.
    """
    if subject is not None and request_subject is not None:
        raise ConfigurationError("install() takes subject or request_subject, not both")

    def subject_in(context: jinja2.runtime.Context) -> object:
        if subject is not None:
            return subject()
        if request_subject is None:
            return None
        found: object = request_subject(context.get("request"))
        if inspect.isawaitable(found):
            if inspect.iscoroutine(found):
                found.close()
            raise ConfigurationError(
                "request_subject returned an awaitable: templates render synchronously, so "
                "give install() a plain function (or pass subject= from the view)"
            )
        return found

    @jinja2.pass_context
    def immortus_job(
        context: jinja2.runtime.Context,
        job: object,
        job_class: str | None = None,
        *,
        label: str | None = None,
        verify_url: str | None = None,
        cancel_url: str | None = None,
        subject: object = _UNSET,
    ) -> SafeHTML:
        bound = subject_in(context) if subject is _UNSET else subject
        return render_widget(
            job,
            job_class,
            subject=_text(bound),
            label=label,
            verify_url=verify_url,
            cancel_url=cancel_url,
            verifier=verifier,
        )

    @jinja2.pass_context
    def immortus_group(
        context: jinja2.runtime.Context,
        group: object,
        *,
        label: str | None = None,
        subject: object = _UNSET,
    ) -> SafeHTML:
        bound = subject_in(context) if subject is _UNSET else subject
        return render_group_widget(group, subject=_text(bound), label=label, verifier=verifier)

    def immortus_script(nonce: str | None = None) -> SafeHTML:
        return widget_script_tag(prefix, nonce=nonce)

    env.globals["immortus_job"] = immortus_job
    env.globals["immortus_group"] = immortus_group
    env.globals["immortus_script"] = immortus_script


def _text(subject: object) -> str | None:
    if subject is None or isinstance(subject, str):
        return subject
    raise InvalidInput(f"a widget's subject must be a string or None, not {type(subject).__name__}")
