"""Fixtures of the web core's tests: fresh settings per test, a memory store, fault injection."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest

from immortus import JobStatus, config
from immortus.exceptions import StoreUnavailable
from immortus.stores.memory import MemoryStore
from tests.support import pristine_immortus


@pytest.fixture(autouse=True)
def fresh_immortus() -> Iterator[None]:
    """Default settings with the routes declared open, the jobs declared at import time.

    Nothing logged once per process yet. Without a secret key the routes serve nothing unless
    declared open: a test of that sets ``open_endpoints=False`` (or a secret key) itself.
    """
    with pristine_immortus():
        config.configure(open_endpoints=True)
        yield


@contextmanager
def routes_declared_open() -> Iterator[None]:
    """Declare the routes open for the block: for apps built at import, before any fixture.

    Flask refuses to register routes that would serve nothing (no key, not declared open).
    """
    config.configure(open_endpoints=True)
    try:
        yield
    finally:
        config.reset()


class FaultyStore(MemoryStore):
    """A real memory store that counts its reads and can be switched off."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.reads = 0

    def get(self, job_id: str) -> JobStatus | None:
        self._read()
        return super().get(job_id)

    def get_nowait(self, job_id: str) -> JobStatus | None:
        self._read()
        return super().get_nowait(job_id)

    def get_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        self._read()
        return super().get_many(job_ids)

    def _read(self) -> None:
        self.reads += 1
        if self.down:
            raise StoreUnavailable("cannot reach db-7.internal:5432 (connection refused)")


@pytest.fixture
def store() -> FaultyStore:
    """A memory store (with fault injection) configured as immortus's store."""
    store = FaultyStore()
    config.configure(store=store, progress_interval=0)
    return store
