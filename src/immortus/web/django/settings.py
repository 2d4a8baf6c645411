"""Django settings → :func:`immortus.configure`: the ``IMMORTUS`` dict, and a token key.

    IMMORTUS = {"store": "sqlite:///var/jobs.db", "token_max_age": 3600}

``IMMORTUS`` holds keyword arguments of :func:`immortus.configure` (the fields of
:class:`immortus.config.Config`). Unless it names ``secret_key``, job tokens are signed with a
key derived from Django's ``SECRET_KEY``: the HMAC-SHA256 of :data:`TOKEN_KEY_SALT` under
``SECRET_KEY``, so ``SECRET_KEY`` itself never keys another HMAC. With ``"secret_key": None``
the routes refuse to serve (system check ``immortus.E003``) unless ``IMMORTUS`` also declares
``"open_endpoints": True``.

``IMMORTUS["streams"]`` bounds the event streams: a dict of
:class:`~immortus.web.stream_limits.StreamLimits` fields (``{"max_open": 8, "lifetime": 120}``)
that change the defaults of the server the request came through (see :func:`stream_limits`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, Final

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from immortus import config
from immortus.exceptions import ConfigurationError
from immortus.web.stream_limits import StreamLimits

__all__ = [
    "SETTING",
    "TOKEN_KEY_SALT",
    "configure_from_settings",
    "derive_secret_key",
    "immortus_settings",
    "stream_limits",
]

#: The name of the Django setting immortus reads.
SETTING: Final = "IMMORTUS"
#: The message signed with ``SECRET_KEY`` to derive the token key; changing it voids tokens.
TOKEN_KEY_SALT: Final = b"immortus.web.django.tokens"
#: The key of ``IMMORTUS`` that bounds the event streams (not a :func:`immortus.configure` one).
STREAMS: Final = "streams"


def derive_secret_key(secret_key: str | bytes) -> str:
    """Return the token key derived from Django's ``SECRET_KEY``: hex HMAC-SHA256 of the salt.

    Raises:
        ImproperlyConfigured: ``secret_key`` is empty.
    """
    if not secret_key:
        raise ImproperlyConfigured("SECRET_KEY must not be empty: immortus signs tokens with it")
    raw = secret_key.encode("utf-8") if isinstance(secret_key, str) else secret_key
    return hmac.new(raw, TOKEN_KEY_SALT, hashlib.sha256).hexdigest()


def immortus_settings(source: Any = None) -> dict[str, Any]:
    """Return the keyword arguments of :func:`immortus.configure` that Django's settings ask for.

    ``source`` is a settings object (``django.conf.settings`` by default): its ``IMMORTUS``
    dict (optional) and, when that names no ``secret_key``, its ``SECRET_KEY``. Each value is
    checked here, so nothing is applied when one is wrong.

    Raises:
        ImproperlyConfigured: ``IMMORTUS`` is not a dict, names an unknown setting or holds an
            unusable value (the message names the key), or ``SECRET_KEY`` is empty.
    """
    source = django_settings if source is None else source
    declared = getattr(source, SETTING, None)
    if declared is None:
        declared = {}
    if not isinstance(declared, Mapping):
        raise ImproperlyConfigured(
            f"{SETTING} must be a dict of immortus.configure() settings, "
            f"not {type(declared).__name__}"
        )
    known = {field.name for field in dataclasses.fields(config.Config)}
    translated: dict[str, Any] = {}
    for key, value in declared.items():
        if key == STREAMS:
            stream_limits(asgi=False, source=source)  # checked now, read at each stream
            continue
        if key not in known:
            raise ImproperlyConfigured(
                f"{SETTING}[{key!r}] is not an immortus setting; known settings: "
                f"{', '.join(sorted(known))}"
            )
        try:
            config.Config(**{key: value})
        except ConfigurationError as exc:
            raise ImproperlyConfigured(f"{SETTING}[{key!r}]: {exc}") from exc
        translated[key] = value
    if "secret_key" not in translated:
        translated["secret_key"] = derive_secret_key(source.SECRET_KEY)
    return translated


def configure_from_settings(source: Any = None) -> config.Config:
    """Apply :func:`immortus_settings` with :func:`immortus.configure`; return the new settings.

    Called once, by the app's ``ready()``. Settings ``IMMORTUS`` does not name keep their value.

    Raises:
        ImproperlyConfigured: as :func:`immortus_settings`.
    """
    translated = immortus_settings(source)
    try:
        return config.configure(**translated)
    except ConfigurationError as exc:  # checked one by one above; kept for safety
        raise ImproperlyConfigured(f"{SETTING}: {exc}") from exc


def stream_limits(*, asgi: bool, source: Any = None) -> StreamLimits:
    """Return the stream limits of a request served under ASGI (or WSGI), as settings ask.

    The server kind's defaults (:meth:`StreamLimits.asgi` or :meth:`StreamLimits.wsgi`), with
    the fields ``IMMORTUS["streams"]`` names (read from ``source``, by default
    ``django.conf.settings``, at each call).

    Raises:
        ImproperlyConfigured: ``IMMORTUS["streams"]`` is not a dict, names an unknown field or
            holds an unusable value.
    """
    source = django_settings if source is None else source
    declared = getattr(source, SETTING, None) or {}
    changes = declared.get(STREAMS) if isinstance(declared, Mapping) else None
    if changes is None:
        changes = {}
    if not isinstance(changes, Mapping):
        raise ImproperlyConfigured(
            f"{SETTING}[{STREAMS!r}] must be a dict of stream limits, not {type(changes).__name__}"
        )
    try:
        return StreamLimits.asgi(**changes) if asgi else StreamLimits.wsgi(**changes)
    except ConfigurationError as exc:
        raise ImproperlyConfigured(f"{SETTING}[{STREAMS!r}]: {exc}") from exc
