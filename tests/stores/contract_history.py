"""What every store keeps beside the status: ``retry_at``, the job's history, cancel requests.

Mixed into each store's test class next to :class:`~tests.stores.contract.StoreContract`
(:class:`PersistentHistoryContract` for stores whose records outlive the process), with the same
``open_store`` fixture.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from immortus.cancel_requests import CancelRequestStore
from immortus.status import MAX_HISTORY, HistoryEntry, HistoryEvent, JobError, Progress, State
from immortus.stores.base import Store
from immortus.transitions import EventKind
from tests.stores.contract import OpenStore, at, event, known, lease

ERROR = JobError(type="TimeoutError", message="slow", traceback="Traceback: secret frames")


def requests(store: Store) -> CancelRequestStore:
    """The store as a carrier of cancel requests, which every store immortus ships is."""
    assert isinstance(store, CancelRequestStore)
    return store


def kinds(history: tuple[HistoryEntry, ...]) -> list[tuple[str, int]]:
    return [(entry.event.value, entry.attempt) for entry in history]


class HistoryContract:
    """``retry_at``, the history and cancel requests, on every store."""

    @pytest.fixture
    def store(self, open_store: OpenStore) -> Iterator[Store]:
        store = open_store()
        yield store
        store.close()

    # -- retry_at -------------------------------------------------------------------------------

    def test_retry_at_round_trips_and_the_next_attempt_clears_it(self, store: Store) -> None:
        store.record(event(EventKind.STARTED, "r", attempt=1))
        store.record(event(EventKind.RETRYING, "r", attempt=1, error=ERROR, retry_at=at(30.5)))
        retrying = known(store, "r")
        assert (retrying.state, retrying.retry_at) == (State.RETRYING, at(30.5))
        assert store.get_many(["r"])["r"].retry_at == at(30.5)
        assert retrying.to_dict()["retry_at"] == "2026-11-28T12:00:30.500Z"
        store.record(event(EventKind.STARTED, "r", attempt=2, at=at(31)))
        assert known(store, "r").retry_at is None

    def test_an_ending_clears_retry_at(self, store: Store) -> None:
        store.record(event(EventKind.RETRYING, "r", attempt=1, retry_at=at(60)))
        store.record(event(EventKind.CANCELLED, "r", at=at(1)))
        assert known(store, "r").retry_at is None

    # -- the history ----------------------------------------------------------------------------

    def test_history_tells_every_attempt_and_leaves_progress_and_meta_out(
        self, store: Store
    ) -> None:
        assert store.keeps_history
        store.record(event(EventKind.ENQUEUED, "h"))
        store.record(event(EventKind.STARTED, "h", at=at(1), attempt=1))
        store.record(event(EventKind.PROGRESS, "h", at=at(2), progress=_progress()))
        store.record(event(EventKind.META, "h", at=at(2), meta={"rows": 3}))
        store.record(
            event(EventKind.RETRYING, "h", at=at(3), attempt=1, error=ERROR, retry_at=at(10))
        )
        store.record(event(EventKind.STARTED, "h", at=at(10), attempt=2))
        store.record(event(EventKind.FINISHED, "h", at=at(12), attempt=2))
        history = store.history("h")
        assert kinds(history) == [
            ("enqueued", 0),
            ("started", 1),
            ("retrying", 1),
            ("started", 2),
            ("finished", 2),
        ]
        retrying = history[2]
        assert retrying.at == at(3)
        assert retrying.retry_at == at(10)
        assert retrying.error == JobError(type="TimeoutError", message="slow")
        assert retrying.error is not None
        assert retrying.error.traceback is None
        assert retrying.to_dict() == {
            "at": "2026-11-28T12:00:03.000Z",
            "event": "retrying",
            "attempt": 1,
            "error": {"type": "TimeoutError", "message": "slow"},
            "retry_at": "2026-11-28T12:00:10.000Z",
        }
        assert known(store, "h").history == ()  # a status read never carries it

    def test_history_keeps_time_order_when_events_arrive_late(self, store: Store) -> None:
        store.record(event(EventKind.STARTED, "o", at=at(5), attempt=1))
        store.record(event(EventKind.ENQUEUED, "o", at=at(1)))
        assert kinds(store.history("o")) == [("enqueued", 0), ("started", 1)]
        assert [entry.at for entry in store.history("o")] == [at(1), at(5)]

    def test_ignored_events_add_nothing(self, store: Store) -> None:
        store.record(event(EventKind.STARTED, "i", attempt=1))
        store.record(event(EventKind.FINISHED, "i", attempt=1))
        store.record(event(EventKind.FINISHED, "i", at=at(1), attempt=1))
        store.record(event(EventKind.FAILED, "i", at=at(2), error=ERROR))
        assert kinds(store.history("i")) == [("started", 1), ("finished", 1)]

    def test_history_keeps_the_latest_entries_within_its_bound(self, store: Store) -> None:
        for attempt in range(1, MAX_HISTORY):
            store.record(event(EventKind.STARTED, "b", at=at(2 * attempt), attempt=attempt))
            store.record(
                event(EventKind.RETRYING, "b", at=at(2 * attempt + 1), attempt=attempt, error=ERROR)
            )
        history = store.history("b")
        assert len(history) == MAX_HISTORY
        assert history[-1] == HistoryEntry(
            at=at(2 * MAX_HISTORY - 1),
            event=HistoryEvent.RETRYING,
            attempt=MAX_HISTORY - 1,
            error=JobError(type="TimeoutError", message="slow"),
        )
        assert [entry.at for entry in history] == sorted(entry.at for entry in history)
        assert history[0].at == at(2 * MAX_HISTORY - 1 - (MAX_HISTORY - 1))

    def test_an_unknown_job_has_no_history(self, store: Store) -> None:
        assert store.history("never-seen") == ()

    def test_history_expires_with_its_record(self, open_store: OpenStore) -> None:
        store = open_store(ttl=0.3)
        try:
            store.record(event(EventKind.STARTED, "x", attempt=1))
            assert len(store.history("x")) == 1
            time.sleep(0.4)
            assert store.history("x") == ()
            store.record(event(EventKind.ENQUEUED, "x", at=at(9)))  # the next life of the id
            assert kinds(store.history("x")) == [("enqueued", 0)]
        finally:
            store.close()

    def test_a_lapsed_lease_and_its_reaping_are_told_once(self, store: Store) -> None:
        store.record(event(EventKind.STARTED, "l", attempt=1, alive_until=lease(-1)))
        assert store.reap_lost() == 1
        history = store.history("l")
        assert kinds(history) == [("started", 1), ("lost", 1)]
        assert history[1].error is not None
        assert history[1].error.type == "WorkerLost"
        # a redelivery after the lease lapsed: the loss is told at the lease's end, in between
        store.record(event(EventKind.STARTED, "m", at=lease(-9), attempt=1, alive_until=lease(-5)))
        store.record(event(EventKind.STARTED, "m", at=lease(0), attempt=2))
        assert kinds(store.history("m")) == [("started", 1), ("lost", 1), ("started", 2)]

    # -- cancel requests ------------------------------------------------------------------------

    def test_a_cancel_request_is_taken_only_by_a_live_unended_record(self, store: Store) -> None:
        assert isinstance(store, CancelRequestStore)
        assert store.request_cancel("nobody") is False
        assert store.get("nobody") is None  # a request never creates a record
        assert store.cancel_requested("nobody") is False
        store.record(event(EventKind.STARTED, "c", attempt=1))
        assert store.cancel_requested("c") is False
        assert store.request_cancel("c") is True
        assert store.request_cancel("c") is True  # idempotent
        assert store.cancel_requested("c") is True
        assert kinds(store.history("c")) == [("started", 1), ("cancel_requested", 1)]
        store.record(event(EventKind.PROGRESS, "c", at=at(1), progress=_progress()))
        assert store.cancel_requested("c") is True  # later writes keep it
        assert known(store, "c").state is State.STARTED  # a request is not a cancellation
        store.record(event(EventKind.FINISHED, "d"))
        assert store.request_cancel("d") is False
        assert store.cancel_requested("d") is False

    def test_a_job_whose_lease_lapsed_takes_no_cancel_request(self, store: Store) -> None:
        store.record(event(EventKind.STARTED, "z", attempt=1, alive_until=lease(-1)))
        assert requests(store).request_cancel("z") is False

    def test_a_cancel_request_expires_with_its_record(self, open_store: OpenStore) -> None:
        store = open_store(ttl=0.3)
        try:
            carrier = requests(store)
            store.record(event(EventKind.STARTED, "e", attempt=1))
            assert carrier.request_cancel("e") is True
            time.sleep(0.4)
            assert carrier.cancel_requested("e") is False
            assert carrier.request_cancel("e") is False
            store.record(event(EventKind.STARTED, "e", attempt=1))  # the next life of the id
            assert carrier.cancel_requested("e") is False
        finally:
            store.close()


class PersistentHistoryContract(HistoryContract):
    """For stores whose records are shared by every process that opens the same data."""

    def test_another_store_object_sees_the_history_and_the_request(
        self, open_store: OpenStore
    ) -> None:
        writer, reader = open_store(), open_store()
        try:
            writer.record(event(EventKind.STARTED, "p", attempt=1))
            writer.record(event(EventKind.RETRYING, "p", at=at(1), attempt=1, retry_at=at(5)))
            assert isinstance(writer, CancelRequestStore)
            assert isinstance(reader, CancelRequestStore)
            assert reader.request_cancel("p") is True
            assert writer.cancel_requested("p") is True
            assert kinds(reader.history("p")) == [
                ("started", 1),
                ("retrying", 1),
                ("cancel_requested", 1),
            ]
            assert known(reader, "p").retry_at == at(5)
        finally:
            writer.close()
            reader.close()


def _progress() -> Progress:
    return Progress(current=1, total=2)
