"""A package that is not immortus, offering a store and a queue strategy through entry points.

Installed for the tests by putting ``tests/plugins/site`` on ``sys.path``: its
``immortus_thirdparty-0.1.dist-info/entry_points.txt`` is what ``pip install`` would write.
"""

from __future__ import annotations

from datetime import timedelta

from immortus import JobStatus, State
from immortus.stores.base import DEFAULT_TTL
from immortus.stores.memory import MemoryStore

__all__ = ["LedgerStore", "LedgerStrategy"]

#: Every ledger opened, by the name in its URL (``ledger://NAME``), so tests can inspect it.
LEDGERS: dict[str, LedgerStore] = {}


class LedgerStore(MemoryStore):
    """A third-party store: a memory store reached through ``ledger://NAME`` URLs."""

    @classmethod
    def from_url(cls, url: str, *, ttl: float | timedelta | None = DEFAULT_TTL) -> LedgerStore:
        name = url.partition("://")[2]
        return LEDGERS.setdefault(name, cls(ttl=ttl))


class LedgerStrategy:
    """A third-party queue's strategy: jobs whose id ends in ``-done`` have finished."""

    def status(self, job_id: str) -> JobStatus:
        state = State.FINISHED if job_id.endswith("-done") else State.STARTED
        return JobStatus(job_id=job_id, state=state)
