"""A store that raises on every call: the fault the Dramatiq hooks must survive."""

from __future__ import annotations

from collections.abc import Sequence

from immortus.status import JobStatus
from immortus.stores.memory import MemoryStore
from immortus.transitions import Event


class ExplodingStore(MemoryStore):
    """Every read and write raises ``RuntimeError``, as a broken store driver might."""

    def record(self, event: Event) -> JobStatus | None:
        raise RuntimeError(f"store exploded on {event.kind}")

    def get(self, job_id: str) -> JobStatus | None:
        raise RuntimeError("store exploded on get")

    def get_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        raise RuntimeError("store exploded on get_many")
