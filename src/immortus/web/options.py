"""The query parameters of a verify request: ``token`` and the ``history`` option.

``history`` asks for the job's attempt history in the body (``"history"``: its past events,
oldest first); bodies leave it out by default, to stay small. Its values: ``1`` or ``true``
(with the history), ``0`` or ``false`` (without); any other is malformed input (400).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from immortus.exceptions import InvalidInput
from immortus.web.tokens import plain_token

__all__ = ["HISTORY_VALUES", "read_query", "wants_history"]

#: Each accepted text of the ``history`` query parameter, and what it asks.
HISTORY_VALUES: Final = {"1": True, "true": True, "0": False, "false": False}


def read_query(query: str, parse: Callable[[], Mapping[str, str]]) -> tuple[str | None, str | None]:
    """Return the ``token`` and ``history`` parameters of the query string ``query``.

    The JavaScript client's query string (``token=...`` alone) is read as it is
    (:func:`~immortus.web.tokens.plain_token`); any other is read from ``parse()``, the
    framework's parsed query (``lambda: request.args``), called only then: even reaching a
    framework's ``request.GET.get`` parses the whole query string.
    """
    if not query:
        return None, None
    plain = plain_token(query)
    if plain is not None:
        return plain, None
    parsed = parse()
    return parsed.get("token"), parsed.get("history")


def wants_history(value: bool | str | None) -> bool:
    """Return whether ``value`` (a flag, or the ``history`` parameter's text) asks for history.

    Raises:
        InvalidInput: ``value`` is text other than ``1``, ``true``, ``0`` or ``false``.
    """
    if value is None or isinstance(value, bool):
        return value is True
    wanted = HISTORY_VALUES.get(value)
    if wanted is None:
        raise InvalidInput("the history query parameter must be 1, true, 0 or false")
    return wanted
