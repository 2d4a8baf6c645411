"""The private servers as pytest fixtures: ``pytest_plugins = ("devservices.pytest_plugin",)``.

``redis_server``, ``redis_cluster`` and ``postgres_server`` start a private server (or
cluster) once per session, the first time a test asks for one. ``redis_url``,
``redis_cluster_url`` and ``postgres_url`` hand each test an empty database on it, restarting
whatever an earlier test left stopped. Tests that use them are marked ``redis`` /
``postgresql`` (declare both markers), so ``-m "not postgresql"`` deselects them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devservices.postgres_server import PostgresServer
from devservices.redis_cluster import RedisClusterServer
from devservices.redis_server import RedisServer

#: The marker each service fixture gives the tests that use it.
SERVICE_MARKERS = {
    "redis_server": "redis",
    "redis_url": "redis",
    "redis_cluster": "redis",
    "redis_cluster_url": "redis",
    "postgres_server": "postgresql",
    "postgres_url": "postgresql",
}


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Called after collection: mark each test that uses a real service with its marker."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for marker in sorted({SERVICE_MARKERS[f] for f in fixtures if f in SERVICE_MARKERS}):
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
def redis_cluster() -> Iterator[RedisClusterServer]:
    """A private Redis Cluster for the session (or IMMORTUS_TEST_REDIS_CLUSTER_URL's)."""
    with RedisClusterServer() as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterServer) -> str:
    """``redis+cluster://`` URL of an empty cluster: nodes a test killed restarted, all flushed."""
    if redis_cluster.managed:
        redis_cluster.start()  # restarts the nodes that are down, waits until every slot is served
    redis_cluster.flushall()
    return redis_cluster.url


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
