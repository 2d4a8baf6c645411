"""A private redis-server for tests and benchmarks: its own port and directory, no persistence."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import redis

from devservices.net import HOST, free_port
from devservices.processes import tail, wait_until
from devservices.server import Server, ServiceError, install_hint


class RedisServer(Server):
    """A private ``redis-server`` on a free port of 127.0.0.1, without persistence.

    With ``append_only``, it logs every write to an append-only file and fsyncs it before
    answering (``appendfsync always``), so a kill() then start() keeps every acknowledged write.
    """

    env_var = "IMMORTUS_TEST_REDIS_URL"
    name = "Redis"

    def __init__(self, *, startup_timeout: float = 15.0, append_only: bool = False) -> None:
        super().__init__()
        self.startup_timeout = startup_timeout
        self.append_only = append_only
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._started_once = False

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, or the URL from ``IMMORTUS_TEST_REDIS_URL``."""
        return self.external_url or f"redis://{HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the redis-server process is up (always True for an external server)."""
        if not self.managed:
            return True
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start redis-server, or restart it on the same port after stop() or kill()."""
        self._require_managed("start")
        if self.running:
            return
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError(f"redis-server is not installed: {install_hint('redis-server')}")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="immortus-redis-"))
        # Before the first successful start the port may be taken by a race; pick another.
        attempts = 1 if self._started_once else 3
        for attempt in range(attempts):
            if self._spawn(binary):
                self._started_once = True
                return
            if attempt + 1 < attempts and "in use" in tail(self._log):
                self.port = free_port()
                continue
            break
        raise ServiceError(
            f"redis-server did not answer PING on {HOST}:{self.port} within "
            f"{self.startup_timeout:.0f}s; its log ({self._log}) ends with:\n{tail(self._log)}"
        )

    @property
    def _log(self) -> Path:
        assert self._dir is not None
        return self._dir / "redis.log"

    def _spawn(self, binary: str) -> bool:
        assert self._dir is not None
        args = [
            binary,
            "--bind", HOST,
            "--port", str(self.port),
            "--save", "",
            *(("--appendonly", "yes", "--appendfsync", "always") if self.append_only
              else ("--appendonly", "no")),
            "--daemonize", "no",
            "--dir", str(self._dir),
            "--logfile", str(self._log),
        ]  # fmt: skip
        with self._log.open("ab") as log:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self._proc = proc

        def ready() -> bool:
            return proc.poll() is not None or _redis_ping(self.port)

        wait_until(ready, self.startup_timeout)
        if proc.poll() is None and _redis_ping(self.port):
            return True
        self._reap(kill=True)
        return False

    def _reap(self, *, kill: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            if kill:
                proc.kill()
            else:
                proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        """Shut redis-server down with SIGTERM (graceful); start() brings it back."""
        self._require_managed("stop")
        self._reap(kill=False)

    def kill(self) -> None:
        """Kill redis-server with SIGKILL; start() brings it back (empty unless append-only)."""
        self._require_managed("kill")
        self._reap(kill=True)

    def flushdb(self) -> None:
        """Empty the database that :attr:`url` selects."""
        with redis.Redis.from_url(self.url) as client:
            client.flushdb()

    def _remove_files(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False
