"""The web core's answers as Django responses, and ``render_job_response`` for enqueue views."""

from __future__ import annotations

from django.http import HttpResponse

from immortus.web.core import Verifier, get_verifier
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
    """Answer an enqueue view with what the browser needs: ``{job_id, job_class[, token]}``.

    The seed's ``render_immortus``: 200 with the job's id, class and (with a secret key) token,
    or 500 ``{}`` when ``job`` carries no usable job id. ``verifier`` defaults to the one of
    the current settings. The token is bound to ``subject``: with ``IMMORTUS_SUBJECT`` set,
    pass ``subject_of(request)`` (see :mod:`.subject`). See
    :meth:`immortus.web.Verifier.render_job`.
    """
    answer = (verifier or get_verifier()).render_job(job, job_class, subject=subject)
    return json_response(answer)
