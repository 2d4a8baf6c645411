"""The test project's URLconf: immortus in one line, then the user's own views."""

from __future__ import annotations

from django.urls import include, path

from tests.web.django_project import views

urlpatterns = [
    path("immortus/", include("immortus.web.django.urls")),
    path("page", views.page, name="page"),
    path("reports/<str:job_id>", views.start_report, name="start_report"),
    path("bound-reports/<str:job_id>", views.start_bound_report, name="start_bound_report"),
    path("custom-reports/<str:job_id>", views.start_custom_report, name="start_custom_report"),
    path("reports/<str:job_id>/status", views.report_status, name="report_status"),
]
