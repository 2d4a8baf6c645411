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

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

import psycopg
import redis
from psycopg import sql

_HOST = "127.0.0.1"
_APT_HINT = "apt-get update && apt-get install -y --no-install-recommends {package}"


class ServiceError(RuntimeError):
    """A test service is not installed, or did not start or stop in time."""


class ManagedServerRequiredError(ServiceError):
    """A test controls the server's life, but the server is an external one from the env."""


def _install_hint(package: str) -> str:
    return (
        f"`make test` installs it (scripts/install-system-deps.sh); "
        f"or install it yourself as root: {_APT_HINT.format(package=package)}"
    )


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _pid_alive(pid: int) -> bool:
    """Tell whether process ``pid`` exists and is not a zombie."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        # No /proc: fall back to a signal probe (which counts zombies as alive).
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # The state follows the parenthesised command name, which may itself contain spaces.
    return stat_line.rpartition(")")[2].split()[0] != "Z"


def _wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class _Server(ABC):
    """What both servers share: external-URL mode, context manager, cleanup at exit."""

    env_var: ClassVar[str]
    name: ClassVar[str]

    def __init__(self) -> None:
        self.external_url: str | None = os.environ.get(self.env_var) or None
        self._closed = False
        if self.external_url is None:
            atexit.register(self.close)

    @property
    def managed(self) -> bool:
        """True when this object runs the server itself (no env override)."""
        return self.external_url is None

    def _require_managed(self, action: str) -> None:
        if not self.managed:
            raise ManagedServerRequiredError(
                f"cannot {action} the {self.name} server from {self.env_var}: this test "
                f"controls the server's life and needs one the test suite starts itself; "
                f"unset {self.env_var} to run it"
            )
        if self._closed:
            raise ServiceError(f"this {self.name} server was closed; make a new one")

    @property
    @abstractmethod
    def running(self) -> bool:
        """Whether the managed server process is up (always True for an external server)."""

    @abstractmethod
    def start(self) -> None:
        """Start the server, or restart it on the same port after stop() or kill()."""

    @abstractmethod
    def stop(self) -> None:
        """Shut the server down gracefully; start() brings it back on the same port."""

    @abstractmethod
    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would; start() brings it back."""

    @abstractmethod
    def _remove_files(self) -> None:
        """Delete the managed server's directories."""

    def ensure_running(self) -> None:
        """Start the managed server if a test left it stopped; no-op for an external one."""
        if self.managed and not self.running:
            self.start()

    def close(self) -> None:
        """Stop the server for good and delete its files; safe to call more than once."""
        if not self.managed or self._closed:
            return
        try:
            if self.running:
                try:
                    self.stop()
                except ServiceError:
                    self.kill()
        finally:
            self._closed = True
            self._remove_files()
            atexit.unregister(self.close)

    def __enter__(self) -> Self:
        if self.managed:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RedisServer(_Server):
    """A private ``redis-server`` on a free port of 127.0.0.1, without persistence."""

    env_var = "IMMORTUS_TEST_REDIS_URL"
    name = "Redis"

    def __init__(self, *, startup_timeout: float = 15.0) -> None:
        super().__init__()
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._started_once = False

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, or the URL from ``IMMORTUS_TEST_REDIS_URL``."""
        return self.external_url or f"redis://{_HOST}:{self.port}/0"

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
            raise ServiceError(f"redis-server is not installed: {_install_hint('redis-server')}")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="immortus-redis-"))
        # Before the first successful start the port may be taken by a race; pick another.
        attempts = 1 if self._started_once else 3
        for attempt in range(attempts):
            if self._spawn(binary):
                self._started_once = True
                return
            if attempt + 1 < attempts and "in use" in _tail(self._log):
                self.port = free_port()
                continue
            break
        raise ServiceError(
            f"redis-server did not answer PING on {_HOST}:{self.port} within "
            f"{self.startup_timeout:.0f}s; its log ({self._log}) ends with:\n{_tail(self._log)}"
        )

    @property
    def _log(self) -> Path:
        assert self._dir is not None
        return self._dir / "redis.log"

    def _spawn(self, binary: str) -> bool:
        assert self._dir is not None
        args = [
            binary,
            "--bind", _HOST,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self._dir),
            "--logfile", str(self._log),
        ]  # fmt: skip
        with self._log.open("ab") as log:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self._proc = proc

        def ready() -> bool:
            return proc.poll() is not None or _redis_ping(self.port)

        _wait_until(ready, self.startup_timeout)
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
        """Kill redis-server with SIGKILL; start() brings it back (empty: no persistence)."""
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
        with socket.create_connection((_HOST, port), timeout=1.0) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


_PG_BINARIES = ("initdb", "pg_ctl", "postgres", "pg_isready")


def find_postgres_bindir() -> Path:
    """Find the directory holding the PostgreSQL server binaries.

    ``pg_ctl`` on PATH first (symlinks resolved, so that ``pg_isready`` comes from the same
    installation, not Debian's wrapper), then the highest ``/usr/lib/postgresql/*/bin``.
    """
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)

    def version(bindir: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in _PG_BINARIES):
            return bindir
    raise ServiceError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_isready) were not found on "
        f"PATH or in /usr/lib/postgresql/*/bin: {_install_hint('postgresql')}"
    )


def _world_searchable(path: Path) -> bool:
    """Tell whether every directory from / down to ``path`` can be entered by anybody."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))


class PostgresServer(_Server):
    """A private PostgreSQL cluster on a free port of 127.0.0.1, with database ``immortus_test``.

    As root, the cluster belongs to and runs as the ``postgres`` OS user (through ``runuser``),
    since PostgreSQL refuses to run as root. Nothing is flushed to disk (fsync, full page
    writes off): that survives a crash of the server, not of the machine, which is all tests
    need. Commits still write their WAL before they return, so kill() then start() runs real
    crash recovery and loses nothing committed; ``synchronous_commit=False`` trades that for
    a little speed (a kill then loses the last few hundred milliseconds of commits).
    """

    env_var = "IMMORTUS_TEST_POSTGRES_URL"
    name = "PostgreSQL"
    database = "immortus_test"
    user = "postgres"

    def __init__(self, *, startup_timeout: float = 60.0, synchronous_commit: bool = True) -> None:
        super().__init__()
        self.startup_timeout = startup_timeout
        self.synchronous_commit = synchronous_commit
        self.port = free_port()
        self._bindir: Path | None = None
        self._base: Path | None = None
        self._started_once = False

    @property
    def url(self) -> str:
        """SQLAlchemy URL: ``postgresql+psycopg://postgres@127.0.0.1:PORT/immortus_test``."""
        if self.external_url is not None:
            scheme = r"^postgres(?:ql)?(?:\+\w+)?://"
            return re.sub(scheme, "postgresql+psycopg://", self.external_url)
        return f"postgresql+psycopg://{self.user}@{_HOST}:{self.port}/{self.database}"

    @property
    def dsn(self) -> str:
        """The same database as :attr:`url`, as a libpq URI for psycopg.connect()."""
        return self.url.replace("postgresql+psycopg://", "postgresql://", 1)

    # -- files and commands ----------------------------------------------------------------

    @property
    def _data(self) -> Path:
        assert self._base is not None
        return self._base / "data"

    @property
    def _sockets(self) -> Path:
        assert self._base is not None
        return self._base / "sock"

    @property
    def _log(self) -> Path:
        assert self._base is not None
        return self._base / "postgres.log"

    @staticmethod
    def _as_root() -> bool:
        return os.geteuid() == 0

    def _make_base(self) -> Path:
        if not self._as_root():
            return Path(tempfile.mkdtemp(prefix="immortus-pg-"))
        # The postgres user must be able to reach the directory: pick a temp root it can enter.
        try:
            account = pwd.getpwnam(self.user)
        except KeyError:
            raise ServiceError(
                "running as root, PostgreSQL must run as the 'postgres' OS user, which does not "
                f"exist: {_install_hint('postgresql')}"
            ) from None
        if shutil.which("runuser") is None:
            raise ServiceError("running as root needs runuser (util-linux) to start PostgreSQL")
        roots = [Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp")]  # noqa: S108
        root = next((r for r in roots if r.is_dir() and _world_searchable(r)), None)
        if root is None:
            raise ServiceError(
                f"no temp directory that the postgres user can enter among {roots}; "
                "set TMPDIR to one (every parent directory needs o+x)"
            )
        base = Path(tempfile.mkdtemp(prefix="immortus-pg-", dir=root))
        os.chown(base, account.pw_uid, account.pw_gid)
        return base

    def _command(self, *args: str) -> list[str]:
        if self._as_root():
            return ["runuser", "-u", self.user, "--", *args]
        return list(args)

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        assert self._base is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return subprocess.run(
            self._command(*args),
            cwd=self._base,  # the postgres user may not be able to enter our cwd
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _bin(self, name: str) -> str:
        assert self._bindir is not None
        return str(self._bindir / name)

    def _postmaster_pid(self) -> int | None:
        if self._base is None:
            return None
        try:
            first_line = (self._data / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None
        return int(first_line) if first_line.strip().isdigit() else None

    # -- life cycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the postmaster is up (always True for an external server)."""
        if not self.managed:
            return True
        if self._base is None:
            return False
        pid = self._postmaster_pid()
        return pid is not None and _pid_alive(pid)

    def start(self) -> None:
        """Start PostgreSQL (initdb on first use), or restart it after stop() or kill()."""
        self._require_managed("start")
        if self.running:
            return
        if self._bindir is None:
            self._bindir = find_postgres_bindir()
        if self._base is None:
            self._base = self._make_base()
            try:
                self._initdb()
            except BaseException:
                self._remove_files()  # so that another start() begins afresh
                raise
        # Before the first successful start the port may be taken by a race; pick another.
        attempts = 1 if self._started_once else 3
        for attempt in range(attempts):
            error = self._pg_ctl_start()
            if error is None:
                break
            if attempt + 1 < attempts and "in use" in _tail(self._log):
                self.port = free_port()
                continue
            raise ServiceError(error)
        if not self._started_once:
            with psycopg.connect(self._admin_dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
            self._started_once = True

    @property
    def _admin_dsn(self) -> str:
        return f"postgresql://{self.user}@{_HOST}:{self.port}/postgres"

    def _initdb(self) -> None:
        self._sockets.mkdir()
        if self._as_root():
            assert self._base is not None
            base_stat = self._base.stat()
            os.chown(self._sockets, base_stat.st_uid, base_stat.st_gid)
        result = self._run(
            self._bin("initdb"),
            "--pgdata", str(self._data),
            "--username", self.user,
            "--auth", "trust",
            "--encoding", "UTF8",
            "--locale", "C",
            "--no-sync",
            "--no-instructions",
            timeout=self.startup_timeout,
        )  # fmt: skip
        if result.returncode != 0:
            output = result.stdout + result.stderr
            raise ServiceError(f"initdb failed ({result.returncode}):\n{output}")

    def _pg_ctl_start(self) -> str | None:
        """Start the postmaster and wait until it accepts connections; return an error or None."""
        options = " ".join([
            f"-p {self.port}",
            f"-k {shlex.quote(str(self._sockets))}",
            f"-c listen_addresses={_HOST}",
            "-c fsync=off",
            "-c full_page_writes=off",
            f"-c synchronous_commit={'on' if self.synchronous_commit else 'off'}",
        ])  # fmt: skip
        seconds = str(round(self.startup_timeout))
        try:
            result = self._run(
                self._bin("pg_ctl"), "start", "--wait", "--timeout", seconds,
                "--pgdata", str(self._data), "--log", str(self._log), "--options", options,
                timeout=self.startup_timeout + 10,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            result = None
        if result is None or result.returncode != 0:
            output = "" if result is None else result.stdout + result.stderr
            return (
                f"PostgreSQL did not start on {_HOST}:{self.port} within {seconds}s:\n{output}"
                f"its log ({self._log}) ends with:\n{_tail(self._log)}"
            )

        def ready() -> bool:
            check = self._run(
                self._bin("pg_isready"), "--host", _HOST, "--port", str(self.port),
                "--username", self.user, "--dbname", "postgres", "--timeout", "1",
                timeout=10,
            )  # fmt: skip
            return check.returncode == 0

        if _wait_until(ready, self.startup_timeout, interval=0.05):
            return None
        return (
            f"PostgreSQL started but pg_isready got no answer on {_HOST}:{self.port} within "
            f"{seconds}s; its log ({self._log}) ends with:\n{_tail(self._log)}"
        )

    def stop(self) -> None:
        """Shut PostgreSQL down (fast mode: rolls back open transactions); start() restarts."""
        self._require_managed("stop")
        if not self.running:
            return
        result = self._run(
            self._bin("pg_ctl"), "stop", "--pgdata", str(self._data), "--mode", "fast",
            "--wait", "--timeout", str(round(self.startup_timeout)),
            timeout=self.startup_timeout + 10,
        )  # fmt: skip
        if result.returncode != 0:
            raise ServiceError(f"pg_ctl stop failed:\n{result.stdout}{result.stderr}")

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends, as a crash would; start() recovers."""
        self._require_managed("kill")
        pid = self._postmaster_pid()
        if pid is None or not _pid_alive(pid):
            return
        # pg_ctl starts the postmaster in a session of its own, so its backends share its
        # process group: kill them all, or the next start finds shared memory still in use.
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        if not _wait_until(lambda: not _pid_alive(pid), 15):
            raise ServiceError(f"PostgreSQL postmaster {pid} survived SIGKILL for 15s")
        _wait_until(lambda: not _group_alive(pid), 15)
        # The dead postmaster lingers as a zombie until init reaps it, and meanwhile PostgreSQL
        # would take its stale lock files (data dir, socket) for a live server's.
        (self._data / "postmaster.pid").unlink(missing_ok=True)
        for leftover in self._sockets.glob(f".s.PGSQL.{self.port}*"):
            leftover.unlink(missing_ok=True)

    def reset(self) -> None:
        """Give the database a fresh, empty state.

        Ends every other session on the database (so that nothing a test leaked holds a lock),
        drops every user schema with everything in it and recreates an empty ``public``.
        """
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            schemas = [
                str(row[0])
                for row in conn.execute(
                    "SELECT nspname FROM pg_namespace"
                    " WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'"
                )
            ]
            with conn.transaction():
                for schema in schemas:
                    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
                conn.execute("CREATE SCHEMA public")
                conn.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")

    def _remove_files(self) -> None:
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None


def _group_alive(pgid: int) -> bool:
    """Tell whether any live (non-zombie) process is in process group ``pgid``."""
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # After the command name: state, ppid, pgrp, ...
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False
