"""The PostgreSQL store's lookups on kept connections: no ping per read, one retry when lost."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from immortus.status import State
from immortus.stores import sql_reads
from immortus.stores.sql import SQLStore
from immortus.transitions import EventKind
from tests.stores.contract import event, known

pytestmark = pytest.mark.postgresql

APP: str = "immortus-kept-reads"


@pytest.fixture
def store(postgres_url: str) -> Iterator[SQLStore]:
    opened = SQLStore(f"{postgres_url}?application_name={APP}")
    try:
        opened.record(event(EventKind.STARTED, "job-1"))
        yield opened
    finally:
        opened.close()


def _dsn(store: SQLStore) -> str:
    return store.engine.url.set(drivername="postgresql", query={}).render_as_string(
        hide_password=False
    )


def _terminate_sessions(store: SQLStore) -> int:
    """End every session the store has open on the server (as a crash or a restart would)."""
    with psycopg.connect(_dsn(store), autocommit=True) as admin:
        ended = admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s",
            (APP,),
        ).fetchone()
    assert ended is not None
    return int(ended[0])


def _sessions(store: SQLStore) -> int:
    with psycopg.connect(_dsn(store), autocommit=True) as admin:
        found = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (APP,)
        ).fetchone()
    assert found is not None
    return int(found[0])


def test_lookups_check_out_no_connection_once_one_is_kept(store: SQLStore) -> None:
    checkouts: list[object] = []
    sa.event.listen(store.engine.pool, "checkout", lambda *args: checkouts.append(args))
    assert known(store, "job-1").state is State.STARTED
    before = len(checkouts)
    for _ in range(20):
        assert known(store, "job-1").state is State.STARTED
    assert len(checkouts) == before  # a checkout is what pings: none per lookup


def test_a_killed_backend_costs_a_retry_not_an_error(store: SQLStore) -> None:
    assert known(store, "job-1").state is State.STARTED
    assert _terminate_sessions(store) >= 1  # the kept connection among them
    assert known(store, "job-1").state is State.STARTED
    assert store.get("absent") is None


def test_busy_kept_connections_leave_lookups_to_the_engine(store: SQLStore) -> None:
    kept = store._kept_reads
    assert kept is not None
    taken = [kept._take() for _ in range(sql_reads.KEPT)]
    try:
        assert kept.fetch_one({"job_id": "job-1", "now": 0.0}) is sql_reads.THROUGH_ENGINE
        assert known(store, "job-1").state is State.STARTED  # through the engine's pool
    finally:
        for each in taken:
            assert each is not None
            kept._give(each)
    assert known(store, "job-1").state is State.STARTED


def test_statement_listeners_see_every_lookup(store: SQLStore) -> None:
    assert known(store, "job-1").state is State.STARTED  # on a kept connection
    seen: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    assert known(store, "job-1").state is State.STARTED
    assert store.get("absent") is None
    assert len(seen) == 2
    assert all("job_id" in statement for statement in seen)


def test_closing_the_store_closes_its_kept_connections(postgres_url: str) -> None:
    engine = sa.create_engine(f"{postgres_url}?application_name={APP}", poolclass=sa.NullPool)
    try:
        assert not sql_reads.KeptReads.fits(engine)  # a pool that keeps nothing: nor do we
    finally:
        engine.dispose()
    engine = sa.create_engine(f"{postgres_url}?application_name={APP}")
    try:
        store = SQLStore(engine)
        store.record(event(EventKind.STARTED, "job-1"))
        engine.dispose()  # the pool's connections go; the kept one stays
        assert known(store, "job-1").state is State.STARTED
        assert _sessions(store) == 1
        store.close()
        assert _sessions(store) == 0
    finally:
        engine.dispose()


def _read_in_child(store: SQLStore, answers: multiprocessing.Queue[str]) -> None:
    status = store.get("job-1")
    answers.put("missing" if status is None else status.state.value)


def test_a_forked_child_reads_on_its_own_connections(store: SQLStore) -> None:
    assert known(store, "job-1").state is State.STARTED  # a connection is kept before the fork
    context = multiprocessing.get_context("fork")
    answers: multiprocessing.Queue[str] = context.Queue()
    child = context.Process(target=_read_in_child, args=(store, answers))
    child.start()
    assert answers.get(timeout=30) == "started"
    child.join(timeout=30)
    assert child.exitcode == 0
    assert known(store, "job-1").state is State.STARTED  # the parent's connection is intact
