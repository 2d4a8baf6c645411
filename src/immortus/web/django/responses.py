"""The web core's answers as Django responses, and ``render_job_response`` for enqueue views."""

from __future__ import annotations

from django.http import HttpResponse

from immortus.web.responders import JobResponder, job_responder
from immortus.web.responses import WebResponse

__all__ = ["json_response", "render_job_response"]


def json_response(answer: WebResponse) -> HttpResponse:
    """Return ``answer`` as an :class:`HttpResponse`: its status, headers and encoded body."""
    return HttpResponse(answer.content(), status=answer.status, headers=dict(answer.headers))


#: :func:`immortus.web.render_job` as a Django ``HttpResponse``, for an enqueue view.
render_job_response: JobResponder[HttpResponse] = job_responder(
    json_response,
    "With ``IMMORTUS_SUBJECT`` set, pass ``subject=subject_of(request)`` (see :mod:`.subject`).",
)
