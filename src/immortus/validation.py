"""Checks on the names that cross immortus's boundaries: job ids, job classes, group ids.

Every public entry point (lifecycle events, status look-ups, the stores, the CLI, later the web
layer) validates with these before any I/O, so a malformed id is refused with a clear error and
never reaches a store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from immortus.exceptions import InvalidInput, InvalidJobClass, InvalidJobId

__all__ = [
    "MAX_META_BYTES",
    "MAX_NAME_LENGTH",
    "check_group_id",
    "check_job_class",
    "check_job_id",
    "check_meta",
]

#: Longest job id or job class accepted, in characters.
MAX_NAME_LENGTH: Final = 255
#: Largest meta one event may carry, as compact JSON, in characters.
MAX_META_BYTES: Final = 64 * 1024


def _check_name(
    kind: str, value: object, error: type[InvalidInput], *, allow_spaces: bool = True
) -> str:
    if not isinstance(value, str):
        raise error(f"{kind} must be a string, not {type(value).__name__}")
    if not value:
        raise error(f"{kind} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise error(f"{kind} is {len(value)} characters long; the limit is {MAX_NAME_LENGTH}")
    if not value.isprintable():
        raise error(f"{kind} {value[:40]!r} contains non-printable characters")
    if value != value.strip() or (not allow_spaces and " " in value):
        raise error(f"{kind} {value[:40]!r} must not contain spaces")
    return value


def check_job_id(value: object) -> str:
    """Return ``value`` if it is a usable job id.

    A job id is the queue's own id: a non-empty printable string of at most 255 characters
    with no leading or trailing whitespace.

    Raises:
        InvalidJobId: it is not.
    """
    return _check_name("job id", value, InvalidJobId)


def check_group_id(value: object) -> str:
    """Return ``value`` if it is a usable group id: the rules of a job id.

    Raises:
        InvalidInput: it is not.
    """
    return _check_name("group id", value, InvalidInput)


def check_job_class(value: object) -> str:
    """Return ``value`` if it is a usable job class name.

    A job class is the job's stable name (``"reports.build"``, ``"app.tasks:send_mail"``): a
    non-empty printable string of at most 255 characters without spaces.

    Raises:
        InvalidJobClass: it is not.
    """
    return _check_name("job class", value, InvalidJobClass, allow_spaces=False)


def check_meta(meta: object) -> Mapping[str, Any]:
    """Return ``meta`` if it can be stored: a mapping with string keys, JSON-serialisable.

    Raises:
        InvalidInput: it is not a mapping, has a non-string key, holds something JSON cannot
            carry (objects, NaN, infinities), or is over 64 KiB as JSON.
    """
    if not isinstance(meta, Mapping):
        raise InvalidInput(f"meta must be a mapping, not {type(meta).__name__}")
    if not all(isinstance(key, str) for key in meta):
        raise InvalidInput("meta keys must be strings")
    try:
        size = len(json.dumps(dict(meta), separators=(",", ":"), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"meta must be JSON-serialisable: {exc}") from exc
    if size > MAX_META_BYTES:
        raise InvalidInput(f"meta is {size} characters as JSON; the limit is {MAX_META_BYTES}")
    return meta
