from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from immortus.exceptions import InvalidInput
from immortus.stores.base import Cursor, Store
from immortus.stores.memory import MemoryStore
from immortus.stores.redis import RedisStore
from immortus.stores.sql import SQLStore
from immortus.stores.sqlite import SQLiteStore
from immortus.transitions import Event, EventKind


@given(
    now=st.floats(min_value=0, max_value=4e9),
    ttl=st.floats(min_value=0.001, max_value=1e8),
)
def test_expiry_is_never_early_and_at_most_one_percent_late(now: float, ttl: float) -> None:
    expires = MemoryStore(ttl=ttl).expires_at(now)
    assert expires is not None
    assert now + ttl <= expires * (1 + 1e-12)
    assert expires <= now + ttl * 1.01 + 1e-6


def test_events_within_one_step_share_one_expiry() -> None:
    store = MemoryStore(ttl=100)  # steps of one second
    assert store.expires_at(1000.1) == store.expires_at(1000.9) == 1101.0
    assert store.expires_at(1001.1) == 1102.0
    assert MemoryStore(ttl=None).expires_at(1000.0) is None


@given(created=st.floats(min_value=0, max_value=4e9), job_id=st.text(min_size=1, max_size=40))
def test_cursor_round_trips(created: float, job_id: str) -> None:
    if not job_id.isprintable() or job_id != job_id.strip():
        return
    assert Cursor.decode(Cursor(created, job_id).encode()) == Cursor(created, job_id)


@pytest.mark.parametrize("payload", [b"1.0\n\x00bad", b"1.0\n", b"nan-ish\nok", b"1.0"])
def test_forged_cursors_are_refused(payload: bytes) -> None:
    with pytest.raises(InvalidInput, match="malformed page cursor"):
        Cursor.decode(base64.urlsafe_b64encode(payload).decode())


class _Minimal(MemoryStore):
    """A third-party store as the contract allows it: no heartbeat support declared."""

    supports_heartbeat: ClassVar[bool] = False
    beat = Store.beat
    reap_lost = Store.reap_lost


def test_a_store_without_heartbeats_says_so_and_has_nothing_to_reap() -> None:
    store = _Minimal()
    store.record(Event(kind=EventKind.STARTED, job_id="j", alive_until=datetime.now(UTC)))
    with pytest.raises(NotImplementedError, match="supports_heartbeat is False"):
        store.beat(["j"], datetime.now(UTC))
    assert store.reap_lost() == 0


def test_every_built_in_store_keeps_leases() -> None:
    for store_class in (MemoryStore, SQLiteStore, SQLStore, RedisStore):
        assert store_class.supports_heartbeat, store_class  # the contract's lease tests run
