"""Store URLs as they may be shown: :func:`redact_url` hides every password a URL carries."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["redact_url"]

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
