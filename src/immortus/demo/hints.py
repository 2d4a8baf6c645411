"""How the demo names its store on the terminal: never with a password in it."""

from __future__ import annotations

import shlex

from immortus.stores import redact_url

__all__ = ["cli_hint", "shown_store"]


def shown_store(store: str | None) -> str:
    """Return ``store`` as it may be printed: every password hidden (``none`` for no store)."""
    return "none" if store is None else redact_url(store)


def cli_hint(store: str | None, command: str) -> str:
    """Return the ``immortus`` command line that runs ``command`` against ``store``.

    A URL with a password cannot be printed whole, so the line then reads the store from
    ``$IMMORTUS_STORE`` instead, for the reader to set.
    """
    if store is None or redact_url(store) != store:
        return f'immortus --store "$IMMORTUS_STORE" {command}'
    return f"immortus --store {shlex.quote(store)} {command}"
