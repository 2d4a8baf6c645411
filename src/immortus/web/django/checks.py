"""Django system checks: ``manage.py check`` (and ``runserver``, ``migrate``) report these.

=================  ===========================================================================
``immortus.E001``  the immortus URLs are included, but ``"immortus.web.django"`` is not in
                   ``INSTALLED_APPS``: ``IMMORTUS`` would be ignored and no token key derived
``immortus.E002``  ``IMMORTUS`` names an unknown setting or holds an unusable value
``immortus.E003``  the routes have no secret key and are not declared open: they answer 500
=================  ===========================================================================

With the app installed, its ``ready()`` registers E002 and E003 (and itself refuses to start on
a bad ``IMMORTUS``). Without it nothing would register them, so the URLconf carries them: its
last pattern is a :class:`CheckedURLPattern`, which Django checks with every pattern of the
project's URLconf, and which reports all three when the app is missing.
"""

from __future__ import annotations

from typing import Any, Final

from django.apps import apps
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.urls import URLPattern

from immortus.exceptions import EndpointsNotSecured
from immortus.web.core import get_verifier
from immortus.web.django.settings import SETTING, immortus_settings

__all__ = ["APP", "CheckedURLPattern", "check_secured", "check_settings", "register"]

#: The app's name in ``INSTALLED_APPS``.
APP: Final = "immortus.web.django"


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E002: every key of ``IMMORTUS`` is an immortus setting with a usable value."""
    try:
        immortus_settings()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint=f"Fix the {SETTING} setting.", id="immortus.E002")]
    return []


def check_secured(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E003: the routes serve (a secret key, or declared open), as immortus is set up now."""
    try:
        get_verifier().require_secured()
    except EndpointsNotSecured as exc:
        hint = (
            f'Leave "secret_key" out of {SETTING} (the key is then derived from SECRET_KEY), '
            f'or declare public routes with {SETTING} = {{"open_endpoints": True, ...}}.'
        )
        return [checks.Error(str(exc), hint=hint, id="immortus.E003")]
    return []


def check_installed() -> list[checks.CheckMessage]:
    """E001, then E002 and E003 (which nothing else registered): when the app is missing."""
    if apps.is_installed(APP):
        return []
    missing = checks.Error(
        f"the immortus URLs are included, but {APP!r} is not in INSTALLED_APPS: the {SETTING} "
        "setting is ignored and no token key is derived from SECRET_KEY",
        hint=f"Add {APP!r} to INSTALLED_APPS.",
        id="immortus.E001",
    )
    return [missing, *check_settings(), *check_secured()]


def register() -> None:
    """Register E002 and E003 with Django's check framework (the app's ``ready()`` does)."""
    checks.register(check_settings)
    checks.register(check_secured, checks.Tags.security)


class CheckedURLPattern(URLPattern):
    """A URL pattern that also reports :func:`check_installed`'s errors when Django checks it."""

    def check(self) -> list[checks.CheckMessage]:
        """Called by Django's URL checks, for every pattern of the project's URLconf."""
        return [*super().check(), *check_installed()]
