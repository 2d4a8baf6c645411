"""``path("ops/jobs/", include("immortus.web.dashboard.django.urls"))`` mounts the dashboard."""

from __future__ import annotations

from django.urls import path

from immortus.web.dashboard.django.views import dashboard

app_name = "immortus_dashboard"
urlpatterns = [
    path("", dashboard, name="index"),
    path("<path:path>", dashboard, name="page"),
]
