"""Private servers and processes for immortus's tests and benchmarks (a development package).

Each server runs privately: its own port on 127.0.0.1, its own temporary directory, no
persistence to speak of. A caller can stop, kill and restart it to exercise store outages.
The tests get them as pytest fixtures (:mod:`devservices.pytest_plugin`); the benchmarks use
the classes as context managers::

    with RedisServer() as redis_server:
        run_against(redis_server.url)

A missing binary or a server that does not come up is an error, never a skip: ``make test``
and ``make bench`` install both (``scripts/install-system-deps.sh``).

To run against servers you already have instead, set ``IMMORTUS_TEST_REDIS_URL`` (a
``redis://`` URL) or ``IMMORTUS_TEST_POSTGRES_URL`` (a SQLAlchemy or libpq URL). Their data is
wiped between tests, and whatever stops, kills or restarts the server then fails with
:class:`ManagedServerRequiredError`.

Modules: :mod:`~devservices.server` (what the servers share), :mod:`~devservices.redis_server`,
:mod:`~devservices.redis_cluster` (a six-node Redis Cluster),
:mod:`~devservices.postgres_server`, :mod:`~devservices.net` (ports),
:mod:`~devservices.processes` (waiting for, reading and ending the processes a caller starts).
"""

from devservices.net import HOST, free_port
from devservices.postgres_server import PostgresServer, find_postgres_bindir
from devservices.processes import end_process, pid_alive, tail, wait_until
from devservices.redis_cluster import RedisClusterServer
from devservices.redis_server import RedisServer
from devservices.server import ManagedServerRequiredError, Server, ServiceError

__all__ = [
    "HOST",
    "ManagedServerRequiredError",
    "PostgresServer",
    "RedisClusterServer",
    "RedisServer",
    "Server",
    "ServiceError",
    "end_process",
    "find_postgres_bindir",
    "free_port",
    "pid_alive",
    "tail",
    "wait_until",
]
