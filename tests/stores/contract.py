"""The behaviour every store must have, written once and mixed into each store's test class.

A store's test module subclasses :class:`StoreContract` (and :class:`PersistentStoreContract` for
stores whose records outlive the process) and provides one fixture, ``open_store``: a callable
that opens a store over the same backing data each time it is called, with the given TTL.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Protocol

import pytest

from immortus.exceptions import InvalidInput, InvalidJobId
from immortus.status import MAX_TRACEBACK_LENGTH, JobError, JobStatus, Progress, State, isoformat
from immortus.stores.base import DEFAULT_TTL, Store
from immortus.transitions import MAX_MERGED_META_BYTES, Event, EventKind, merged_meta_size


class OpenStore(Protocol):
    def __call__(self, *, ttl: float | timedelta | None = DEFAULT_TTL) -> Store: ...


T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(kind: EventKind, job_id: str = "job-1", **fields: object) -> Event:
    fields.setdefault("at", T0)
    return Event(kind=kind, job_id=job_id, **fields)  # type: ignore[arg-type]


def known(store: Store, job_id: str) -> JobStatus:
    status = store.get(job_id)
    assert status is not None, f"{job_id} should be known"
    return status


def lease(seconds: float) -> datetime:
    """A worker's lease ending ``seconds`` from now (in the past when negative)."""
    return datetime.now(UTC) + timedelta(seconds=seconds)


def ids(store: Store, state: State | None = None, *, limit: int = 50) -> list[str]:
    """Every job id ``list_jobs`` gives for ``state``, page after page of ``limit``."""
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = store.list_jobs(state=state, limit=limit, cursor=cursor)
        seen.extend(status.job_id for status in page.jobs)
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


class StoreContract:
    """Behaviour shared by every store."""

    @pytest.fixture
    def store(self, open_store: OpenStore) -> Iterator[Store]:
        store = open_store()
        yield store
        store.close()

    # -- look-ups -----------------------------------------------------------------------------

    def test_unknown_job_is_none(self, store: Store) -> None:
        assert store.get("never-seen") is None

    def test_get_many_returns_only_known_jobs(self, store: Store) -> None:
        store.record(event(EventKind.ENQUEUED, "a"))
        store.record(event(EventKind.STARTED, "b"))
        found = store.get_many(["a", "missing", "b", "a"])
        assert set(found) == {"a", "b"}
        assert found["a"].state is State.CREATED
        assert found["b"].state is State.STARTED
        assert store.get_many([]) == {}

    def test_get_nowait_answers_as_get_does_or_declines(self, store: Store) -> None:
        store.record(event(EventKind.STARTED, "a", job_class="reports.build"))
        store.record(event(EventKind.PROGRESS, "a", progress=Progress(current=3, total=9)))
        try:
            fast = store.get_nowait("a")
        except BlockingIOError:  # only the base class's default declines when nothing is busy
            assert type(store).get_nowait is Store.get_nowait
            return
        assert fast == store.get("a")
        assert store.get_nowait("never-seen") is None
        with pytest.raises(InvalidJobId):
            store.get_nowait("")

    @pytest.mark.parametrize("bad", ["", " padded", "x" * 256, "tab\there", "nul\x00", 42])
    def test_malformed_job_id_is_refused(self, store: Store, bad: object) -> None:
        with pytest.raises(InvalidJobId):
            store.get(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidJobId):
            store.get_many(["fine", bad])  # type: ignore[list-item]

    def test_longest_and_unicode_ids_round_trip(self, store: Store) -> None:
        for job_id in ("x" * 255, "jöb/ünïcode:✓", "a'b\"c;--", "%_like_wildcards%"):
            store.record(event(EventKind.ENQUEUED, job_id, job_class="émoji.task"))
            status = known(store, job_id)
            assert status.job_id == job_id
            assert status.job_class == "émoji.task"
        assert store.get("%") is None
        assert store.get("x" * 254) is None

    # -- the life of a job --------------------------------------------------------------------

    def test_full_life_of_a_job(self, store: Store) -> None:
        created = store.record(event(EventKind.ENQUEUED, job_class="reports.build", at=at(0)))
        assert created is not None
        assert created.state is State.CREATED
        store.record(event(EventKind.STARTED, at=at(1)))
        store.record(
            event(
                EventKind.PROGRESS,
                at=at(2),
                progress=Progress(current=37, total=100, message="row 37"),
            )
        )
        running = known(store, "job-1")
        assert running.state is State.STARTED
        assert running.progress == Progress(current=37, total=100, message="row 37")
        assert running.attempts == 1
        store.record(event(EventKind.FINISHED, at=at(3)))
        done = known(store, "job-1")
        assert done.state is State.FINISHED
        assert done.completed
        assert done.success is True
        assert done.job_class == "reports.build"
        assert (done.enqueued_at, done.started_at, done.finished_at) == (at(0), at(1), at(3))
        assert done.updated_at == at(3)
        assert done.progress is not None
        assert done.progress.current == 37
        assert type(done.progress.current) is int

    def test_fractional_progress_round_trips(self, store: Store) -> None:
        store.record(event(EventKind.PROGRESS, progress=Progress(current=0.25, total=1.5)))
        progress = known(store, "job-1").progress
        assert progress == Progress(current=0.25, total=1.5)
        assert progress is not None
        assert progress.percent == 16.67

    def test_progress_without_total_or_message(self, store: Store) -> None:
        store.record(event(EventKind.PROGRESS, progress=Progress(current=5)))
        assert known(store, "job-1").progress == Progress(current=5)

    def test_overshooting_progress_round_trips(self, store: Store) -> None:
        progress = Progress(current=120, total=100, allow_overshoot=True)
        store.record(event(EventKind.PROGRESS, progress=progress))
        assert known(store, "job-1").progress == progress

    def test_failure_keeps_error_and_traceback(self, store: Store) -> None:
        try:
            raise ValueError("bad row 7")
        except ValueError as exc:
            error = JobError.from_exception(exc)
        store.record(event(EventKind.STARTED))
        store.record(event(EventKind.FAILED, error=error))
        failed = known(store, "job-1")
        assert failed.state is State.FAILED
        assert failed.success is False
        assert failed.error == JobError(type="ValueError", message="bad row 7")
        assert failed.error is not None
        assert failed.error.traceback is not None
        assert "bad row 7" in failed.error.traceback
        assert failed.to_dict()["error"] == {"type": "ValueError", "message": "bad row 7"}

    def test_retry_counts_attempts_and_clears_error_on_success(self, store: Store) -> None:
        boom = JobError(type="TimeoutError", message="slow")
        store.record(event(EventKind.STARTED, at=at(1)))
        store.record(event(EventKind.RETRYING, at=at(2), error=boom))
        retrying = known(store, "job-1")
        assert (retrying.state, retrying.error, retrying.attempts) == (State.RETRYING, boom, 1)
        store.record(event(EventKind.STARTED, at=at(3)))
        second = known(store, "job-1")
        assert (second.state, second.attempts, second.error) == (State.STARTED, 2, None)
        store.record(event(EventKind.FINISHED, at=at(4)))
        finished = known(store, "job-1")
        assert (finished.state, finished.error, finished.attempts) == (State.FINISHED, None, 2)

    def test_cancelled(self, store: Store) -> None:
        store.record(event(EventKind.ENQUEUED))
        store.record(event(EventKind.CANCELLED))
        assert known(store, "job-1").state is State.CANCELLED

    def test_meta_is_merged_and_kept(self, store: Store) -> None:
        store.record(event(EventKind.META, meta={"rows": 10, "file": "a.csv"}))
        store.record(event(EventKind.META, meta={"rows": 12, "nested": {"k": [1, 2]}}))
        status = known(store, "job-1")
        assert status.meta == {"rows": 12, "file": "a.csv", "nested": {"k": [1, 2]}}
        store.record(event(EventKind.FINISHED))
        store.record(event(EventKind.META, meta={"summary": "ok"}))
        assert known(store, "job-1").meta["summary"] == "ok"

    def test_error_detail_is_bounded_and_kept_off_the_wire(self, store: Store) -> None:
        frames = "".join(f'  File "app.py", line {n}, in step\n    step()\n' for n in range(5000))
        text = f"Traceback (most recent call last):\n{frames}ValueError: secret-detail\n"
        error = JobError(type="E" * 1000, message="m" * 10_000, traceback=text)
        store.record(event(EventKind.FAILED, error=error))
        kept = known(store, "job-1").error
        assert kept is not None
        assert kept.traceback is not None
        assert len(kept.traceback) <= MAX_TRACEBACK_LENGTH
        assert kept.traceback.startswith("Traceback (most recent call last):\n")
        assert kept.traceback.endswith("ValueError: secret-detail\n")  # the end is what matters
        assert (len(kept.type), len(kept.message)) == (255, 2000)
        status = known(store, "job-1")
        assert "secret-detail" not in json.dumps(status.to_dict())
        assert "secret-detail" not in repr(status)

    def test_merged_meta_stays_within_its_bound(self, store: Store) -> None:
        chunk = "x" * (MAX_MERGED_META_BYTES // 5)
        for number in range(50):  # fifty events of ~13 KiB each: about four fit
            store.record(event(EventKind.META, meta={f"part-{number}": chunk}))
        store.record(event(EventKind.STARTED))
        status = known(store, "job-1")
        assert status.state is State.STARTED  # the job's own events still land
        assert sorted(status.meta) == [f"part-{number}" for number in range(4)]
        assert merged_meta_size(status.meta) <= MAX_MERGED_META_BYTES
        assert len(json.dumps(status.to_dict())) < MAX_MERGED_META_BYTES + 1024
        store.record(event(EventKind.META, meta={"part-0": 1, "rows": 2}))  # replaced: fits
        assert known(store, "job-1").meta["rows"] == 2

    # -- order and duplicates -----------------------------------------------------------------

    def test_completed_state_is_never_overwritten(self, store: Store) -> None:
        store.record(event(EventKind.FINISHED, at=at(5)))
        late = [
            event(EventKind.STARTED, at=at(1)),
            event(EventKind.PROGRESS, at=at(2), progress=Progress(current=1)),
            event(EventKind.RETRYING, at=at(3)),
            event(EventKind.FAILED, at=at(6)),
            event(EventKind.CANCELLED, at=at(7)),
            event(EventKind.LOST, at=at(8)),
            event(EventKind.FINISHED, at=at(9)),
        ]
        for late_event in late:
            assert store.record(late_event) is None
        status = known(store, "job-1")
        assert (status.state, status.finished_at, status.progress) == (State.FINISHED, at(5), None)

    def test_late_enqueue_does_not_move_a_job_back(self, store: Store) -> None:
        store.record(event(EventKind.STARTED, at=at(2)))
        store.record(event(EventKind.ENQUEUED, job_class="late.class", at=at(1)))
        status = known(store, "job-1")
        assert status.state is State.STARTED
        assert status.enqueued_at == at(1)
        assert status.job_class == "late.class"
        assert status.updated_at == at(2)

    def test_duplicate_events_change_nothing(self, store: Store) -> None:
        assert store.record(event(EventKind.ENQUEUED)) is not None
        assert store.record(event(EventKind.ENQUEUED)) is None
        assert store.record(event(EventKind.STARTED)) is not None
        assert store.record(event(EventKind.STARTED)) is None
        assert known(store, "job-1").attempts == 1

    def test_stale_attempt_is_ignored(self, store: Store) -> None:
        store.record(event(EventKind.STARTED, attempt=2))
        assert store.record(event(EventKind.RETRYING, attempt=1)) is None
        assert known(store, "job-1").state is State.STARTED

    def test_lost_then_redelivered(self, store: Store) -> None:
        assert store.record(event(EventKind.LOST)) is None  # nobody knew this job
        assert store.get("job-1") is None
        store.record(event(EventKind.STARTED, at=at(1)))
        lost_error = JobError(type="WorkerLost", message="no heartbeat for 60 s")
        store.record(event(EventKind.LOST, at=at(2), error=lost_error))
        lost = known(store, "job-1")
        assert (lost.state, lost.completed, lost.success) == (State.LOST, True, False)
        store.record(event(EventKind.STARTED, at=at(3)))
        again = known(store, "job-1")
        assert (again.state, again.attempts, again.finished_at) == (State.STARTED, 2, None)

    def test_late_finish_overrides_lost(self, store: Store) -> None:
        store.record(event(EventKind.STARTED, at=at(1)))
        store.record(event(EventKind.LOST, at=at(2)))
        store.record(event(EventKind.FINISHED, at=at(3)))
        assert known(store, "job-1").state is State.FINISHED

    # -- concurrency --------------------------------------------------------------------------

    def test_concurrent_progress_never_loses_the_final_state(self, store: Store) -> None:
        store.record(event(EventKind.STARTED))
        workers = 4
        barrier = threading.Barrier(workers + 1)
        errors: list[BaseException] = []

        def report(offset: int) -> None:
            try:
                barrier.wait()
                for step in range(offset, 100, workers):
                    store.record(
                        event(EventKind.PROGRESS, progress=Progress(current=step, total=100))
                    )
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=report, args=(i,)) for i in range(workers)]
        for thread in threads:
            thread.start()
        barrier.wait()
        store.record(event(EventKind.FINISHED))
        for thread in threads:
            thread.join()
        assert errors == []
        assert known(store, "job-1").state is State.FINISHED

    def test_concurrent_writers_on_many_jobs(self, store: Store) -> None:
        errors: list[BaseException] = []

        def run(worker: int) -> None:
            try:
                for index in range(25):
                    job_id = f"w{worker}-{index}"
                    store.record(event(EventKind.ENQUEUED, job_id))
                    store.record(event(EventKind.STARTED, job_id))
                    store.record(event(EventKind.FINISHED, job_id))
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(worker,)) for worker in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        ids = [f"w{worker}-{index}" for worker in range(4) for index in range(25)]
        found = store.get_many(ids)
        assert len(found) == 100
        assert {status.state for status in found.values()} == {State.FINISHED}

    # -- changes ------------------------------------------------------------------------------

    def test_changes_since_names_the_records_written_after_a_cursor(self, store: Store) -> None:
        store.record(event(EventKind.ENQUEUED, "before"))
        start, first = store.changes_since(None)
        store.record(event(EventKind.ENQUEUED, "a"))
        store.record(event(EventKind.STARTED, "b"))
        cursor, changed = store.changes_since(start)
        if not store.tracks_changes:  # the documented answer: "assume every job changed"
            assert changed is None
            assert store.changes_since(cursor)[1] is None
            return
        assert first == frozenset()  # starting to follow names nothing
        assert changed == frozenset({"a", "b"})
        assert cursor > start
        assert store.changes_since(cursor) == (cursor, frozenset())  # nothing since
        store.record(event(EventKind.PROGRESS, "b", progress=Progress(current=1)))
        store.record(event(EventKind.STARTED, "b"))  # a duplicate writes nothing
        later, changed = store.changes_since(cursor)
        assert changed == frozenset({"b"})
        assert later > cursor
        assert store.changes_since(start)[1] == frozenset({"a", "b"})  # an older cursor names more

    def test_changes_since_counts_reaped_jobs(self, store: Store) -> None:
        if not (store.tracks_changes and store.supports_heartbeat):
            return
        store.record(event(EventKind.STARTED, alive_until=lease(-1)))
        cursor, _ = store.changes_since(None)
        assert store.reap_lost() == 1
        assert store.changes_since(cursor)[1] == frozenset({"job-1"})

    def test_changes_since_gives_up_past_its_bound(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        if not store.tracks_changes:
            return
        monkeypatch.setattr(sys.modules[type(store).__module__], "MAX_CHANGES", 3)
        cursor, _ = store.changes_since(None)
        for index in range(3):
            store.record(event(EventKind.ENQUEUED, f"job-{index}"))
        assert store.changes_since(cursor)[1] == frozenset({"job-0", "job-1", "job-2"})
        store.record(event(EventKind.ENQUEUED, "job-3"))
        later, changed = store.changes_since(cursor)
        assert changed is None  # too many to name: assume every job changed
        assert store.changes_since(later) == (later, frozenset())

    def test_a_follower_of_changes_misses_no_write_of_concurrent_writers(
        self, store: Store
    ) -> None:
        """Read what changes_since names while 4 threads write: the last reads are the truth."""
        if not store.tracks_changes:
            return
        errors: list[BaseException] = []
        writing = threading.Event()
        writing.set()
        seen: dict[str, State] = {}
        cursor, _ = store.changes_since(None)

        def follow(cursor: int) -> int:
            cursor, changed = store.changes_since(cursor)
            assert changed is not None
            for job_id, status in store.get_many(sorted(changed)).items():
                seen[job_id] = status.state
            return cursor

        def write(worker: int) -> None:
            try:
                for index in range(25):
                    job_id = f"w{worker}-{index}"
                    for kind in (EventKind.ENQUEUED, EventKind.STARTED, EventKind.FINISHED):
                        store.record(event(kind, job_id))
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            cursor = follow(cursor)
        for thread in threads:
            thread.join()
        follow(cursor)
        assert errors == []
        assert len(seen) == 100
        assert set(seen.values()) == {State.FINISHED}

    # -- listing ------------------------------------------------------------------------------

    def _record_many(self, store: Store, count: int) -> list[str]:
        ids = [f"job-{index:03d}" for index in range(count)]
        for index, job_id in enumerate(ids):
            store.record(event(EventKind.ENQUEUED, job_id))
            if index % 3 == 0:
                store.record(event(EventKind.STARTED, job_id))
        return ids

    def test_list_is_newest_first_and_pages_cover_everything_once(self, store: Store) -> None:
        ids = self._record_many(store, 23)
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = store.list_jobs(limit=5, cursor=cursor)
            seen.extend(status.job_id for status in page.jobs)
            pages += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == list(reversed(ids))
        assert pages == 5

    def test_list_filters_by_state(self, store: Store) -> None:
        ids = self._record_many(store, 10)
        page = store.list_jobs(state=State.STARTED, limit=2)
        assert [status.job_id for status in page.jobs] == [ids[9], ids[6]]
        assert page.next_cursor is not None
        rest = store.list_jobs(state=State.STARTED, limit=10, cursor=page.next_cursor)
        assert [status.job_id for status in rest.jobs] == [ids[3], ids[0]]
        assert rest.next_cursor is None
        assert store.list_jobs(state=State.FAILED).jobs == ()

    def test_list_follows_state_changes(self, store: Store) -> None:
        self._record_many(store, 3)
        store.record(event(EventKind.FAILED, "job-000"))
        assert [s.job_id for s in store.list_jobs(state=State.FAILED).jobs] == ["job-000"]
        assert [s.job_id for s in store.list_jobs(state=State.STARTED).jobs] == []

    def test_exact_last_page_has_no_cursor(self, store: Store) -> None:
        self._record_many(store, 4)
        assert store.list_jobs(limit=4).next_cursor is None
        assert store.list_jobs().jobs[0].job_id == "job-003"

    @pytest.mark.parametrize("limit", [0, -1, 1001, True])
    def test_list_refuses_bad_limits(self, store: Store, limit: int) -> None:
        with pytest.raises(InvalidInput):
            store.list_jobs(limit=limit)

    @pytest.mark.parametrize("cursor", ["garbage", "", "bm90IGEgY3Vyc29y"])
    def test_list_refuses_forged_cursors(self, store: Store, cursor: str) -> None:
        with pytest.raises(InvalidInput):
            store.list_jobs(cursor=cursor)

    # -- retention ----------------------------------------------------------------------------

    def test_prune_removes_only_expired_records(self, open_store: OpenStore) -> None:
        store = open_store(ttl=3600)
        store.record(event(EventKind.FINISHED, "old"))
        assert store.prune() == 0
        assert store.get("old") is not None
        assert store.prune(now=datetime.now(UTC) + timedelta(hours=2)) == 1
        assert store.get("old") is None
        assert store.list_jobs().jobs == ()
        assert store.prune(now=datetime.now(UTC) + timedelta(hours=2)) == 0

    def test_without_ttl_nothing_expires(self, open_store: OpenStore) -> None:
        store = open_store(ttl=None)
        store.record(event(EventKind.FINISHED, "kept"))
        assert store.prune(now=datetime.now(UTC) + timedelta(days=3650)) == 0
        assert known(store, "kept").state is State.FINISHED

    def test_expired_record_is_invisible_at_once_and_events_refresh_the_ttl(
        self, open_store: OpenStore
    ) -> None:
        store = open_store(ttl=1.5)
        store.record(event(EventKind.STARTED, "alive"))
        store.record(event(EventKind.STARTED, "quiet"))
        time.sleep(0.9)
        store.record(event(EventKind.PROGRESS, "alive", progress=Progress(current=1)))
        time.sleep(0.9)
        assert store.get("quiet") is None
        assert [s.job_id for s in store.list_jobs().jobs] == ["alive"]
        assert known(store, "alive").state is State.STARTED
        store.record(event(EventKind.ENQUEUED, "quiet"))  # a new life, not the old record
        reborn = known(store, "quiet")
        assert (reborn.state, reborn.attempts) == (State.CREATED, 0)

    def test_prune_is_safe_alongside_writers(self, open_store: OpenStore) -> None:
        store = open_store(ttl=3600)
        stop = threading.Event()
        errors: list[BaseException] = []

        def prune_forever() -> None:
            try:
                while not stop.is_set():
                    store.prune(now=datetime.now(UTC) + timedelta(hours=2))
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
                errors.append(exc)

        pruner = threading.Thread(target=prune_forever)
        pruner.start()
        try:
            for index in range(50):
                store.record(event(EventKind.FINISHED, f"j{index}"))
        finally:
            stop.set()
            pruner.join()
        assert errors == []
        store.prune(now=datetime.now(UTC) + timedelta(hours=2))
        assert store.list_jobs().jobs == ()

    # -- heartbeats: the lease of a running job -----------------------------------------------

    @staticmethod
    def _leased(store: Store) -> Store:
        """The store, if it keeps leases (every built-in store does: see test_base)."""
        if not store.supports_heartbeat:
            pytest.skip(f"{type(store).__name__} declares supports_heartbeat = False")
        return store

    def test_a_running_job_with_a_live_lease_reads_started(self, store: Store) -> None:
        self._leased(store)
        store.record(event(EventKind.STARTED, "alive", alive_until=lease(3600)))
        assert known(store, "alive").state is State.STARTED
        assert ids(store, State.STARTED) == ["alive"]
        assert ids(store, State.LOST) == []

    def test_a_lapsed_lease_reads_lost_from_every_read(self, store: Store) -> None:
        self._leased(store)
        ended = lease(-5)
        store.record(event(EventKind.ENQUEUED, "gone", job_class="reports.build", at=at(0)))
        store.record(event(EventKind.STARTED, "gone", at=at(1), alive_until=lease(3600)))
        store.record(event(EventKind.PROGRESS, "gone", at=at(2), progress=Progress(current=3)))
        assert store.beat(["gone"], ended) == 1  # its last beat: the lease ran out 5 s ago
        store.record(event(EventKind.STARTED, "alive", alive_until=lease(3600)))
        store.record(event(EventKind.STARTED, "unwatched"))  # no lease: never lost
        lost = known(store, "gone")
        assert (lost.state, lost.completed, lost.success) == (State.LOST, True, False)
        assert (lost.finished_at, lost.started_at, lost.attempts) == (ended, at(1), 1)
        assert lost.progress == Progress(current=3)  # what it reached is kept
        assert lost.error is not None
        assert lost.error.type == "WorkerLost"
        assert lost.error.traceback is None
        assert f"by {isoformat(ended)};" in lost.error.message
        assert store.get_many(["gone", "alive"]) == {"gone": lost, "alive": known(store, "alive")}
        try:
            assert store.get_nowait("gone") == lost
        except BlockingIOError:
            assert type(store).get_nowait is Store.get_nowait
        assert ids(store, State.LOST) == ["gone"]
        assert ids(store, State.STARTED) == ["unwatched", "alive"]
        assert [s.state for s in store.list_jobs().jobs] == [State.STARTED] * 2 + [State.LOST]

    def test_lost_listing_merges_lapsed_and_recorded_lost_jobs_in_order(self, store: Store) -> None:
        self._leased(store)
        expected: list[str] = []
        for index in range(9):
            job_id = f"job-{index}"
            store.record(
                event(EventKind.STARTED, job_id, alive_until=lease(-1 if index % 3 else 60))
            )
            if index % 3 == 1:
                store.record(event(EventKind.LOST, job_id))  # recorded, not only presumed
            if index % 3:
                expected.insert(0, job_id)
        assert ids(store, State.LOST, limit=2) == expected
        assert ids(store, State.STARTED, limit=2) == ["job-6", "job-3", "job-0"]

    def test_beat_extends_many_leases_in_one_call(self, store: Store) -> None:
        self._leased(store)
        running = [f"run-{index}" for index in range(5)]
        for job_id in running:
            store.record(event(EventKind.STARTED, job_id, alive_until=lease(-1)))
        assert {s.state for s in store.get_many(running).values()} == {State.LOST}
        assert store.beat([*running, running[0]], lease(3600)) == 5
        assert {s.state for s in store.get_many(running).values()} == {State.STARTED}
        assert ids(store, State.STARTED) == list(reversed(running))
        assert store.beat([], lease(3600)) == 0

    def test_beat_never_touches_unknown_ended_or_expired_jobs(self, open_store: OpenStore) -> None:
        store = self._leased(open_store(ttl=0.5))
        store.record(event(EventKind.STARTED, "expired"))
        time.sleep(0.7)
        store.record(event(EventKind.ENQUEUED, "waiting"))
        store.record(event(EventKind.STARTED, "done"))
        store.record(event(EventKind.FINISHED, "done"))
        store.record(event(EventKind.STARTED, "quitter"))
        store.record(event(EventKind.LOST, "quitter"))
        touched = store.beat(["missing", "expired", "waiting", "done", "quitter"], lease(3600))
        assert touched == 0
        assert store.get("missing") is None
        assert store.get("expired") is None  # never resurrected
        assert ids(store) == ["quitter", "done", "waiting"]
        assert [known(store, job_id).state for job_id in ("waiting", "done", "quitter")] == [
            State.CREATED,
            State.FINISHED,
            State.LOST,
        ]

    def test_beat_refuses_bad_input_before_any_io(self, store: Store) -> None:
        self._leased(store)
        with pytest.raises(InvalidJobId):
            store.beat(["fine", ""], lease(60))
        with pytest.raises(InvalidInput, match="timezone-aware"):
            store.beat(["fine"], datetime(2030, 1, 1))  # naive: the mistake under test

    def test_redelivery_after_a_lapsed_lease_counts_an_attempt(self, store: Store) -> None:
        self._leased(store)
        store.record(event(EventKind.STARTED, "a", at=at(1), alive_until=lease(-1)))
        store.record(event(EventKind.STARTED, "a", at=at(2), alive_until=lease(3600)))
        again = known(store, "a")
        assert (again.state, again.attempts, again.finished_at, again.error) == (
            State.STARTED,
            2,
            None,
            None,
        )
        store.record(event(EventKind.STARTED, "b", attempt=1, alive_until=lease(-1)))
        store.record(event(EventKind.STARTED, "b", attempt=2, alive_until=lease(3600)))
        assert (known(store, "b").state, known(store, "b").attempts) == (State.STARTED, 2)
        assert ids(store, State.LOST) == []

    def test_a_new_attempt_without_a_lease_is_not_lost_by_the_old_one(self, store: Store) -> None:
        self._leased(store)
        store.record(event(EventKind.STARTED, "a", attempt=1, alive_until=lease(-1)))
        store.record(event(EventKind.STARTED, "a", attempt=2))  # a worker without heartbeats
        assert (known(store, "a").state, known(store, "a").attempts) == (State.STARTED, 2)

    def test_progress_after_a_lapsed_lease_revives_the_same_attempt(self, store: Store) -> None:
        self._leased(store)
        store.record(event(EventKind.STARTED, "slow", alive_until=lease(-1)))
        assert known(store, "slow").state is State.LOST
        store.record(event(EventKind.PROGRESS, "slow", progress=Progress(current=4, total=9)))
        revived = known(store, "slow")
        assert (revived.state, revived.attempts, revived.error) == (State.STARTED, 1, None)
        assert revived.progress == Progress(current=4, total=9)
        assert store.beat(["slow"], lease(3600)) == 1  # its heartbeat leases it again
        assert known(store, "slow").state is State.STARTED

    def test_a_lost_report_persists_a_lapsed_lease_with_its_own_error(self, store: Store) -> None:
        self._leased(store)
        store.record(event(EventKind.STARTED, "a", alive_until=lease(-1)))
        killed = JobError(type="WorkerKilled", message="SIGKILL")
        assert store.record(event(EventKind.LOST, "a", at=at(9), error=killed)) is not None
        lost = known(store, "a")
        assert (lost.state, lost.error, lost.finished_at) == (State.LOST, killed, at(9))
        assert store.beat(["a"], lease(3600)) == 0  # a recorded lost is not a lapsed lease

    def test_reap_lost_records_lapsed_leases_once(self, store: Store) -> None:
        self._leased(store)
        ended = lease(-2)
        for job_id in ("gone-1", "gone-2"):
            store.record(event(EventKind.STARTED, job_id, alive_until=ended))
        store.record(event(EventKind.STARTED, "alive", alive_until=lease(3600)))
        store.record(event(EventKind.STARTED, "unwatched"))
        store.record(event(EventKind.STARTED, "done", alive_until=ended))
        store.record(event(EventKind.FINISHED, "done"))
        presumed = known(store, "gone-1")
        assert store.reap_lost() == 2
        assert store.reap_lost() == 0
        assert known(store, "gone-1") == presumed  # what reads showed, now written down
        assert ids(store, State.LOST) == ["gone-2", "gone-1"]
        store.record(event(EventKind.STARTED, "gone-1", alive_until=lease(3600)))  # redelivered
        again = known(store, "gone-1")
        assert (again.state, again.attempts, again.error) == (State.STARTED, 2, None)

    def test_a_beat_revives_a_job_reaped_lost_for_its_lease(self, store: Store) -> None:
        # A store outage longer than the lease: the reaper wrote lost, the worker lived on.
        self._leased(store)
        store.record(event(EventKind.STARTED, "slow", at=at(1), alive_until=lease(3600)))
        store.record(event(EventKind.PROGRESS, "slow", at=at(2), progress=Progress(current=3)))
        store.record(event(EventKind.META, "slow", meta={"rows": 3}))
        assert store.beat(["slow"], lease(-2)) == 1
        store.record(event(EventKind.STARTED, "killed", alive_until=lease(3600)))
        store.record(event(EventKind.LOST, "killed", error=JobError(type="HorseDied", message="")))
        store.record(event(EventKind.STARTED, "over", alive_until=lease(-2)))
        store.record(event(EventKind.FINISHED, "over"))
        assert store.reap_lost() == 1
        cursor, _ = store.changes_since(None)
        assert store.beat(["slow", "killed", "over", "missing"], lease(3600)) == 1
        back = known(store, "slow")
        assert (back.state, back.attempts, back.error, back.finished_at) == (
            State.STARTED,
            1,
            None,
            None,
        )
        assert (back.started_at, back.progress, dict(back.meta)) == (
            at(1),
            Progress(current=3),
            {"rows": 3},
        )
        assert ids(store, State.STARTED) == ["slow"]
        assert known(store, "killed").state is State.LOST  # a loss the queue saw stays
        assert known(store, "over").state is State.FINISHED
        if store.tracks_changes:  # followers see it come back
            assert "slow" in (store.changes_since(cursor)[1] or {"slow"})
        assert store.beat(["slow"], lease(3600)) == 1  # and it beats on as any running job

    def test_reap_lost_at_a_later_time_and_never_a_live_lease(self, store: Store) -> None:
        self._leased(store)
        store.record(event(EventKind.STARTED, "a", alive_until=lease(60)))
        assert store.reap_lost() == 0
        assert store.reap_lost(now=datetime.now(UTC) + timedelta(seconds=120)) == 1
        assert known(store, "a").state is State.LOST

    def test_reap_lost_from_many_threads_counts_each_job_once(self, store: Store) -> None:
        self._leased(store)
        lapsed = [f"gone-{index:02d}" for index in range(30)]
        for job_id in lapsed:
            store.record(event(EventKind.STARTED, job_id, alive_until=lease(-1)))
        reapers = 4
        barrier = threading.Barrier(reapers)
        counts: list[int] = []
        errors: list[BaseException] = []

        def reap() -> None:
            try:
                barrier.wait()
                counts.append(store.reap_lost())
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=reap) for _ in range(reapers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert sum(counts) == len(lapsed)
        assert {s.state for s in store.get_many(lapsed).values()} == {State.LOST}

    def test_beats_never_lose_concurrent_events(self, store: Store) -> None:
        self._leased(store)
        store.record(event(EventKind.STARTED, alive_until=lease(3600)))
        stop = threading.Event()
        errors: list[BaseException] = []

        def beat_forever() -> None:
            # A worker beats every few seconds; a beat per millisecond is already far more
            # than that. (Without any pause, Redis's optimistic writes can starve: every beat
            # touches the job's hash and so restarts a concurrent write.)
            try:
                while not stop.wait(0.001):
                    store.beat(["job-1"], lease(3600))
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
                errors.append(exc)

        beater = threading.Thread(target=beat_forever)
        beater.start()
        try:
            for step in range(1, 31):
                store.record(event(EventKind.PROGRESS, progress=Progress(current=step)))
            store.record(event(EventKind.META, meta={"rows": 30}))
        finally:
            stop.set()
            beater.join()
        assert errors == []
        status = known(store, "job-1")
        assert (status.state, status.progress, status.meta) == (
            State.STARTED,
            Progress(current=30),
            {"rows": 30},
        )
        store.record(event(EventKind.FINISHED))
        assert store.beat(["job-1"], lease(3600)) == 0
        assert known(store, "job-1").state is State.FINISHED

    def test_beats_keep_a_running_job_past_its_ttl_then_it_expires(
        self, open_store: OpenStore
    ) -> None:
        ttl = 1.5
        store = self._leased(open_store(ttl=ttl))
        store.record(event(EventKind.STARTED, "long", alive_until=lease(3600)))
        store.record(event(EventKind.STARTED, "quiet", alive_until=lease(3600)))
        kept_until = time.monotonic() + 2 * ttl + 0.5
        while time.monotonic() < kept_until:  # no event, only beats, for over twice the TTL
            assert store.beat(["long"], lease(3600)) == 1
            assert known(store, "long").state is State.STARTED
            time.sleep(ttl / 10)
        assert store.get("quiet") is None  # the same job without beats expired
        assert ids(store) == ["long"]
        store.record(event(EventKind.FINISHED, "long"))
        assert known(store, "long").state is State.FINISHED  # kept ttl after it ended
        later = datetime.now(UTC) + timedelta(seconds=2 * ttl)
        assert store.prune(now=later) >= 1
        assert store.get("long") is None
        assert store.list_jobs().jobs == ()


class PersistentStoreContract(StoreContract):
    """Behaviour of stores whose records outlive the store object and the process."""

    def test_records_survive_reopening(self, open_store: OpenStore) -> None:
        first = open_store()
        first.record(event(EventKind.STARTED, "durable", job_class="a.b"))
        first.record(event(EventKind.PROGRESS, "durable", progress=Progress(current=3, total=9)))
        first.close()
        second = open_store()
        status = known(second, "durable")
        assert (status.state, status.job_class) == (State.STARTED, "a.b")
        assert status.progress == Progress(current=3, total=9)
        second.close()

    def test_two_store_objects_see_each_others_writes(self, open_store: OpenStore) -> None:
        writer, reader = open_store(), open_store()
        writer.record(event(EventKind.FINISHED, "shared"))
        assert known(reader, "shared").state is State.FINISHED
        reader.record(event(EventKind.META, "shared", meta={"seen": True}))
        assert known(writer, "shared").meta == {"seen": True}
        writer.close()
        reader.close()
