"""The ``IMMORTUS_SUBJECT`` setting: the function that binds job tokens to a user or session.

    # settings.py
    IMMORTUS_SUBJECT = "myapp.immortus.subject"

    # myapp/immortus.py
    def subject(request):
        return str(request.user.pk) if request.user.is_authenticated else None

The setting is the dotted path of a function taking the :class:`~django.http.HttpRequest` and
returning the subject (text) the request's job tokens are bound to, or ``None`` for none. It is
imported at first use, not when Django starts (so it may import models), and again only when
the setting changes. Unset (or ``None``), tokens are bound to no subject.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Final

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.utils.module_loading import import_string

__all__ = ["SUBJECT_SETTING", "subject_of"]

#: The name of the Django setting holding the subject function's dotted path.
SUBJECT_SETTING: Final = "IMMORTUS_SUBJECT"

SubjectOf = Callable[[HttpRequest], str | None]


def subject_of(request: HttpRequest) -> str | None:
    """Return the subject of ``request``: what the ``IMMORTUS_SUBJECT`` function answers.

    ``None`` when the setting is unset. The immortus views call it at each verify, batch and
    stream request; an enqueue view passes it to ``render_job_response(..., subject=...)``.

    Raises:
        ImproperlyConfigured: the setting is not a dotted path, or names nothing callable.
        Exception: whatever the subject function raises.
    """
    path: object = getattr(settings, SUBJECT_SETTING, None)
    if path is None:
        return None
    if not isinstance(path, str):
        raise ImproperlyConfigured(
            f"{SUBJECT_SETTING} must be the dotted path of a function, not {type(path).__name__}"
        )
    return _resolve(path)(request)


@functools.cache
def _resolve(path: str) -> SubjectOf:
    """Import the function at ``path`` (once per path: a changed setting is imported anew)."""
    try:
        found: object = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"{SUBJECT_SETTING} = {path!r} cannot be imported: {exc}"
        ) from exc
    if not callable(found):
        raise ImproperlyConfigured(f"{SUBJECT_SETTING} = {path!r} is not callable")
    return found
