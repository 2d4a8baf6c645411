"""The private servers of :mod:`devservices`, under the names the tests have always imported."""

from devservices import (
    ManagedServerRequiredError,
    PostgresServer,
    RedisServer,
    ServiceError,
    find_postgres_bindir,
    free_port,
)

__all__ = [
    "ManagedServerRequiredError",
    "PostgresServer",
    "RedisServer",
    "ServiceError",
    "find_postgres_bindir",
    "free_port",
]
