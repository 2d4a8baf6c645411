"""Where the private servers listen: 127.0.0.1, on a port nothing else holds."""

from __future__ import annotations

import socket
from typing import Final

#: The only address the private servers bind.
HOST: Final = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port
