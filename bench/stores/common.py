"""What the store benchmarks share.

The flag that Ctrl-C and SIGTERM set (:data:`STOP`, checked by :func:`go_on`), the short size
names of the tables (:func:`size_label`), the shape of the listings that verification,
measurement and the report all page through (:data:`PAGE`, :func:`deep_page`), and the
``--stores`` option (:func:`add_stores_option`, :func:`chosen_stores`).
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Sequence
from typing import Final

PAGE: Final = 50
DEEP_PAGE: Final = 50  # the page list_jobs reaches by following cursors (fewer at small sizes)


#: Set by Ctrl-C or SIGTERM. The handler raises KeyboardInterrupt, but a raise that lands in a
#: ``__del__`` is swallowed, so the long loops also look at this between steps (:func:`go_on`).
STOP = threading.Event()


def go_on() -> None:
    """Raise KeyboardInterrupt if the run was interrupted."""
    if STOP.is_set():
        raise KeyboardInterrupt


def size_label(size: int) -> str:
    """Return ``1k``, ``100k``, ``1M``, ``2.5k``...: short names for the table."""
    for unit, name in ((1_000_000, "M"), (1_000, "k")):
        if size >= unit:
            return f"{size / unit:g}{name}"
    return str(size)


def deep_page(size: int) -> int:
    """The page the deep listing measures: DEEP_PAGE, or the last full one of a small store."""
    return max(1, min(DEEP_PAGE, size // PAGE))


def add_stores_option(parser: argparse.ArgumentParser, stores: Sequence[str]) -> None:
    """Add ``--stores``: a comma-separated choice among ``stores`` (default: all of them)."""
    parser.add_argument(
        "--stores", default=",".join(stores), help=f"comma-separated, among {', '.join(stores)}"
    )


def chosen_stores(option: str, stores: Sequence[str]) -> list[str] | None:
    """The stores ``--stores`` names, in ``stores``' order; ``None`` if it names another."""
    asked = set(option.split(","))
    names = [name for name in stores if name in asked]
    return names if names and len(names) == len(asked) else None
