"""The Django app of immortus: it configures immortus from the ``IMMORTUS`` setting."""

from __future__ import annotations

from django.apps import AppConfig

from immortus.web.django import checks
from immortus.web.django.settings import configure_from_settings


class ImmortusConfig(AppConfig):
    """``"immortus.web.django"`` in ``INSTALLED_APPS``; the app label is ``immortus``."""

    name = "immortus.web.django"
    label = "immortus"
    verbose_name = "immortus"

    def ready(self) -> None:
        """Called once by ``django.setup()``: apply ``settings.IMMORTUS``, register the checks.

        Raises:
            ImproperlyConfigured: ``IMMORTUS`` names an unknown setting or holds a bad value
                (the message names the key), or ``SECRET_KEY`` is empty.
        """
        configure_from_settings()
        checks.register()
