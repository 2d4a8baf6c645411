from __future__ import annotations

from datetime import timedelta

import pytest

from immortus.status import State
from immortus.stores.base import DEFAULT_TTL
from immortus.stores.memory import MemoryStore
from immortus.transitions import EventKind
from tests.stores.contract import OpenStore, StoreContract, event
from tests.stores.contract_counts import CountsContract
from tests.stores.contract_groups import GroupsContract
from tests.stores.contract_history import HistoryContract


class TestMemoryStore(StoreContract, HistoryContract, CountsContract, GroupsContract):
    @pytest.fixture
    def open_store(self) -> OpenStore:
        def open_store(*, ttl: float | timedelta | None = DEFAULT_TTL) -> MemoryStore:
            return MemoryStore(ttl=ttl)

        return open_store


def test_get_nowait_declines_while_a_writer_holds_the_lock() -> None:
    store = MemoryStore()
    store.record(event(EventKind.STARTED, "a"))
    # the test holds the lock just as a writer in another thread would
    with store._lock, pytest.raises(BlockingIOError):
        store.get_nowait("a")
    status = store.get_nowait("a")
    assert status is not None
    assert status.state is State.STARTED
