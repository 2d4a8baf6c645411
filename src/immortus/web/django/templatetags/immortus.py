"""``{% load immortus %}``: the ``<immortus-job>`` and ``<immortus-group>`` widgets in Django.

    {% load immortus %}
    {% immortus_script %}
    {% immortus_job job label="Quarterly report" %}
    {% immortus_group group_id label="Import" %}

``{% immortus_job job [job_class=...] [label=...] [verify_url=...] [cancel_url=...] %}`` is
:func:`immortus.web.widget.render_widget`: the element, its token signed for the subject of the
template's request (the ``IMMORTUS_SUBJECT`` function, as the immortus views read it; render
the template with its request, ``render(request, ...)``). ``{% immortus_script [nonce=...] %}``
loads ``immortus.js`` from where ``immortus.web.django.urls`` is included.
``{% immortus_group group [label=...] %}`` is
:func:`~immortus.web.widget.render_group_widget`, its token bound as the job's is.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse

from immortus.exceptions import ConfigurationError
from immortus.web.django.subject import SUBJECT_SETTING, subject_of
from immortus.web.widget import SafeHTML, render_group_widget, render_widget, widget_script_tag

__all__ = ["immortus_group", "immortus_job", "immortus_script", "register"]

register = template.Library()


def _request_subject(context: template.Context) -> str | None:
    """The subject of the template's request; ``None`` when tokens are bound to no one.

    Raises:
        ConfigurationError: ``IMMORTUS_SUBJECT`` is set, but the template has no request.
    """
    request: Any = getattr(context, "request", None) or context.get("request")
    if isinstance(request, HttpRequest):
        return subject_of(request)
    if getattr(settings, SUBJECT_SETTING, None) is None:
        return None
    raise ConfigurationError(
        f"{{% immortus_job %}} needs the request to bind its token ({SUBJECT_SETTING} is set): "
        "render the template with it, render(request, ...)"
    )


@register.simple_tag(takes_context=True)
def immortus_job(
    context: template.Context,
    job: object,
    job_class: str | None = None,
    *,
    label: object = None,
    verify_url: str | None = None,
    cancel_url: str | None = None,
) -> SafeHTML:
    """Render the widget of ``job`` (a job id, a mapping with ``job_id``, a queue's job).

    Raises:
        EndpointsNotSecured, InvalidInput: as :func:`~immortus.web.widget.render_widget`.
        ConfigurationError: ``IMMORTUS_SUBJECT`` is set and the template has no request.
        ImproperlyConfigured: ``IMMORTUS_SUBJECT`` names no function.
    """
    return render_widget(
        job,
        job_class,
        subject=_request_subject(context),
        label=None if label is None else str(label),  # a lazy translation is text too
        verify_url=verify_url,
        cancel_url=cancel_url,
    )


@register.simple_tag(takes_context=True)
def immortus_group(context: template.Context, group: object, *, label: object = None) -> SafeHTML:
    """Render the widget of ``group`` (a group id, or an ``immortus.group``).

    Raises:
        EndpointsNotSecured, InvalidInput: as :func:`~immortus.web.widget.render_group_widget`.
        ConfigurationError: ``IMMORTUS_SUBJECT`` is set and the template has no request.
    """
    return render_group_widget(
        group,
        subject=_request_subject(context),
        label=None if label is None else str(label),
    )


@register.simple_tag
def immortus_script(nonce: str | None = None) -> SafeHTML:
    """Render the ``<script>`` of ``immortus.js``, found with ``reverse("immortus:script")``.

    Raises:
        NoReverseMatch: ``immortus.web.django.urls`` is not included in the URLconf.
    """
    return widget_script_tag(reverse("immortus:script").removesuffix("/immortus.js"), nonce=nonce)
