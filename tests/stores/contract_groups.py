"""Groups, kept by every store with ``supports_groups``: mixed into its tests.

A group's counters follow every write of its members (events, reaping, pruning), never double
count under concurrent writers, and always equal a recount of the members.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from immortus.exceptions import InvalidInput
from immortus.grouping import GroupStatus
from immortus.status import JobError, Progress, State
from immortus.stores.base import Store
from immortus.transitions import EventKind
from tests.stores.contract import OpenStore, event, known, lease

HOSTILE_GROUP_IDS = (
    "g' OR '1'='1",
    'g"; DROP TABLE immortus_jobs; --',
    "{immortus}:group:other",
    "g*?[]%_\\",
    "grüppe 组 🚀",
    "x" * 255,
    "a b",
)


def group(store: Store, group_id: str = "g") -> GroupStatus:
    assert store.supports_groups, f"{type(store).__name__} keeps no groups"
    found = store.group(group_id)
    assert found is not None, f"group {group_id!r} should be known"
    return found


def recount(store: Store, group_id: str, job_ids: list[str]) -> dict[State, int]:
    counted = Counter(
        status.state for status in store.get_many(job_ids).values() if status.group_id == group_id
    )
    return dict(counted)


class GroupsContract:
    """Behaviour of groups, for stores with ``supports_groups``."""

    def test_an_unknown_group_is_none(self, store: Store) -> None:
        assert store.group("nobody-made-this") is None

    def test_a_member_joins_with_its_first_event(self, store: Store) -> None:
        store.record(event(EventKind.ENQUEUED, "a", job_class="mail.send", group_id="g"))
        assert known(store, "a").group_id == "g"
        answer = group(store)
        assert (answer.total, answer.completed, answer.state) == (1, 0, State.CREATED)
        assert answer.jobs == {State.CREATED: 1}
        assert answer.progress == 0.0
        assert answer.updated_at is not None

    def test_the_first_group_named_wins_for_good(self, store: Store) -> None:
        store.record(event(EventKind.STARTED, "a", group_id="first"))
        store.record(event(EventKind.ENQUEUED, "a", group_id="second"))
        store.record(event(EventKind.FINISHED, "a", group_id="second"))
        assert known(store, "a").group_id == "first"
        assert group(store, "first").jobs == {State.FINISHED: 1}
        assert store.group("second") is None

    def test_a_recorded_job_joins_once_by_a_later_event(self, store: Store) -> None:
        store.record(event(EventKind.STARTED, "a"))
        assert known(store, "a").group_id is None
        join = event(EventKind.META, "a", meta={}, group_id="g")
        assert store.record(join) is not None
        assert store.record(join) is None  # already in it: nothing changes
        answer = group(store)
        assert (answer.total, answer.jobs) == (1, {State.STARTED: 1})

    def test_counts_follow_members_through_every_state(self, store: Store) -> None:
        steps = [
            (EventKind.ENQUEUED, {}, State.CREATED),
            (EventKind.STARTED, {"attempt": 1}, State.STARTED),
            (EventKind.RETRYING, {"attempt": 1}, State.RETRYING),
            (EventKind.STARTED, {"attempt": 2}, State.STARTED),
            (EventKind.FINISHED, {"attempt": 2}, State.FINISHED),
        ]
        for kind, fields, state in steps:
            store.record(event(kind, "a", group_id="g", **fields))
            assert group(store).jobs == {state: 1}
        store.record(event(EventKind.STARTED, "b", group_id="g"))
        assert group(store).state is State.STARTED
        store.record(event(EventKind.CANCELLED, "b"))
        store.record(event(EventKind.STARTED, "c", group_id="g"))
        store.record(event(EventKind.LOST, "c"))
        answer = group(store)
        assert answer.jobs == {State.FINISHED: 1, State.CANCELLED: 1, State.LOST: 1}
        assert (answer.total, answer.completed, answer.progress) == (3, 3, 1.0)
        assert answer.state is State.FAILED
        assert answer.to_dict()["status"] == "failed"

    def test_group_state_rules(self, store: Store) -> None:
        store.record(event(EventKind.ENQUEUED, "a", group_id="g"))
        store.record(event(EventKind.ENQUEUED, "b", group_id="g"))
        assert group(store).state is State.CREATED
        store.record(event(EventKind.CANCELLED, "a"))
        assert group(store).state is State.STARTED
        store.record(event(EventKind.CANCELLED, "b"))
        assert group(store).state is State.CANCELLED
        store.record(event(EventKind.FINISHED, "c", group_id="g"))
        assert group(store).state is State.FINISHED

    def test_progress_combines_members(self, store: Store) -> None:
        for job_id in ("a", "b", "c", "d"):
            store.record(event(EventKind.ENQUEUED, job_id, group_id="g"))
        assert group(store).progress == 0.0
        store.record(event(EventKind.PROGRESS, "a", progress=Progress(current=50, total=100)))
        store.record(event(EventKind.PROGRESS, "b", progress=Progress(current=3)))  # no total
        assert group(store).progress == pytest.approx(0.5 / 4)
        store.record(event(EventKind.PROGRESS, "a", progress=Progress(current=75, total=100)))
        store.record(event(EventKind.FINISHED, "c"))
        assert group(store).progress == pytest.approx(1.75 / 4)
        store.record(event(EventKind.FINISHED, "a"))
        assert group(store).progress == pytest.approx(2 / 4)
        store.record(event(EventKind.FINISHED, "b"))
        store.record(event(EventKind.FAILED, "d"))
        assert group(store).progress == 1.0
        assert group(store).to_dict()["progress"] == {"fraction": 1.0, "percent": 100.0}

    def test_the_first_error_is_kept(self, store: Store) -> None:
        store.record(event(EventKind.STARTED, "a", group_id="g"))
        store.record(event(EventKind.STARTED, "b", group_id="g"))
        retry = JobError(type="Timeout", message="try again")
        store.record(event(EventKind.RETRYING, "a", error=retry))
        assert group(store).first_error is None  # a retry is not a failure
        first = JobError(type="ValueError", message="bad row 7", traceback="Traceback: secret")
        store.record(event(EventKind.FAILED, "a", error=first))
        store.record(event(EventKind.FAILED, "b", error=JobError(type="KeyError", message="x")))
        answer = group(store)
        assert answer.first_error == JobError(type="ValueError", message="bad row 7")
        assert answer.to_dict()["error"] == {"type": "ValueError", "message": "bad row 7"}
        assert "secret" not in repr(answer.to_dict())

    def test_reaping_a_member_moves_it_to_lost(self, store: Store) -> None:
        store.record(event(EventKind.STARTED, "a", group_id="g", alive_until=lease(-1)))
        assert store.reap_lost() == 1
        answer = group(store)
        assert answer.jobs == {State.LOST: 1}
        assert answer.first_error is not None
        assert answer.first_error.type == "WorkerLost"

    def test_pruning_a_member_leaves_its_group(self, open_store: OpenStore) -> None:
        store = open_store(ttl=timedelta(hours=1))
        try:
            store.record(event(EventKind.FINISHED, "a", group_id="g"))
            progress = Progress(current=1, total=4)
            store.record(event(EventKind.PROGRESS, "b", group_id="g", progress=progress))
            assert group(store).total == 2
            assert store.prune(now=datetime.now(UTC) + timedelta(hours=2)) == 2
            assert store.group("g") is None
            store.record(event(EventKind.STARTED, "a", group_id="g"))  # a new life of "a"
            answer = group(store)
            assert (answer.total, answer.jobs, answer.progress) == (1, {State.STARTED: 1}, 0.0)
        finally:
            store.close()

    def test_concurrent_members_of_one_group_are_counted_exactly(
        self, open_store: OpenStore
    ) -> None:
        writers, each = 4, 20
        job_ids = [f"w{worker}-{n}" for worker in range(writers) for n in range(each)]
        first = open_store()  # each writer its own client where records outlive the process
        shared = first.location is None  # a memory store: one object holds the records
        stores = [first] + [first if shared else open_store() for _ in range(writers - 1)]
        errors: list[BaseException] = []

        def write(worker: int) -> None:
            store = stores[worker]
            try:
                for n in range(each):
                    job_id = f"w{worker}-{n}"
                    store.record(event(EventKind.ENQUEUED, job_id, group_id="g"))
                    store.record(event(EventKind.STARTED, job_id))
                    half = Progress(current=1, total=2)
                    store.record(event(EventKind.PROGRESS, job_id, progress=half))
                    ending = EventKind.FINISHED if n % 5 else EventKind.FAILED
                    error = JobError(type="E", message=job_id)
                    store.record(event(ending, job_id, error=error))
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(worker,)) for worker in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        try:
            assert not errors, errors
            answer = group(stores[0])
            assert answer.total == writers * each == answer.completed
            assert answer.jobs == {State.FINISHED: 64, State.FAILED: 16}
            assert answer.jobs == recount(stores[0], "g", job_ids)
            assert answer.progress == 1.0
            assert answer.first_error is not None
            assert answer.first_error.message in job_ids
        finally:
            for store in set(stores):
                store.close()

    @pytest.mark.parametrize("group_id", HOSTILE_GROUP_IDS)
    def test_hostile_group_ids_are_kept_apart(self, store: Store, group_id: str) -> None:
        store.record(event(EventKind.STARTED, "a", group_id=group_id))
        store.record(event(EventKind.ENQUEUED, "b", group_id="g"))
        assert known(store, "a").group_id == group_id
        assert group(store, group_id).jobs == {State.STARTED: 1}
        assert group(store, "g").jobs == {State.CREATED: 1}

    @pytest.mark.parametrize("bad", ["", " g", "g\n", "x" * 256, 7])
    def test_malformed_group_ids_are_refused(self, store: Store, bad: object) -> None:
        with pytest.raises(InvalidInput):
            store.group(bad)  # type: ignore[arg-type]
