"""A private PostgreSQL for tests and benchmarks, run as the ``postgres`` user when we are root."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from devservices.net import HOST, free_port
from devservices.processes import pid_alive, tail, wait_until
from devservices.server import Server, ServiceError, install_hint

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
        f"PATH or in /usr/lib/postgresql/*/bin: {install_hint('postgresql')}"
    )


def _world_searchable(path: Path) -> bool:
    """Tell whether every directory from / down to ``path`` can be entered by anybody."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))


class PostgresServer(Server):
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
        return f"postgresql+psycopg://{self.user}@{HOST}:{self.port}/{self.database}"

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
                f"exist: {install_hint('postgresql')}"
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
        return pid is not None and pid_alive(pid)

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
            if attempt + 1 < attempts and "in use" in tail(self._log):
                self.port = free_port()
                continue
            raise ServiceError(error)
        if not self._started_once:
            with psycopg.connect(self._admin_dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
            self._started_once = True

    @property
    def _admin_dsn(self) -> str:
        return f"postgresql://{self.user}@{HOST}:{self.port}/postgres"

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
            f"-c listen_addresses={HOST}",
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
                f"PostgreSQL did not start on {HOST}:{self.port} within {seconds}s:\n{output}"
                f"its log ({self._log}) ends with:\n{tail(self._log)}"
            )

        def ready() -> bool:
            check = self._run(
                self._bin("pg_isready"), "--host", HOST, "--port", str(self.port),
                "--username", self.user, "--dbname", "postgres", "--timeout", "1",
                timeout=10,
            )  # fmt: skip
            return check.returncode == 0

        if wait_until(ready, self.startup_timeout, interval=0.05):
            return None
        return (
            f"PostgreSQL started but pg_isready got no answer on {HOST}:{self.port} within "
            f"{seconds}s; its log ({self._log}) ends with:\n{tail(self._log)}"
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
        if pid is None or not pid_alive(pid):
            return
        # pg_ctl starts the postmaster in a session of its own, so its backends share its
        # process group: kill them all, or the next start finds shared memory still in use.
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        if not wait_until(lambda: not pid_alive(pid), 15):
            raise ServiceError(f"PostgreSQL postmaster {pid} survived SIGKILL for 15s")
        wait_until(lambda: not _group_alive(pid), 15)
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
