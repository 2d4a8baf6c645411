"""The URLconf of the Django widget-helper site (``widget_django_site``)."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import URLPattern, URLResolver, include, path
from django.views.decorators.http import require_GET, require_POST

from tests.browser.sites import jobs, widget_pages


@require_GET
def blank(request: HttpRequest) -> HttpResponse:
    return HttpResponse(jobs.BLANK_PAGE)


@require_POST
def create_job(request: HttpRequest) -> JsonResponse:  # no CSRF middleware on this site
    job_id, job_class = jobs.start_job(json.loads(request.body))
    return JsonResponse(widget_pages.job_of(job_id, job_class))


@require_POST
def step_job(request: HttpRequest, job_id: str) -> JsonResponse:
    released = jobs.BOARD.step(job_id)
    return JsonResponse({"released": released}, status=200 if released else 404)


@require_GET
def report(request: HttpRequest, job_id: str, job_class: str) -> HttpResponse:
    job = widget_pages.job_of(job_id, job_class)
    return render(request, "report.html", {"job": job})


urlpatterns: list[URLPattern | URLResolver] = [
    path("pages/blank", blank),
    path("jobs", create_job),
    path("jobs/<str:job_id>/step", step_job),
    path("report/<str:job_id>/<str:job_class>", report),
    path("immortus/", include("immortus.web.django.urls")),
]
