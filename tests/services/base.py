"""The helpers of :mod:`devservices`, under the names the tests have always imported."""

from devservices.net import HOST, free_port
from devservices.processes import pid_alive, tail, wait_until
from devservices.server import (
    APT_HINT,
    ManagedServerRequiredError,
    Server,
    ServiceError,
    install_hint,
)

__all__ = [
    "APT_HINT",
    "HOST",
    "ManagedServerRequiredError",
    "Server",
    "ServiceError",
    "free_port",
    "install_hint",
    "pid_alive",
    "tail",
    "wait_until",
]
