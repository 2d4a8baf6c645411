"""Store URLs: :func:`redact_url` hides their passwords, :func:`take_options` reads our options.

:func:`take_options` takes immortus's own options out of a URL's query before a driver sees it.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote_plus

__all__ = ["redact_url", "take_options"]

#: ``user:secret@`` in the authority part, with or without a ``scheme://`` before it.
_USERINFO: Final = re.compile(r"^(?P<head>(?:[^:/?#@]+://)?[^:/?#@]*:)[^/]*(?=@)")
#: ``password=…`` in the query string (libpq and redis-py both accept it there).
_QUERY_PASSWORD: Final = re.compile(r"(?i)([?&]password=)[^&#]*")


def redact_url(url: str) -> str:
    """Return ``url`` with every password it carries replaced by ``***``.

    Both the user part's password and a ``password=`` query value are hidden; the result is
    fit for logs, error messages and the terminal.

    >>> redact_url("postgresql://app:s3cret@db/jobs?password=x")
    'postgresql://app:***@db/jobs?password=***'
    >>> redact_url("app:s3cret@db/jobs")
    'app:***@db/jobs'
    """
    hidden = _USERINFO.sub(r"\g<head>***", url, count=1)
    return _QUERY_PASSWORD.sub(r"\1***", hidden)


def take_options(url: str, names: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """Remove the query parameters ``names`` from ``url``; return the rest and their values.

    Values are percent-decoded (``prefix=%7Bapp%7D%3A`` is ``{app}:``); the other parameters,
    and everything else in the URL, are left exactly as written.

    >>> take_options("redis://h/0?prefix=app:&db=0", ("prefix",))
    ('redis://h/0?db=0', {'prefix': 'app:'})
    """
    head, mark, query = url.partition("?")
    query, hash_mark, fragment = query.partition("#")
    kept: list[str] = []
    taken: dict[str, str] = {}
    for part in query.split("&") if mark else ():
        name, _, value = part.partition("=")
        if unquote_plus(name) in names:
            taken[unquote_plus(name)] = unquote_plus(value)
        elif part:
            kept.append(part)
    rest = head + ("?" + "&".join(kept) if kept else "") + hash_mark + fragment
    return rest, taken
