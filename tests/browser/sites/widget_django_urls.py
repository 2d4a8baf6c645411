"""The URLconf of the Django widget-helper site (``widget_django_site``)."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import URLPattern, URLResolver, include, path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from tests.browser.sites import done_when, jobs, widget_pages


@require_GET
def blank(request: HttpRequest) -> HttpResponse:
    return HttpResponse(jobs.BLANK_PAGE)


@csrf_exempt  # the test drives it; only the immortus cancel route is CSRF-protected
@require_POST
def create_job(request: HttpRequest) -> JsonResponse:
    job_id, job_class = jobs.start_job(json.loads(request.body))
    return JsonResponse(widget_pages.job_of(job_id, job_class))


@csrf_exempt
@require_POST
def step_job(request: HttpRequest, job_id: str) -> JsonResponse:
    released = jobs.BOARD.step(job_id)
    return JsonResponse({"released": released}, status=200 if released else 404)


@require_GET
def report(request: HttpRequest, job_id: str, job_class: str) -> HttpResponse:
    job = widget_pages.job_of(job_id, job_class)
    return render(request, "report.html", {"job": job})


@csrf_exempt
@require_POST
def start_scene(request: HttpRequest) -> JsonResponse:
    return JsonResponse(done_when.start())


@require_GET
def scene_page(request: HttpRequest, scene: str) -> HttpResponse:
    context = done_when.page_context(scene)
    if context is None:
        return HttpResponse("no such scene", status=404)
    return render(request, "imports.html", context)


@csrf_exempt
@require_POST
def finish_scene(request: HttpRequest, scene: str) -> JsonResponse:
    finished = done_when.finish(scene)
    return JsonResponse({"finished": finished}, status=200 if finished else 404)


urlpatterns: list[URLPattern | URLResolver] = [
    path("pages/blank", blank),
    path("jobs", create_job),
    path("jobs/<str:job_id>/step", step_job),
    path("report/<str:job_id>/<str:job_class>", report),
    path("imports", start_scene),
    path("imports/<str:scene>", scene_page),
    path("imports/<str:scene>/finish", finish_scene),
    path("immortus/", include("immortus.web.django.urls")),
]
