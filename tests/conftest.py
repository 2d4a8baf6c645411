"""Fixtures shared by the whole test suite.

Real services: ``redis_server`` and ``postgres_server`` start a private server once per
session, the first time a test asks for one. ``redis_url`` and ``postgres_url`` hand each test
an empty database on it. Tests that use them are marked ``redis`` / ``postgresql``, so
``-m "not postgresql"`` deselects them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from immortus import outbox
from tests.services import PostgresServer, RedisServer


@pytest.fixture(autouse=True)
def no_outage_outlives_its_test() -> Iterator[None]:
    """Give up what a test left held for a store it took down, and end the replay thread.

    Otherwise the thread retries a dead store for the rest of the session, and its client's
    back-off draws from the global ``random`` state while Hypothesis tests generate data.
    """
    yield
    outbox.discard()


# -- real services -------------------------------------------------------------------------

_SERVICE_MARKERS = {
    "redis_server": "redis",
    "redis_url": "redis",
    "postgres_server": "postgresql",
    "postgres_url": "postgresql",
}


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that use a real service with the service's marker."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for marker in sorted({_SERVICE_MARKERS[f] for f in fixtures if f in _SERVICE_MARKERS}):
            item.add_marker(marker)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for the session (or the one IMMORTUS_TEST_REDIS_URL names)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of an empty Redis database: restarted if a test stopped it, flushed before the test."""
    redis_server.ensure_running()
    redis_server.flushdb()
    return redis_server.url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL for the session (or the one IMMORTUS_TEST_POSTGRES_URL names)."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL of an empty database: restarted if needed, schemas reset before the test."""
    postgres_server.ensure_running()
    postgres_server.reset()
    return postgres_server.url
