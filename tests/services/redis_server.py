"""The private redis-server of :mod:`devservices`, where the tests have always imported it."""

from devservices.redis_server import RedisServer

__all__ = ["RedisServer"]
