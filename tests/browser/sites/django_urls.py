"""The URLconf of the Django test site (``django_site``)."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.middleware.csrf import get_token
from django.urls import URLPattern, URLResolver, include, path
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from immortus.web.django import render_job_response
from tests.browser.sites import jobs


@require_GET
@ensure_csrf_cookie
def home(request: HttpRequest, name: str = "page") -> HttpResponse:
    text = jobs.page(name, csrf_token=get_token(request))
    return HttpResponse("not found", status=404) if text is None else HttpResponse(text)


@require_POST
def create_job(request: HttpRequest) -> HttpResponseBase:  # CSRF-protected by the middleware
    try:
        job_id, job_class = jobs.start_job(json.loads(request.body))
    except ValueError as exc:
        return HttpResponse(str(exc), status=400)
    return render_job_response(job_id, job_class)


@csrf_exempt
@require_POST
def step_job(request: HttpRequest, job_id: str) -> HttpResponse:
    released = jobs.BOARD.step(job_id)
    return JsonResponse({"released": released}, status=200 if released else 404)


@require_GET
def custom_verify(request: HttpRequest, job_id: str) -> HttpResponse:
    status, body = jobs.custom_verify(job_id)
    return JsonResponse(body, status=status, headers={"Cache-Control": "no-store"})


urlpatterns: list[URLPattern | URLResolver] = [
    path("", home),
    path("pages/<str:name>", home),
    path("jobs", create_job),
    path("jobs/<str:job_id>/step", step_job),
    path("custom/<str:job_id>", custom_verify),
    path("immortus/", include("immortus.web.django.urls")),
]
