from __future__ import annotations

from datetime import timedelta

import pytest

from immortus.stores.base import DEFAULT_TTL
from immortus.stores.memory import MemoryStore
from tests.stores.contract import OpenStore, StoreContract


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def open_store(self) -> OpenStore:
        def open_store(*, ttl: float | timedelta | None = DEFAULT_TTL) -> MemoryStore:
            return MemoryStore(ttl=ttl)

        return open_store
