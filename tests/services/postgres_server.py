"""The private PostgreSQL of :mod:`devservices`, where the tests have always imported it."""

from devservices.postgres_server import PostgresServer, find_postgres_bindir

__all__ = ["PostgresServer", "find_postgres_bindir"]
