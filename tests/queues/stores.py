"""immortus's store as the queue tests share it: an SQLite file per test, and one that is down.

The test process (which enqueues, as a web app would) and the workers it starts (through
``IMMORTUS_STORE``) track into the same SQLite file, in the test's own directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import immortus
from tests.services.base import HOST, free_port
from tests.support import pristine_immortus


@contextmanager
def tracking_into_sqlite(folder: Path) -> Iterator[str]:
    """Run the block on immortus's default settings, tracking into a new SQLite file in ``folder``.

    Yields the store's URL, for the workers' ``IMMORTUS_STORE``. The settings and the jobs
    tracked at import time are restored when the block ends (:func:`pristine_immortus`).
    """
    store_url = f"sqlite:///{folder / 'immortus.sqlite3'}"
    with pristine_immortus():
        immortus.configure(store=store_url)
        yield store_url


def dead_store_url() -> str:
    """Return the URL of a Redis store nothing listens at: a worker's store that is down."""
    return f"redis://{HOST}:{free_port()}/0"
