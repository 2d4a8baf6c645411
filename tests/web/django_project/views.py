"""What a user of the Django adapter writes (docs/django.md shows the same code)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import engines
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

import immortus
from immortus import lifecycle
from immortus.web.django import render_job_response, subject_of
from tests.web.http_contract import REPORT

#: A page that enqueues jobs from JavaScript: the CSRF token in the meta tag the client reads.
PAGE = """<!doctype html>
<html><head><meta name="csrf-token" content="{{ csrf_token }}"></head><body></body></html>
"""


@require_GET
def page(request: HttpRequest) -> HttpResponse:
    """The page: renders the CSRF token (and sets the ``csrftoken`` cookie)."""
    return HttpResponse(engines["django"].from_string(PAGE).render({}, request))


@require_POST
def start_report(request: HttpRequest, job_id: str) -> HttpResponse:
    """An enqueue view, CSRF-protected: the job is 'enqueued' here and rendered for the page."""
    lifecycle.job_enqueued(job_id, REPORT)  # a real app: job = build_report.delay(...)
    return render_job_response(job_id, REPORT)


@require_POST
def start_custom_report(request: HttpRequest, job_id: str) -> JsonResponse:
    """An enqueue view handing the JS client a custom verify endpoint as ``verify_job_url``."""
    lifecycle.job_enqueued(job_id, REPORT)
    url = request.build_absolute_uri(reverse("report_status", args=[job_id]))
    return JsonResponse({"verify_job_url": url})


@require_GET
def report_status(request: HttpRequest, job_id: str) -> JsonResponse:
    """A custom verify endpoint: the JS client polls it until ``completed`` is true."""
    job = immortus.status(job_id, REPORT)
    body = {"job_id": job.job_id, "completed": job.completed, "success": job.success}
    if job.success:
        body["download_url"] = request.build_absolute_uri(f"/reports/{job_id}.pdf")
    status = 404 if job.state is immortus.State.UNKNOWN else 200
    return JsonResponse(body, status=status, headers={"Cache-Control": "no-store"})


def user_of(request: HttpRequest) -> str | None:
    """``IMMORTUS_SUBJECT``: the user a header names (a real app: ``str(request.user.pk)``)."""
    return request.headers.get("X-User")


@require_POST
def start_bound_report(request: HttpRequest, job_id: str) -> HttpResponse:
    """An enqueue view binding the job's token to the user who enqueued it."""
    lifecycle.job_enqueued(job_id, REPORT)
    return render_job_response(job_id, REPORT, subject=subject_of(request))
