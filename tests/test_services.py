"""The private servers work for tests and benchmarks: they answer, restart, crash, isolate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

import devservices
import tests.services
from devservices import processes
from devservices.redis_cluster import RedisClusterServer
from tests.services import (
    ManagedServerRequiredError,
    PostgresServer,
    RedisServer,
    ServiceError,
)

# -- Redis ---------------------------------------------------------------------------------


@contextmanager
def redis_client(url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5) as client:
        yield client


def test_redis_set_get(redis_url: str) -> None:
    with redis_client(redis_url) as client:
        assert client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"


@pytest.mark.parametrize("turn", ["first", "second"])
def test_redis_database_is_empty_for_each_test(redis_url: str, turn: str) -> None:
    with redis_client(redis_url) as client:
        assert client.dbsize() == 0
        client.set(f"left-over-by-{turn}", 1)


def test_redis_stop_then_start(redis_server: RedisServer, redis_url: str) -> None:
    with redis_client(redis_url) as client:
        assert client.ping()
    redis_server.stop()
    assert not redis_server.running
    with redis_client(redis_url) as client, pytest.raises(redis.ConnectionError):
        client.ping()
    redis_server.start()
    assert redis_server.url == redis_url  # same port
    with redis_client(redis_url) as client:
        assert client.ping()


def test_redis_kill_then_start_loses_data(redis_server: RedisServer, redis_url: str) -> None:
    with redis_client(redis_url) as client:
        client.set("volatile", 1)
    redis_server.kill()
    with redis_client(redis_url) as client, pytest.raises(redis.ConnectionError):
        client.ping()
    redis_server.start()
    with redis_client(redis_url) as client:
        assert client.get("volatile") is None  # no persistence


def test_redis_server_left_stopped_is_restarted_for_the_next_test(
    redis_server: RedisServer,
) -> None:
    # The previous tests' restarts prove start(); here the next test's redis_url must cope.
    redis_server.stop()


def test_redis_after_a_test_stopped_it(redis_url: str) -> None:
    with redis_client(redis_url) as client:
        assert client.ping()


# -- PostgreSQL ----------------------------------------------------------------------------


@contextmanager
def engine_for(url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        yield engine
    finally:
        engine.dispose()


def test_postgres_select_one(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    assert postgres_url.endswith("/immortus_test")
    with engine_for(postgres_url) as engine, engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
        assert conn.execute(sa.text("SHOW server_encoding")).scalar_one() == "UTF8"


@pytest.mark.parametrize("turn", ["first", "second"])
def test_postgres_database_is_empty_for_each_test(postgres_url: str, turn: str) -> None:
    with engine_for(postgres_url) as engine:
        assert sa.inspect(engine).get_table_names() == []
        assert "scratch" not in sa.inspect(engine).get_schema_names()
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE left_over (turn text)"))
            conn.execute(sa.text("INSERT INTO left_over VALUES (:turn)"), {"turn": turn})
            conn.execute(sa.text("CREATE SCHEMA scratch"))
            conn.execute(sa.text("CREATE TABLE scratch.t (x int)"))


def test_postgres_reset_is_not_blocked_by_a_leaked_transaction(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    with engine_for(postgres_url) as engine:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE locked (x int)"))
        leaked = engine.connect()
        leaked.execute(sa.text("LOCK TABLE locked IN ACCESS EXCLUSIVE MODE"))
        postgres_server.reset()  # would wait forever on the lock if it did not end the session
        assert sa.inspect(engine).get_table_names() == []
        with pytest.raises(sa.exc.OperationalError):
            leaked.execute(sa.text("SELECT 1"))
        leaked.invalidate()
        leaked.close()


def test_postgres_stop_then_start_keeps_data(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    with engine_for(postgres_url) as engine:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE kept (x int)"))
            conn.execute(sa.text("INSERT INTO kept VALUES (42)"))
        postgres_server.stop()
        assert not postgres_server.running
        with pytest.raises(sa.exc.OperationalError):
            engine.connect()
        postgres_server.start()
        assert postgres_server.url == postgres_url  # same port
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM kept")).scalar_one() == 42


def test_postgres_kill_then_start_recovers_committed_data(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    with engine_for(postgres_url) as engine:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE durable (x int)"))
            conn.execute(sa.text("INSERT INTO durable VALUES (7)"))
        postgres_server.kill()
        assert not postgres_server.running
        with pytest.raises(sa.exc.OperationalError):
            engine.connect()
        postgres_server.start()  # crash recovery
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM durable")).scalar_one() == 7


def test_postgres_server_left_stopped_is_restarted_for_the_next_test(
    postgres_server: PostgresServer,
) -> None:
    postgres_server.stop()


def test_postgres_after_a_test_stopped_it(postgres_url: str) -> None:
    with engine_for(postgres_url) as engine, engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1


# -- configuration and errors --------------------------------------------------------------


def test_service_tests_get_markers(request: pytest.FixtureRequest, redis_url: str) -> None:
    assert request.node.get_closest_marker("redis") is not None
    assert request.node.get_closest_marker("postgresql") is None


def test_external_servers_cannot_be_controlled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMMORTUS_TEST_REDIS_URL", "redis://127.0.0.1:1/3")
    monkeypatch.setenv("IMMORTUS_TEST_POSTGRES_URL", "postgresql://someone@127.0.0.1:1/db")
    external_redis, external_pg = RedisServer(), PostgresServer()
    assert external_redis.url == "redis://127.0.0.1:1/3"
    assert external_pg.url == "postgresql+psycopg://someone@127.0.0.1:1/db"
    assert external_pg.dsn == "postgresql://someone@127.0.0.1:1/db"
    for server in (external_redis, external_pg):
        server.ensure_running()  # nothing to do: assumed up
        for action in (server.start, server.stop, server.kill):
            with pytest.raises(ManagedServerRequiredError, match="unset IMMORTUS_TEST_"):
                action()
        server.close()  # leaves the external server alone


def test_an_external_cluster_cannot_be_controlled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMMORTUS_TEST_REDIS_CLUSTER_URL", "redis+cluster://127.0.0.1:1")
    cluster = RedisClusterServer()
    assert cluster.url == "redis+cluster://127.0.0.1:1"
    assert cluster.running
    for action in (cluster.start, cluster.stop, cluster.kill):
        with pytest.raises(ManagedServerRequiredError, match="unset IMMORTUS_TEST_REDIS_CLUSTER"):
            action()
    cluster.close()


def test_a_cluster_node_killed_is_replaced_by_its_replica_then_rejoins(
    redis_cluster: RedisClusterServer, redis_cluster_url: str
) -> None:
    primary = redis_cluster.primary_for("k")
    (replica,) = redis_cluster.replicas_of(primary)
    redis_cluster.kill_node(primary)
    assert redis_cluster.wait_for_failover(primary, "k") is replica
    redis_cluster.start()  # the killed node rejoins as the replica of its successor
    assert redis_cluster.replicas_of(replica) == [primary]
    assert redis_cluster.primary_for("k") is replica


def test_missing_redis_binary_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMMORTUS_TEST_REDIS_URL", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    server = RedisServer()
    try:
        with pytest.raises(ServiceError, match=r"make test.*apt-get install .*redis-server"):
            server.start()
    finally:
        server.close()


# -- one package for tests and benchmarks ----------------------------------------------------


def test_tests_and_benchmarks_share_one_implementation() -> None:
    for name in tests.services.__all__:
        assert getattr(tests.services, name) is getattr(devservices, name)


def test_the_pytest_plugin_gives_fixtures_and_markers(tmp_path: Path) -> None:
    (tmp_path / "test_uses_redis.py").write_text(
        textwrap.dedent(
            """
            import redis

            def test_redis(redis_url, request):
                assert request.node.get_closest_marker("redis") is not None
                with redis.Redis.from_url(redis_url) as client:
                    assert client.dbsize() == 0

            def test_plain():
                pass
            """
        )
    )
    environment = {**os.environ, "PYTHONPATH": processes.python_path()}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "devservices.pytest_plugin"]
    command += ["-p", "no:cacheprovider", "-W", "ignore::pytest.PytestUnknownMarkWarning"]
    ran = subprocess.run(
        [*command, "-m", "not redis"], cwd=tmp_path, env=environment, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert "1 passed, 1 deselected" in ran.stdout, ran.stdout + ran.stderr
    ran = subprocess.run(
        command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert "2 passed" in ran.stdout, ran.stdout + ran.stderr


def test_end_process_kills_a_process_that_ignores_sigterm() -> None:
    ignoring = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    ignoring += "print('ready', flush=True); time.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", ignoring], stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    assert processes.end_process(process, timeout=0.5) == -signal.SIGKILL
    process.stdout.close()
    assert not processes.pid_alive(process.pid)


def test_end_process_returns_the_exit_code_of_a_process_already_gone() -> None:
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait(timeout=60)
    assert processes.end_process(process) == 3


def test_tree_cpu_seconds_counts_the_children() -> None:
    # The child burns 0.3 s of CPU, says so, and waits for its stdin (the parent's) to close.
    child = (
        "import sys, time\nend = time.process_time() + 0.3\n"
        "while time.process_time() < end: pass\nprint('burnt', flush=True)\nsys.stdin.read()"
    )
    parent = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {child!r}]).wait()"
    process = subprocess.Popen(
        [sys.executable, "-c", parent], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdin is not None
    try:
        assert process.stdout.readline() == "burnt\n"
        own = processes.cpu_seconds(process.pid)
        assert processes.tree_cpu_seconds(process.pid) - own >= 0.25
    finally:
        process.stdin.close()
        process.wait(timeout=60)
        process.stdout.close()
    with pytest.raises(FileNotFoundError):
        processes.tree_cpu_seconds(process.pid)
