"""The web core's answers as Django responses, and ``render_job_response`` for enqueue views."""

from __future__ import annotations

from django.http import HttpResponse

from immortus.web.core import Verifier, render_job
from immortus.web.responses import WebResponse

__all__ = ["json_response", "render_job_response"]


def json_response(answer: WebResponse) -> HttpResponse:
    """Return ``answer`` as an :class:`HttpResponse`: its status, headers and encoded body."""
    return HttpResponse(answer.content(), status=answer.status, headers=dict(answer.headers))


def render_job_response(
    job: object,
    job_class: str | None = None,
    *,
    verifier: Verifier | None = None,
    subject: str | None = None,
) -> HttpResponse:
    """:func:`immortus.web.render_job` as a Django response, for an enqueue view.

    With ``IMMORTUS_SUBJECT`` set, pass ``subject=subject_of(request)`` (see :mod:`.subject`).
    """
    return json_response(render_job(job, job_class, subject=subject, verifier=verifier))
