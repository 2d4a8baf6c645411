from __future__ import annotations

import gc
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from pathlib import Path

import pytest

from immortus.exceptions import (
    ConfigurationError,
    CorruptRecord,
    InvalidInput,
    InvalidStoreURL,
    StoreUnavailable,
)
from immortus.grouping import GroupStatus
from immortus.status import JobError, Progress, State
from immortus.stores import open_store, sqlite_counts, sqlite_groups
from immortus.stores.base import DEFAULT_TTL
from immortus.stores.records import COLUMNS
from immortus.stores.sqlite import SCHEMA_VERSION, SQLiteStore
from immortus.transitions import Event, EventKind
from tests.stores.contract import T0, OpenStore, PersistentStoreContract, at, event, known
from tests.stores.contract_counts import CountsContract
from tests.stores.contract_groups import GroupsContract
from tests.stores.contract_history import PersistentHistoryContract

SPAWN = multiprocessing.get_context("spawn")


class TestSQLiteStore(
    PersistentStoreContract, PersistentHistoryContract, CountsContract, GroupsContract
):
    @pytest.fixture
    def open_store(self, tmp_path: Path) -> Iterator[OpenStore]:
        opened: list[SQLiteStore] = []

        def open_store(*, ttl: float | timedelta | None = DEFAULT_TTL) -> SQLiteStore:
            store = SQLiteStore(tmp_path / "immortus.sqlite3", ttl=ttl)
            opened.append(store)
            return store

        yield open_store
        for store in opened:
            store.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite3"


@pytest.fixture
def store(path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(path)
    yield store
    store.close()


def raw(path: Path) -> sqlite3.Connection:
    """A plain connection to the store's file, as an administrator would open one."""
    return sqlite3.connect(path, isolation_level=None)


def run_in_processes(target: Callable[..., None], *args_per_process: tuple[object, ...]) -> None:
    """Run ``target`` in fresh (spawned, single-threaded) processes; fail if any one failed."""
    processes = [SPAWN.Process(target=target, args=args) for args in args_per_process]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [process.exitcode for process in processes] == [0] * len(processes)


# -- many processes -----------------------------------------------------------------------------


def _write_from_process(path: str, worker: int) -> None:
    store = SQLiteStore(path, ttl=None)
    try:
        for index in range(25):
            job_id = f"p{worker}-{index}"
            store.record(Event(kind=EventKind.ENQUEUED, job_id=job_id))
            store.record(Event(kind=EventKind.STARTED, job_id=job_id))
            store.record(
                Event(kind=EventKind.PROGRESS, job_id="shared", progress=Progress(current=index))
            )
            store.record(Event(kind=EventKind.FINISHED, job_id=job_id))
        store.record(Event(kind=EventKind.FINISHED, job_id="shared"))
    finally:
        store.close()


@pytest.mark.slow
def test_many_processes_write_one_file_concurrently(path: Path) -> None:
    # The file does not exist yet: the processes also race to create it.
    run_in_processes(_write_from_process, *[(str(path), worker) for worker in range(4)])
    with SQLiteStore(path) as store:
        ids = [f"p{worker}-{index}" for worker in range(4) for index in range(25)]
        found = store.get_many(ids)
        assert len(found) == 100
        assert {(status.state, status.attempts) for status in found.values()} == {
            (State.FINISHED, 1)
        }
        shared = known(store, "shared")
        assert shared.state is State.FINISHED
        assert shared.attempts == 1
        # the counters were written by every process in the same transactions: none double counts
        assert isinstance(store, SQLiteStore)
        counted = store.tally(since=datetime.now(UTC) - timedelta(hours=1))
        assert counted.jobs == {(None, State.FINISHED): 101}
        assert sum(sum(states.values()) for states in counted.ended.values()) == 101


# -- fork ---------------------------------------------------------------------------------------


def _use_after_fork(path: str) -> None:
    """Open a store, fork, and keep writing in the child while the parent closes its side.

    Runs in a spawned, single-threaded process, where forking is safe (and warns about nothing).
    """
    store = SQLiteStore(path, ttl=None)
    store.record(Event(kind=EventKind.STARTED, job_id="parent"))
    ready, go = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: use the store object it inherited
        code = 1
        try:
            store.record(Event(kind=EventKind.STARTED, job_id="child-0"))
            os.write(go, b"x")
            time.sleep(0.3)  # the parent closes its connection meanwhile
            for index in range(1, 50):
                store.record(Event(kind=EventKind.FINISHED, job_id=f"child-{index}"))
            assert known(store, "parent").state is State.STARTED
            store.close()
            code = 0
        finally:
            os._exit(code)
    os.read(ready, 1)
    store.close()  # were the child sharing the parent's lock state, this would drop its WAL
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with SQLiteStore(path) as reopened:
        found = reopened.get_many([f"child-{index}" for index in range(50)])
        assert len(found) == 50
        reopened.record(Event(kind=EventKind.FINISHED, job_id="parent"))


def test_store_opened_before_fork_works_in_the_child(path: Path) -> None:
    run_in_processes(_use_after_fork, (str(path),))
    with SQLiteStore(path) as store:
        assert known(store, "parent").state is State.FINISHED
        assert len(store.list_jobs(limit=100).jobs) == 51


# -- failures -----------------------------------------------------------------------------------


def test_locked_file_raises_store_unavailable_and_loses_nothing(path: Path) -> None:
    store = SQLiteStore(path, timeout=0.2)
    store.record(event(EventKind.STARTED, "kept"))
    locker = raw(path)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        began = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"stayed locked .* 0\.2 s") as caught:
            store.record(event(EventKind.STARTED, "blocked"))
        assert time.monotonic() - began >= 0.2
        assert str(path) in str(caught.value)
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        assert known(store, "kept").state is State.STARTED  # WAL: readers are not blocked
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert store.get("blocked") is None
    assert store.record(event(EventKind.STARTED, "blocked")) is not None
    assert {job.job_id for job in store.list_jobs().jobs} == {"kept", "blocked"}
    store.close()


def test_missing_directory_is_reported_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "jobs.sqlite3"
    with pytest.raises(StoreUnavailable, match="nowhere"):
        SQLiteStore(missing)
    with pytest.raises(StoreUnavailable, match="nowhere"):
        open_store(f"sqlite:///{missing}")
    assert not missing.parent.exists()


def test_a_file_that_is_not_a_database(path: Path) -> None:
    path.write_bytes(b"certainly not SQLite " * 100)
    with pytest.raises(StoreUnavailable, match=str(path)):
        SQLiteStore(path)


def test_newer_table_layout_is_refused(path: Path) -> None:
    SQLiteStore(path).close()
    admin = raw(path)
    admin.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    admin.close()
    with pytest.raises(ConfigurationError, match=f"version {SCHEMA_VERSION + 1}"):
        SQLiteStore(path)


# The first table layout (version 1), from before heartbeat leases, as a file of it holds it.
_LAYOUT_1 = """CREATE TABLE immortus_jobs (
    job_id TEXT PRIMARY KEY NOT NULL, job_class TEXT, state TEXT NOT NULL,
    attempts INTEGER NOT NULL, progress_current REAL, progress_total REAL,
    progress_message TEXT, error_type TEXT, error_message TEXT, error_traceback TEXT,
    meta TEXT, enqueued_at REAL, started_at REAL, finished_at REAL, updated_at REAL,
    created REAL NOT NULL, expires REAL
)"""


def _write_old_file(path: Path, version: int) -> None:
    """A file of layout ``version`` (1 to 4) holding one started job, ``old``."""
    admin = raw(path)
    admin.execute(_LAYOUT_1)
    if version >= 2:
        admin.execute("ALTER TABLE immortus_jobs ADD COLUMN alive_until REAL")
    if version >= 3:
        admin.execute("ALTER TABLE immortus_jobs ADD COLUMN seq INTEGER")
    if version >= 4:
        for column in ("retry_at REAL", "cancel_requested_at REAL", "history TEXT"):
            admin.execute(f"ALTER TABLE immortus_jobs ADD COLUMN {column}")
    admin.execute(
        "INSERT INTO immortus_jobs (job_id, state, attempts, created) "
        "VALUES ('old', 'started', 1, ?)",
        (time.time(),),
    )
    admin.execute(f"PRAGMA user_version = {version}")
    admin.close()


def _layout(path: Path) -> tuple[int, set[str], set[str]]:
    """The file's layout version, its columns and its indexes."""
    admin = raw(path)
    try:
        (version,) = admin.execute("PRAGMA user_version").fetchone()
        names = {row[1] for row in admin.execute("PRAGMA table_info(immortus_jobs)")}
        indexes = {row[1] for row in admin.execute("PRAGMA index_list(immortus_jobs)")}
    finally:
        admin.close()
    return version, names, indexes


def test_a_version_1_file_is_upgraded_in_place(path: Path) -> None:
    _write_old_file(path, 1)
    store = SQLiteStore(path)
    try:
        assert known(store, "old").state is State.STARTED  # no lease: never lost
        assert store.beat(["old"], datetime.now(UTC) - timedelta(seconds=1)) == 1
        assert known(store, "old").state is State.LOST
        assert store.reap_lost() == 1
    finally:
        store.close()
    version, names, indexes = _layout(path)
    assert version == SCHEMA_VERSION
    assert names == {*COLUMNS, "seq"}
    assert {"immortus_jobs_listing", "immortus_jobs_state", "immortus_jobs_expiry"} <= indexes
    SQLiteStore(path).close()  # opening it again changes nothing


def _reap_from_process(path: str, counts: Queue[int]) -> None:
    store = SQLiteStore(path)
    counts.put(store.reap_lost())
    store.close()


def test_reapers_in_several_processes_count_each_job_once(store: SQLiteStore, path: Path) -> None:
    ended = datetime.now(UTC) - timedelta(seconds=1)
    for index in range(200):
        store.record(Event(kind=EventKind.STARTED, job_id=f"gone-{index}", alive_until=ended))
    counts: Queue[int] = SPAWN.Queue()
    run_in_processes(_reap_from_process, *[(str(path), counts) for _ in range(3)])
    assert sum(counts.get(timeout=10) for _ in range(3)) == 200
    assert len(store.list_jobs(state=State.LOST, limit=1000).jobs) == 200


def test_corrupt_row_fails_alone(store: SQLiteStore, path: Path) -> None:
    store.record(event(EventKind.STARTED, "bad"))
    store.record(event(EventKind.STARTED, "good"))
    admin = raw(path)
    admin.execute("UPDATE immortus_jobs SET state = 'bogus' WHERE job_id = 'bad'")
    admin.close()
    with pytest.raises(CorruptRecord, match="bad"):
        store.get("bad")
    with pytest.raises(CorruptRecord):
        store.record(event(EventKind.FINISHED, "bad"))
    assert known(store, "good").state is State.STARTED
    assert [job.job_id for job in store.list_jobs(state=State.STARTED).jobs] == ["good"]
    admin = raw(path)
    assert admin.execute("SELECT state FROM immortus_jobs WHERE job_id = 'bad'").fetchone() == (
        "bogus",
    )
    admin.close()


@pytest.mark.parametrize("timeout", [-1, True, "5"])
def test_bad_timeout_is_refused(path: Path, timeout: object) -> None:
    with pytest.raises(InvalidInput, match="timeout"):
        SQLiteStore(path, timeout=timeout)  # type: ignore[arg-type]


# -- URLs ---------------------------------------------------------------------------------------


def test_open_store_relative_and_absolute_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    relative = open_store("sqlite:///data/relative.db", ttl=60)
    assert isinstance(relative, SQLiteStore)
    assert relative.path == tmp_path / "data" / "relative.db"
    assert relative.ttl == 60
    relative.close()
    absolute = open_store(f"sqlite:///{tmp_path}/absolute.db")  # tmp_path starts with "/"
    assert isinstance(absolute, SQLiteStore)
    assert absolute.path == tmp_path / "absolute.db"
    absolute.close()
    assert (tmp_path / "data" / "relative.db").is_file()
    assert (tmp_path / "absolute.db").is_file()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("sqlite://", "names no file"),
        ("sqlite:///", "names no file"),
        ("sqlite://host/jobs.db", "has a host part"),
        ("sqlite:///jobs.db?timeout=3", "query"),
        ("sqlite:///:memory:", "memory://"),
        ("sqlite:///file::memory:", "memory://"),
        ("sqlite:///file::memory:?cache=shared", "query"),
    ],
)
def test_bad_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(InvalidStoreURL, match=reason):
        open_store(url)


def test_a_version_2_file_gains_the_change_column_in_place(path: Path) -> None:
    _write_old_file(path, 2)
    store = SQLiteStore(path)
    try:
        cursor, _ = store.changes_since(None)
        assert cursor == 0  # rows of the old layout carry no change number
        store.record(event(EventKind.FINISHED, "old"))
        assert store.changes_since(cursor) == (1, frozenset({"old"}))
        assert known(store, "old").state is State.FINISHED
    finally:
        store.close()
    version, names, indexes = _layout(path)
    assert version == SCHEMA_VERSION
    assert names == {*COLUMNS, "seq"}
    assert "immortus_jobs_changes" in indexes


def test_a_version_3_file_gains_retry_at_cancel_requests_and_history_in_place(
    path: Path,
) -> None:
    _write_old_file(path, 3)
    store = SQLiteStore(path)
    try:
        assert known(store, "old").retry_at is None
        assert store.request_cancel("old") is True
        assert store.cancel_requested("old") is True
        due = datetime.now(UTC) + timedelta(minutes=1)
        store.record(event(EventKind.RETRYING, "old", at=due, attempt=1, retry_at=due))
        assert known(store, "old").retry_at == due
        assert [entry.event.value for entry in store.history("old")][-1] == "retrying"
    finally:
        store.close()
    version, names, _ = _layout(path)
    assert version == SCHEMA_VERSION
    assert names == {*COLUMNS, "seq"}
    SQLiteStore(path).close()  # opening it again changes nothing


def test_a_version_4_file_gains_counters_rebuilt_from_its_rows(path: Path) -> None:
    _write_old_file(path, 4)
    admin = raw(path)
    end = time.time() - 30
    admin.executemany(
        "INSERT INTO immortus_jobs (job_id, job_class, state, attempts, started_at, finished_at, "
        "created) VALUES (?, 'c', ?, 1, ?, ?, ?)",
        [
            ("f1", "finished", end - 2, end, end),
            ("f2", "finished", end - 20, end, end),
            ("x", "failed", end - 0.05, end, end),
        ],
    )
    admin.close()
    store = SQLiteStore(path)
    try:
        counted = store.tally(since=datetime.now(UTC) - timedelta(hours=1))
        assert counted.jobs == {
            (None, State.STARTED): 1,
            ("c", State.FINISHED): 2,
            ("c", State.FAILED): 1,
        }
        assert sum(counted.ended[datetime.fromtimestamp(end // 60 * 60, UTC)].values()) == 3
        assert counted.durations[0] == counted.durations[3] == counted.durations[5] == 1
        assert counted.duration_sum == pytest.approx(22.05)
        store.record(event(EventKind.FINISHED, "old", at=datetime.now(UTC)))
        assert store.tally(since=datetime.now(UTC)).jobs == {
            (None, State.FINISHED): 1,
            ("c", State.FINISHED): 2,
            ("c", State.FAILED): 1,
        }
    finally:
        store.close()
    assert _layout(path)[0] == SCHEMA_VERSION == 6


def test_a_version_5_file_gains_groups_in_place(path: Path) -> None:
    _write_old_file(path, 4)
    admin = raw(path)
    for statement in sqlite_counts.SCHEMA:
        admin.execute(statement)
    admin.execute("PRAGMA user_version = 5")
    admin.close()
    store = SQLiteStore(path)
    try:
        assert known(store, "old").group_id is None
        assert store.group("g") is None
        store.record(event(EventKind.META, "old", meta={}, group_id="g"))
        store.record(event(EventKind.FINISHED, "old"))
        assert store.group("g") == GroupStatus.of("g", {State.FINISHED: 1}, updated_at=T0)
    finally:
        store.close()
    version, names, _ = _layout(path)
    assert (version, "group_id" in names) == (SCHEMA_VERSION, True)


def test_rebuilding_the_groups_from_the_rows_gives_what_the_writes_kept(
    store: SQLiteStore, path: Path
) -> None:
    half = Progress(current=1, total=2)
    failure = JobError(type="ValueError", message="first")
    store.record(event(EventKind.ENQUEUED, "a", group_id="g"))
    store.record(event(EventKind.PROGRESS, "b", group_id="g", progress=half))
    store.record(event(EventKind.FAILED, "c", group_id="g", error=failure, at=at(1)))
    store.record(
        event(
            EventKind.FAILED, "d", group_id="g", error=JobError(type="X", message="later"), at=at(2)
        )
    )
    store.record(event(EventKind.FINISHED, "e", group_id="other"))
    kept = store.group("g"), store.group("other")
    admin = raw(path)
    admin.execute("BEGIN IMMEDIATE")
    sqlite_groups.rebuild(admin)
    admin.execute("COMMIT")
    admin.close()
    assert (store.group("g"), store.group("other")) == kept
    assert kept[0] is not None
    assert kept[0].first_error == failure


def test_a_cursor_past_the_newest_change_means_assume_everything_changed(
    store: SQLiteStore,
) -> None:
    store.record(event(EventKind.STARTED, "newest"))
    cursor, _ = store.changes_since(None)
    assert store.prune(now=datetime.now(UTC) + timedelta(days=30)) == 1
    assert store.changes_since(cursor) == (0, None)


def test_from_url_refuses_other_schemes() -> None:
    with pytest.raises(InvalidStoreURL, match="not a SQLite URL"):
        SQLiteStore.from_url("redis://localhost/0")
    with pytest.raises(InvalidInput, match="MemoryStore"):
        SQLiteStore(":memory:")


# -- the file -----------------------------------------------------------------------------------


def test_file_is_in_wal_mode_with_the_schema_version(store: SQLiteStore, path: Path) -> None:
    admin = raw(path)
    assert admin.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert admin.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    admin.close()


def test_table_has_one_column_per_record_field(store: SQLiteStore, path: Path) -> None:
    admin = raw(path)
    names = [row[1] for row in admin.execute("PRAGMA table_info(immortus_jobs)")]
    admin.close()
    assert tuple(names) == (*COLUMNS, "seq")


def test_created_is_written_only_when_the_record_is_created(store: SQLiteStore, path: Path) -> None:
    store.record(event(EventKind.ENQUEUED, "a"))
    admin = raw(path)
    query = "SELECT created, expires FROM immortus_jobs WHERE job_id = 'a'"
    created, expires = admin.execute(query).fetchone()
    time.sleep(0.01)
    store.record(event(EventKind.STARTED, "a"))
    assert admin.execute(query).fetchone()[0] == created
    assert admin.execute(query).fetchone()[1] >= expires  # rounded up to 1 % of the TTL
    admin.close()


def test_a_progress_event_rewrites_no_indexed_column(store: SQLiteStore) -> None:
    store.record(event(EventKind.STARTED, "a"))
    statements: list[str] = []
    store._connection().set_trace_callback(statements.append)
    store.record(event(EventKind.PROGRESS, "a", progress=Progress(current=1, total=9)))
    store._connection().set_trace_callback(None)
    [update] = [sql for sql in statements if sql.startswith("UPDATE")]
    assigned = update.partition(" SET ")[2].partition(" WHERE ")[0]
    assert "progress_current" in assigned
    assert not {"state", "expires", "created", "job_id"} & {
        part.split(" = ")[0] for part in assigned.split(", ")
    }


def test_get_many_reads_in_chunks(store: SQLiteStore) -> None:
    for index in range(0, 2000, 2):
        store.record(event(EventKind.ENQUEUED, f"j{index}"))
    statements: list[str] = []
    store._connection().set_trace_callback(statements.append)
    found = store.get_many([f"j{index}" for index in range(2000)])
    store._connection().set_trace_callback(None)
    assert set(found) == {f"j{index}" for index in range(0, 2000, 2)}
    assert sum(sql.startswith("SELECT") for sql in statements) == 3  # 900 + 900 + 200 ids
    assert statements[0].startswith("BEGIN")  # one snapshot across the three


def test_get_many_of_one_chunk_is_one_statement(store: SQLiteStore) -> None:
    store.record(event(EventKind.ENQUEUED, "a"))
    statements: list[str] = []
    store._connection().set_trace_callback(statements.append)
    found = store.get_many(["a", "b"])
    store._connection().set_trace_callback(None)
    assert set(found) == {"a"}
    assert len(statements) == 1
    assert statements[0].startswith("SELECT")


def _plans(store: SQLiteStore, path: Path, call: Callable[[], object]) -> list[str]:
    """Return the query plan of every query ``call`` runs on the store's connection."""
    statements: list[str] = []
    store._connection().set_trace_callback(statements.append)
    try:
        call()
    finally:
        store._connection().set_trace_callback(None)
    selects = [sql for sql in statements if sql.startswith(("SELECT", "DELETE"))]
    assert selects
    admin = raw(path)
    plans = [
        " / ".join(row[3] for row in admin.execute(f"EXPLAIN QUERY PLAN {sql}")) for sql in selects
    ]
    admin.close()
    return plans


def test_reads_use_indexes(store: SQLiteStore, path: Path) -> None:
    for index in range(300):
        store.record(event(EventKind.STARTED if index % 2 else EventKind.ENQUEUED, f"j{index}"))
    cursor = store.list_jobs(limit=10).next_cursor
    calls: list[Callable[[], object]] = [
        lambda: store.get("j7"),
        lambda: store.get_many(["j1", "j2"]),
        lambda: store.list_jobs(limit=10),
        lambda: store.list_jobs(limit=10, cursor=cursor),
        lambda: store.list_jobs(state=State.STARTED, limit=10),
        lambda: store.list_jobs(state=State.STARTED, limit=10, cursor=cursor),
        store.prune,
    ]
    for call in calls:
        for plan in _plans(store, path, call):
            if "immortus_jobs" not in plan:  # the counters' tables: a few rows per class, minute
                continue
            assert "INDEX" in plan, plan
            assert "SCAN immortus_jobs /" not in f"{plan} /", plan
            assert "TEMP B-TREE" not in plan, plan


# -- connections --------------------------------------------------------------------------------


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


needs_proc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@needs_proc
def test_close_closes_every_threads_connection(path: Path) -> None:
    SQLiteStore(path).close()  # create the file first
    before = _open_descriptors()
    store = SQLiteStore(path)
    opened, release = threading.Event(), threading.Event()

    def hold_a_connection() -> None:
        store.get("x")
        opened.set()
        release.wait(10)

    thread = threading.Thread(target=hold_a_connection)
    thread.start()
    opened.wait(10)
    assert _open_descriptors() > before
    store.close()
    assert _open_descriptors() == before
    release.set()
    thread.join()
    assert store.get("x") is None  # still usable after close: it reconnects
    store.close()


@needs_proc
def test_connections_of_finished_threads_are_closed(store: SQLiteStore) -> None:
    def use_in_a_thread() -> None:
        thread = threading.Thread(target=store.get, args=("x",))
        thread.start()
        thread.join()
        gc.collect()

    # SQLite keeps one closed descriptor per file for reuse while another connection of the
    # process holds a lock on it (POSIX locks belong to the process), so count after one thread.
    use_in_a_thread()
    before = _open_descriptors()
    for _ in range(20):
        use_in_a_thread()
    assert _open_descriptors() == before


def test_get_nowait_declines_at_once_while_another_connection_holds_the_file(
    path: Path,
) -> None:
    store = SQLiteStore(path, timeout=0.2)
    store.record(event(EventKind.STARTED, "kept"))
    store.close()  # the locker below can only take the file while nobody else has it open
    locker = raw(path)
    locker.execute("PRAGMA locking_mode = EXCLUSIVE")
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(BlockingIOError, match="locked"):
            store.get_nowait("kept")  # a busy timeout of 0: no wait for the lock
        with pytest.raises(StoreUnavailable, match="stayed locked"):
            store.get("kept")  # waits its 0.2 s, then gives up
    finally:
        locker.execute("COMMIT")
        locker.close()
    assert known(store, "kept").state is State.STARTED
    status = store.get_nowait("kept")
    assert status is not None
    assert status.state is State.STARTED
    store.close()


def test_get_nowait_of_an_unreadable_file_is_unavailable_not_blocking(path: Path) -> None:
    store = SQLiteStore(path)
    store.close()
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreUnavailable):
        store.get_nowait("kept")
    store.close()


_CLOSE_UNDER_A_READER = """
import sys, threading
from immortus.stores.sqlite import SQLiteStore
from immortus.transitions import Event, EventKind

store = SQLiteStore(sys.argv[1])
for index in range(200):
    store.record(Event(kind=EventKind.STARTED, job_id=f"job-{index}"))
ids = [f"job-{index}" for index in range(200)]
stop = threading.Event()

def read_forever():
    while not stop.is_set():
        try:
            store.get_many(ids)
        except Exception:
            pass

readers = [threading.Thread(target=read_forever) for _ in range(2)]
for reader in readers:
    reader.start()
for _ in range(3000):
    store.close()
stop.set()
for reader in readers:
    reader.join()
assert len(store.get_many(ids)) == 200
print("survived")
"""


def test_close_never_pulls_a_connection_from_under_a_running_statement(path: Path) -> None:
    # Run apart: before the fix, closing another thread's busy connection crashed the
    # interpreter (a segmentation fault in the sqlite3 module), which would end the test run.
    result = subprocess.run(
        [sys.executable, "-c", _CLOSE_UNDER_A_READER, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "survived"), result.stderr[-2000:]


def test_files_are_private_to_their_owner(path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, which leaves new files world-readable
    try:
        store = SQLiteStore(path)
        store.record(event(EventKind.STARTED, "secret"))
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        assert all(file.exists() for file in files)  # a connection is open: WAL and index
        assert {file.name: file.stat().st_mode & 0o777 for file in files} == {
            file.name: 0o600 for file in files
        }
        store.close()
    finally:
        os.umask(old)


def test_an_existing_file_keeps_its_mode(path: Path) -> None:
    path.touch(mode=0o640)
    path.chmod(0o640)
    SQLiteStore(path).close()
    assert path.stat().st_mode & 0o777 == 0o640
