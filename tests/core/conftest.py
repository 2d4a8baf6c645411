from __future__ import annotations

from collections.abc import Iterator

import pytest

from immortus import config
from immortus.stores.memory import MemoryStore
from tests.support import pristine_immortus


@pytest.fixture(autouse=True)
def fresh_immortus() -> Iterator[None]:
    """Every core test starts with default settings and the jobs declared at import time."""
    with pristine_immortus():
        yield


@pytest.fixture
def memory_store() -> MemoryStore:
    """A memory store, configured as immortus's store, with progress written on every call."""
    store = MemoryStore()
    config.configure(store=store, progress_interval=0)
    return store
