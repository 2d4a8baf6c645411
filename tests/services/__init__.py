"""Real Redis and PostgreSQL servers for the test suite.

Each server runs privately: its own port on 127.0.0.1, its own temporary directory, no
persistence to speak of. Tests can stop, kill and restart it to exercise store outages.

A missing binary or a server that does not come up is an error, never a skip: ``make test``
installs both (``scripts/install-system-deps.sh``).

To run against servers you already have instead, set ``IMMORTUS_TEST_REDIS_URL`` (a
``redis://`` URL) or ``IMMORTUS_TEST_POSTGRES_URL`` (a SQLAlchemy or libpq URL). Their data is
wiped between tests, and tests that stop, kill or restart the server then fail with
:class:`ManagedServerRequiredError`.
"""

from tests.services.base import ManagedServerRequiredError, ServiceError, free_port
from tests.services.postgres_server import PostgresServer, find_postgres_bindir
from tests.services.redis_server import RedisServer

__all__ = [
    "ManagedServerRequiredError",
    "PostgresServer",
    "RedisServer",
    "ServiceError",
    "find_postgres_bindir",
    "free_port",
]
