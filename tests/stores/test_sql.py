"""SQLStore: the store contract and its own checks on a real PostgreSQL and on SQLite.

PostgreSQL is the private server of ``tests/services/``; SQLite goes through SQLAlchemy
(``sqlite+pysqlite:``) to prove the store dialect-neutral, concurrency included.
"""

from __future__ import annotations

import importlib
import multiprocessing
import re
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from immortus.exceptions import (
    CorruptRecord,
    InvalidStoreURL,
    MissingDependency,
    StoreError,
    StoreUnavailable,
)
from immortus.status import JobStatus, Progress, State
from immortus.stores import open_store as open_store_url
from immortus.stores import records, sql
from immortus.stores.base import DEFAULT_TTL, Store
from immortus.stores.sql import SQLStore, jobs_table
from immortus.transitions import EventKind
from tests.services import PostgresServer, free_port
from tests.stores.contract import OpenStore, PersistentStoreContract, event, known
from tests.stores.contract_counts import CountsContract, recount
from tests.stores.contract_groups import GroupsContract
from tests.stores.contract_history import PersistentHistoryContract


@pytest.fixture
def opened() -> Iterator[list[Store]]:
    """Every store a test opens, closed at teardown."""
    stores: list[Store] = []
    yield stores
    for store in stores:
        store.close()


def _opener(url: str, opened: list[Store]) -> OpenStore:
    def open_store(*, ttl: float | timedelta | None = DEFAULT_TTL) -> Store:
        store = open_store_url(url, ttl=ttl)
        assert isinstance(store, SQLStore)
        opened.append(store)
        return store

    return open_store


def _sql_store(open_store: OpenStore, **options: Any) -> SQLStore:
    store = open_store(**options)
    assert isinstance(store, SQLStore)
    return store


def _insert(store: SQLStore, *rows: dict[str, Any]) -> None:
    store.prune()  # creates the table
    with store.engine.begin() as conn:
        conn.execute(sa.insert(store.table), list(rows))


def _row(job_id: str, created: float, **fields: Any) -> dict[str, Any]:
    status = JobStatus(job_id=job_id, state=State.CREATED)
    return {**records.encode(status, created=created, expires=None), **fields}


def _pooled(engine: sa.Engine) -> int:
    assert isinstance(engine.pool, sa.QueuePool)
    return engine.pool.checkedin()


class SQLChecks:
    """What the SQL store does beyond the contract, on every database it is tested on."""

    def test_the_table_has_the_record_columns_in_order(self) -> None:
        assert tuple(jobs_table(sa.MetaData()).c.keys()) == records.COLUMNS

    def test_pages_split_jobs_created_at_the_same_instant(self, open_store: OpenStore) -> None:
        store = _sql_store(open_store)
        _insert(store, *(_row(f"tie-{index}", 1000.0) for index in range(7)), _row("old", 5.0))
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = store.list_jobs(limit=2, cursor=cursor)
            seen += [status.job_id for status in page.jobs]
            if (cursor := page.next_cursor) is None:
                break
        assert seen == [f"tie-{index}" for index in reversed(range(7))] + ["old"]

    def test_get_many_asks_once_per_500_ids(self, open_store: OpenStore) -> None:
        store = _sql_store(open_store)
        store.record(event(EventKind.STARTED, "x-0001"))
        store.record(event(EventKind.STARTED, "x-1200"))
        queries: list[str] = []
        sa.event.listen(store.engine, "before_cursor_execute", lambda *a: queries.append(a[2]))
        found = store.get_many([f"x-{index:04d}" for index in range(1201)])
        assert list(found) == ["x-0001", "x-1200"]
        assert len([query for query in queries if " IN " in query]) == 3

    def test_an_expired_record_is_replaced_in_place(self, open_store: OpenStore) -> None:
        store = _sql_store(open_store)
        _insert(store, _row("reborn", 1.0, state="finished", expires=2.0), _row("kept", 10.0))
        assert store.record(event(EventKind.FINISHED, "reborn")) is not None
        assert [status.job_id for status in store.list_jobs().jobs] == ["reborn", "kept"]
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(store.table.c.created)).scalars().all()
        assert len(rows) == 2
        assert max(rows) > time.time() - 60

    @pytest.mark.parametrize("bad", [{"state": "exploded"}, {"meta": "[1, 2]"}])
    def test_a_corrupt_row_is_reported_and_left_alone(
        self, open_store: OpenStore, bad: dict[str, Any]
    ) -> None:
        store = _sql_store(open_store)
        _insert(store, _row("broken", 1.0, **bad))
        with pytest.raises(CorruptRecord, match="broken"):
            store.get("broken")
        with pytest.raises(CorruptRecord):
            store.get_many(["broken"])
        with pytest.raises(CorruptRecord):
            store.list_jobs()
        with pytest.raises(CorruptRecord):
            store.record(event(EventKind.FINISHED, "broken"))
        with store.engine.connect() as conn:
            row = conn.execute(sa.select(store.table)).mappings().one()
        assert dict(row) == _row("broken", 1.0, **bad)

    def test_a_custom_table_is_created_on_first_use(self, open_store: OpenStore) -> None:
        default = _sql_store(open_store)
        other = SQLStore(default.engine, table_name="other_jobs")
        other.record(event(EventKind.STARTED, "elsewhere"))
        assert default.get("elsewhere") is None
        assert known(other, "elsewhere").state is State.STARTED
        assert sa.inspect(default.engine).has_table("other_jobs")

    def test_records_atomically_whatever_the_engines_isolation_level(
        self, open_store: OpenStore, isolation_level: str
    ) -> None:
        engine = sa.create_engine(
            _sql_store(open_store).engine.url, isolation_level=isolation_level
        )
        store = SQLStore(engine)
        errors: list[BaseException] = []

        def merge(worker: int) -> None:
            try:
                for index in range(25):
                    store.record(event(EventKind.META, meta={f"w{worker}-{index}": index}))
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=merge, args=(worker,)) for worker in range(4)]
        try:
            store.record(event(EventKind.STARTED))
            for thread in threads:
                thread.start()
            store.record(event(EventKind.FINISHED))
            for thread in threads:
                thread.join()
            assert errors == []
            status = known(store, "job-1")
            assert (status.state, len(status.meta)) == (State.FINISHED, 100)  # no update lost
        finally:
            engine.dispose()

    def test_closing_disposes_only_an_engine_the_store_made(self, open_store: OpenStore) -> None:
        owner = _sql_store(open_store)
        guest = SQLStore(owner.engine)
        guest.record(event(EventKind.STARTED))
        guest.close()
        assert _pooled(owner.engine) >= 1  # not disposed
        owner.close()
        assert _pooled(owner.engine) == 0

    def test_a_table_from_before_heartbeats_gets_its_lease_column(
        self, open_store: OpenStore
    ) -> None:
        engine = _sql_store(open_store).engine
        jobs_table(sa.MetaData(), "old_jobs").create(engine)
        row = {**_row("old", time.time()), "state": "started"}
        del row["alive_until"]
        old_layout = sa.table("old_jobs", *map(sa.column, row))
        with engine.begin() as conn:  # the table as an older immortus made it, with a job
            conn.exec_driver_sql("ALTER TABLE old_jobs DROP COLUMN alive_until")
            conn.execute(sa.insert(old_layout).values(row))
        untouched = SQLStore(engine, table_name="old_jobs", create_table=False)
        with pytest.raises(StoreError, match="alive_until"):
            untouched.get("old")
        store = SQLStore(engine, table_name="old_jobs")
        assert known(store, "old").state is State.STARTED
        assert store.beat(["old"], datetime.now(UTC) - timedelta(seconds=1)) == 1
        assert known(store, "old").state is State.LOST
        columns = {column["name"] for column in sa.inspect(engine).get_columns("old_jobs")}
        assert columns == set(records.COLUMNS)
        assert untouched.get("old") is not None  # the column is there for everyone now
        SQLStore(engine, table_name="old_jobs").get("old")  # a second opening adds nothing

    def test_without_create_table_no_ddl_is_issued(self, open_store: OpenStore) -> None:
        engine = _sql_store(open_store).engine
        store = SQLStore(engine, table_name="never_made", create_table=False)
        with pytest.raises(StoreError, match="never_made") as info:
            store.get("job-1")
        assert not isinstance(info.value, StoreUnavailable)
        assert not sa.inspect(engine).has_table("never_made")


class TestSQLStoreOnPostgreSQL(
    PersistentStoreContract, PersistentHistoryContract, CountsContract, GroupsContract, SQLChecks
):
    @pytest.fixture(params=["AUTOCOMMIT", "REPEATABLE READ", "SERIALIZABLE"])
    def isolation_level(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def open_store(self, postgres_url: str, opened: list[Store]) -> OpenStore:
        return _opener(postgres_url, opened)


class TestSQLStoreOnSQLite(
    PersistentStoreContract, PersistentHistoryContract, CountsContract, GroupsContract, SQLChecks
):
    @pytest.fixture(params=["AUTOCOMMIT", "READ UNCOMMITTED"])
    def isolation_level(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def open_store(self, tmp_path: Path, opened: list[Store]) -> OpenStore:
        return _opener(f"sqlite+pysqlite:///{tmp_path}/x.db", opened)


# -- URLs and drivers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://app:pw@db.example/jobs", "postgresql+psycopg"),
        ("postgres://app:pw@db.example/jobs", "postgresql+psycopg"),
        ("postgres+psycopg://app@db.example/jobs", "postgresql+psycopg"),
        ("postgresql+psycopg://app@db.example/jobs?sslmode=require", "postgresql+psycopg"),
    ],
)
def test_postgresql_urls_are_routed_and_get_psycopg(url: str, driver: str) -> None:
    store = open_store_url(url)  # nothing connects yet
    assert isinstance(store, SQLStore)
    assert store.engine.url.drivername == driver
    assert store.engine.url.host == "db.example"
    store.close()


def test_a_libpq_url_works_on_the_real_server(postgres_server: PostgresServer) -> None:
    store = open_store_url(f"postgresql://postgres@127.0.0.1:{postgres_server.port}/immortus_test")
    try:
        store.record(event(EventKind.FINISHED, "via-libpq-url"))
        assert known(store, "via-libpq-url").state is State.FINISHED
    finally:
        store.close()


def test_a_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(MissingDependency, match=re.escape('"immortus[postgresql]"')) as info:
        open_store_url("postgresql://app@db.example/jobs")
    assert (info.value.package, info.value.extra) == ("psycopg", "postgresql")
    monkeypatch.setitem(sys.modules, "pymysql", None)
    with pytest.raises(MissingDependency) as info:
        open_store_url("mysql+pymysql://app@db.example/jobs")
    assert (info.value.package, info.value.extra) == ("pymysql", "mysql")


def test_missing_sqlalchemy_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    monkeypatch.delitem(sys.modules, "immortus.stores.sql")
    with pytest.raises(MissingDependency, match=re.escape('"immortus[sql]"')):
        importlib.import_module("immortus.stores.sql")


@pytest.mark.parametrize(
    "url", ["postgresql+nosuchdriver://db.example/jobs", "postgresql://db.example:port/jobs"]
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidStoreURL):
        open_store_url(url)


# -- outages -------------------------------------------------------------------------------

NEEDLE = "hunter2-s3cret"  # the password that messages must never show


def _write_at_once(
    store: SQLStore, job_id: str, start: threading.Barrier, errors: list[BaseException]
) -> None:
    start.wait()
    try:
        store.record(event(EventKind.ENQUEUED, job_id, group_id="g"))
    except BaseException as exc:  # noqa: BLE001 - reported by the main thread
        errors.append(exc)


def test_stores_opened_at_once_on_a_new_file_all_find_every_table(tmp_path: Path) -> None:
    # Each store creates the tables on its first write; a CREATE another store won must not
    # leave a table (the counters', the groups') missing for a while.
    for round_ in range(10):
        url = f"sqlite:///{tmp_path}/race-{round_}.db"
        stores = [SQLStore(url) for _ in range(6)]
        start = threading.Barrier(len(stores))
        errors: list[BaseException] = []

        threads = [
            threading.Thread(target=_write_at_once, args=(store, f"j{number}", start, errors))
            for number, store in enumerate(stores)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for store in stores:
            store.close()
        assert errors == []


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://app:{NEEDLE}@127.0.0.1:{{port}}/jobs",
        f"postgresql+psycopg://app@127.0.0.1:{{port}}/jobs?password={NEEDLE}",
    ],
)
def test_an_unreachable_server_is_unavailable_quickly_and_keeps_the_password(url: str) -> None:
    port = free_port()
    store = open_store_url(url.format(port=port))  # nothing connects yet
    try:
        for operation in (
            lambda: store.get("job-1"),
            lambda: store.record(event(EventKind.STARTED)),
            store.list_jobs,
            store.prune,
        ):
            began = time.monotonic()
            with pytest.raises(StoreUnavailable) as info:
                operation()
            assert time.monotonic() - began < 5
            assert f"127.0.0.1:{port}/jobs" in str(info.value)
            assert NEEDLE not in "".join(traceback.format_exception(info.value))
    finally:
        store.close()


def test_a_stopped_server_is_unavailable_then_nothing_is_lost(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    store = SQLStore(postgres_url)
    try:
        store.record(event(EventKind.STARTED, "before"))
        postgres_server.stop()
        try:
            with pytest.raises(StoreUnavailable):
                store.get("before")
            with pytest.raises(StoreUnavailable):
                store.record(event(EventKind.PROGRESS, "before", progress=Progress(current=1)))
            with pytest.raises(StoreUnavailable):
                store.list_jobs()
        finally:
            postgres_server.start()
        status = known(store, "before")
        assert (status.state, status.progress) == (State.STARTED, None)
        store.record(event(EventKind.FINISHED, "before"))
        with SQLStore(postgres_url) as reopened:
            assert known(reopened, "before").state is State.FINISHED
    finally:
        store.close()


def test_a_crashed_server_is_unavailable_then_usable(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    store = SQLStore(postgres_url)
    try:
        store.record(event(EventKind.STARTED, "before"))
        postgres_server.kill()
        try:
            with pytest.raises(StoreUnavailable):
                store.record(event(EventKind.FINISHED, "during"))
        finally:
            postgres_server.start()
        store.record(event(EventKind.FINISHED, "after"))
        assert known(store, "after").state is State.FINISHED
    finally:
        store.close()


# -- races ---------------------------------------------------------------------------------


def test_losing_the_race_to_create_a_job_retries(postgres_url: str) -> None:
    """A writer whose INSERT collides with another's new row runs its transaction again."""
    store = SQLStore(postgres_url)
    try:
        store.prune()  # creates the table
        first = records.encode(
            JobStatus(job_id="race", state=State.CREATED, job_class="first.writer"),
            created=time.time(),
            expires=None,
        )
        results: list[JobStatus | None] = []
        with store.engine.connect() as rival:
            rival.begin()
            rival.execute(sa.insert(store.table).values(first))  # not committed yet
            writer = threading.Thread(
                target=lambda: results.append(store.record(event(EventKind.STARTED, "race")))
            )
            writer.start()
            writer.join(timeout=1)
            assert writer.is_alive()  # its INSERT waits on the rival's uncommitted row
            rival.commit()
        writer.join(timeout=10)
        assert results
        assert results[0] is not None
        status = known(store, "race")
        assert (status.state, status.attempts, status.job_class) == (
            State.STARTED,
            1,
            "first.writer",
        )
    finally:
        store.close()


def _hammer(url: str, worker: int, barrier: Barrier, results: Queue[tuple[int, bool]]) -> None:
    """Run in a spawned process: race to create one job, then ~100 transitions."""
    store = SQLStore(url)
    try:
        barrier.wait(timeout=60)
        created = store.record(event(EventKind.STARTED, "born-together")) is not None
        kinds = (EventKind.ENQUEUED, EventKind.STARTED, EventKind.FINISHED)
        for step in range(51):
            progress = Progress(current=step, total=51)
            store.record(event(EventKind.PROGRESS, "shared", progress=progress))
            store.record(event(kinds[step % 3], f"p{worker}-{step // 3}"))
        results.put((worker, created))
    finally:
        store.close()


def test_32_writers_and_reapers_across_groups_count_exactly(postgres_url: str) -> None:
    """Batches touching many groups (reaping) and single writes never deadlock or miscount."""
    writers, each, groups = 32, 6, ("a", "b", "c", "d")
    stores = [SQLStore(postgres_url) for _ in range(writers)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(writers)
    lapsed = datetime.now(UTC) - timedelta(seconds=1)

    def work(worker: int) -> None:
        store = stores[worker]
        try:
            names = [f"w{worker}-{n}" for n in range(each)]
            for n, job_id in enumerate(names):
                group_id = groups[(worker + n) % len(groups)]  # each writer its own group order
                store.record(
                    event(EventKind.STARTED, job_id, group_id=group_id, alive_until=lapsed)
                )
            barrier.wait(timeout=60)
            store.reap_lost()  # batches of many groups, locked in one order
            for job_id in names[::2]:
                store.record(event(EventKind.STARTED, job_id, attempt=2))
                store.record(event(EventKind.FINISHED, job_id, attempt=2))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    try:
        assert not errors, errors
        answers = [stores[0].group(group_id) for group_id in groups]
        assert all(answer is not None for answer in answers)
        jobs = sum((Counter(answer.jobs) for answer in answers if answer), Counter())
        assert jobs == {State.FINISHED: writers * each // 2, State.LOST: writers * each // 2}
        assert all(answer.total == writers * each // 4 for answer in answers if answer)
    finally:
        for store in stores:
            store.close()


def test_a_group_read_is_one_statement_on_one_row_at_any_size(postgres_url: str) -> None:
    store = SQLStore(postgres_url)
    try:
        seen: list[str] = []
        sa.event.listen(store.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
        reads: list[list[str]] = []
        for size in (1, 300):
            for n in range(size):
                store.record(event(EventKind.STARTED, f"{size}-{n}", group_id=f"g{size}"))
            seen.clear()
            answer = store.group(f"g{size}")
            assert answer is not None
            assert answer.total == size
            reads.append([statement for statement in seen if statement.startswith("SELECT")])
        assert reads[0] == reads[1]
        assert len(reads[0]) == 1
        assert "FROM immortus_jobs_groups" in reads[0][0]
        assert "immortus_jobs " not in reads[0][0]  # never the members' rows
    finally:
        store.close()


@pytest.mark.slow
def test_writers_in_several_processes_lose_nothing(postgres_url: str) -> None:
    store = SQLStore(postgres_url)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    results: Queue[tuple[int, bool]] = context.Queue()
    try:
        store.record(event(EventKind.STARTED, "shared"))
        workers = [
            context.Process(target=_hammer, args=(postgres_url, worker, barrier, results))
            for worker in range(3)
        ]
        for process in workers:
            process.start()
        deadline = time.monotonic() + 60
        while known(store, "shared").progress is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.record(event(EventKind.FINISHED, "shared")) is not None
        outcomes = sorted(results.get(timeout=60) for _ in workers)
        for process in workers:
            process.join(timeout=60)
        assert [process.exitcode for process in workers] == [0, 0, 0]
        assert [created for _, created in outcomes].count(True) == 1
        assert known(store, "born-together").attempts == 1
        assert known(store, "shared").state is State.FINISHED
        own = store.get_many([f"p{worker}-{job}" for worker in range(3) for job in range(17)])
        assert len(own) == 51
        assert {status.state for status in own.values()} == {State.FINISHED}
        assert store.tally(since=datetime.now(UTC)).jobs == recount(store)  # none counted twice
        assert recount(store) == {(None, State.FINISHED): 52, (None, State.STARTED): 1}
    finally:
        results.close()
        results.join_thread()
        store.close()


# -- schema and plans ----------------------------------------------------------------------


def test_the_documented_ddl_makes_a_table_the_store_can_use(postgres_url: str) -> None:
    assert sql.__doc__ is not None
    statements = re.findall(r"^ {4}(CREATE [^;]+);", sql.__doc__, flags=re.MULTILINE)
    assert len(statements) == 8
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
        inspector = sa.inspect(engine)
        columns = tuple(column["name"] for column in inspector.get_columns("immortus_jobs"))
        assert columns == records.COLUMNS
        indexes = {index["name"] for index in inspector.get_indexes("immortus_jobs")}
        assert indexes == {index.name for index in jobs_table(sa.MetaData()).indexes}
        store = SQLStore(engine, create_table=False)
        store.record(event(EventKind.FINISHED, "migrated"))
        assert known(store, "migrated").state is State.FINISHED
    finally:
        engine.dispose()


def test_reads_use_indexes_not_sequential_scans(postgres_url: str) -> None:
    """EXPLAIN the store's own statements over 5 000 analysed rows (seqscan left enabled)."""
    store = SQLStore(postgres_url)
    try:
        now = time.time()
        states = [state for state in State if state is not State.UNKNOWN]
        _insert(
            store,
            *(
                _row(f"job-{i:05d}", now - 5000 + i, state=states[i % 7], expires=now + 3600)
                for i in range(5000)
            ),
        )
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE immortus_jobs")
        statements: list[tuple[str, Any]] = []
        sa.event.listen(
            store.engine, "before_cursor_execute", lambda *a: statements.append((a[2], a[3]))
        )
        first = store.list_jobs(limit=50)
        store.list_jobs(limit=50, cursor=first.next_cursor)
        failed = store.list_jobs(state=State.FAILED, limit=50)
        store.list_jobs(state=State.FAILED, limit=50, cursor=failed.next_cursor)
        store.get("job-02500")
        store.get_many(["job-00001", "job-04999", "nope"])
        store.record(event(EventKind.FINISHED, "job-01234"))
        store.prune()
        store.list_jobs(state=State.STARTED, limit=50)  # leases: the state filter reads them too
        store.list_jobs(state=State.LOST, limit=50)
        store.beat(["job-00001", "job-04999"], datetime.now(UTC) + timedelta(minutes=1))
        store.reap_lost()
        explained = [
            (s, p)
            for s, p in statements
            if s.startswith(("SELECT", "UPDATE", "DELETE"))
            and not re.search(r"immortus_jobs_(counts|ended|durations|groups)", s)  # keyed rows
        ]
        assert len(explained) == 14  # beat: the update, and the read of reaped jobs
        with store.engine.connect() as conn:
            for statement, parameters in explained:
                rows = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)
                plan = "\n".join(row[0] for row in rows)
                assert "Seq Scan" not in plan, plan
                assert "Index" in plan, plan
    finally:
        store.close()


def test_a_table_from_before_the_counters_is_counted_once_in_place(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        table = jobs_table(sa.MetaData(), "before_counters")
        table.create(engine)
        end = time.time() - 30
        rows = [
            _row("a", end, job_class="c", state="finished", started_at=end - 2, finished_at=end),
            _row("b", end, job_class="c", state="failed", started_at=end - 20, finished_at=end),
            _row("c", end),
        ]
        with engine.begin() as conn:
            conn.execute(sa.insert(table), rows)
        store = SQLStore(engine, table_name="before_counters")
        counted = store.tally(since=datetime.now(UTC) - timedelta(hours=1))
        assert counted.jobs == {
            ("c", State.FINISHED): 1,
            ("c", State.FAILED): 1,
            (None, State.CREATED): 1,
        }
        assert sum(sum(states.values()) for states in counted.ended.values()) == 2
        assert counted.durations[3] == counted.durations[5] == 1
        store.record(event(EventKind.STARTED, "c"))
        again = SQLStore(engine, table_name="before_counters")  # finds the counters: no recount
        assert again.tally(since=datetime.now(UTC)).jobs[None, State.STARTED] == 1
    finally:
        engine.dispose()


def test_a_migrated_table_without_counter_tables_still_records_and_counts(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        jobs_table(sa.MetaData(), "no_counters").create(engine)
        store = SQLStore(engine, table_name="no_counters", create_table=False)
        store.record(event(EventKind.STARTED, "a", job_class="c"))
        store.record(event(EventKind.FINISHED, "a", at=datetime.now(UTC)))
        store.record(event(EventKind.ENQUEUED, "b"))
        assert "no counter table no_counters_counts" in caplog.text
        counted = store.tally(since=datetime.now(UTC) - timedelta(hours=1))
        assert counted.jobs == {("c", State.FINISHED): 1, (None, State.CREATED): 1}
        assert sum(sum(states.values()) for states in counted.ended.values()) == 1
        assert not sa.inspect(engine).has_table("no_counters_counts")
    finally:
        engine.dispose()
