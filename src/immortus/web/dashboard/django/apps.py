"""The Django app config of the dashboard (optional in ``INSTALLED_APPS``)."""

from __future__ import annotations

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """Registers nothing; present so the dashboard can be listed in ``INSTALLED_APPS``."""

    name = "immortus.web.dashboard.django"
    label = "immortus_dashboard"
    verbose_name = "immortus dashboard"
