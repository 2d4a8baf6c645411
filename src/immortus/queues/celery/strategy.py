"""``CeleryStrategy``: immortus's store, corrected by what Celery's result backend keeps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from celery import Celery, states  # type: ignore[import-untyped]
from celery.backends.base import (  # type: ignore[import-untyped]
    BaseKeyValueStoreBackend,
    DisabledBackend,
)
from kombu.exceptions import OperationalError

from immortus.exceptions import InvalidProgress, StoreUnavailable
from immortus.queues.celery.errors import WORKER_LOST, error_of
from immortus.queues.celery.hooks import the_app
from immortus.queues.native import QueueStrategy
from immortus.status import JobStatus, Progress, State
from immortus.stores.base import Store

__all__ = ["STATES", "CeleryStrategy"]

#: Celery's states and ours. PENDING, REJECTED and IGNORED are absent: the backend stores
#: nothing for them (PENDING is also what it says of an id it never saw), so they tell nothing.
STATES: Final[Mapping[str, State]] = {
    states.RECEIVED: State.CREATED,
    states.STARTED: State.STARTED,
    states.RETRY: State.RETRYING,
    states.SUCCESS: State.FINISHED,
    states.FAILURE: State.FAILED,
    states.REVOKED: State.CANCELLED,
}
#: States that carry no answer; any other state a task sets itself (``update_state``) is
#: ``started``: only a running task can set one.
_SILENT: Final = frozenset({states.PENDING, states.REJECTED, states.IGNORED})


class CeleryStrategy(QueueStrategy):
    """The store's record of a job, corrected by what Celery's result backend keeps.

    ``app`` defaults to the one installed last (:func:`install`), else Celery's current app.
    With a key-value backend (Redis, Memcached...) :meth:`native_status_many` reads every job in
    one ``mget``. A backend that says PENDING tells nothing (Celery says it of ids it never
    saw), so the answer is then the store's: ``created`` if immortus saw the enqueue, else
    ``unknown``.
    """

    def __init__(self, app: Celery | None = None, store: Store | None = None) -> None:
        super().__init__(store)
        self._app = app

    @property
    def app(self) -> Celery:
        """The Celery app whose result backend is read."""
        return the_app(self._app)

    def native_status(self, job_id: str) -> JobStatus | None:
        """Return what the result backend keeps about the job, or ``None`` if nothing.

        Raises:
            StoreUnavailable: the result backend cannot be reached.
        """
        return self.native_status_many([job_id]).get(job_id)

    def native_status_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Return the backend's statuses of the jobs it knows, in one round trip when it can.

        Raises:
            StoreUnavailable: the result backend cannot be reached.
        """
        backend = self.app.backend
        if isinstance(backend, DisabledBackend):
            return {}
        ids = list(dict.fromkeys(job_ids))
        errors = (OSError, OperationalError, *getattr(backend, "connection_errors", ()))
        try:
            metas = _read(backend, ids)
        except errors as exc:
            raise StoreUnavailable(
                f"Celery's result backend cannot be reached: {type(exc).__name__}"
            ) from exc
        found = {job_id: _status(job_id, meta) for job_id, meta in zip(ids, metas, strict=True)}
        return {job_id: status for job_id, status in found.items() if status is not None}


def _read(backend: Any, job_ids: list[str]) -> list[Mapping[str, Any] | None]:
    """Return each job's stored meta, undecoded exceptions kept as the dicts they are stored as."""
    if isinstance(backend, BaseKeyValueStoreBackend):
        if len(job_ids) == 1:  # a verify request's: a GET costs less than an MGET of one key
            raw = backend.get(backend.get_key_for_task(job_ids[0]))
            return [backend.decode(raw) if raw else None]
        try:
            raws = backend.mget([backend.get_key_for_task(job_id) for job_id in job_ids])
        except NotImplementedError:  # a key-value backend without get_many
            raws = [backend.get(backend.get_key_for_task(job_id)) for job_id in job_ids]
        if isinstance(raws, Mapping):
            raws = [raws.get(backend.get_key_for_task(job_id)) for job_id in job_ids]
        return [backend.decode(raw) if raw else None for raw in raws]
    return [backend.get_task_meta(job_id) for job_id in job_ids]


def _status(job_id: str, meta: Mapping[str, Any] | None) -> JobStatus | None:
    """Translate one stored meta into a status (the docs' state mapping table)."""
    if not isinstance(meta, Mapping):
        return None
    celery_state = meta.get("status")
    if not isinstance(celery_state, str) or celery_state in _SILENT:
        return None
    state = STATES.get(celery_state, State.STARTED)
    result = meta.get("result")
    retries = meta.get("retries")  # stored with result_extended=True
    name = meta.get("name")
    error = error_of(result) if state in (State.FAILED, State.RETRYING) else None
    if state is State.FAILED and error is not None and error.type == WORKER_LOST:
        state = State.LOST  # the pool child running it died
    return JobStatus(
        job_id=job_id,
        job_class=name if isinstance(name, str) else None,
        state=state,
        progress=_progress(result) if celery_state not in STATES else None,
        error=error,
        attempts=retries + 1 if isinstance(retries, int) and retries >= 0 else 1,
        finished_at=_when(meta.get("date_done")) if state.completed else None,
    )


def _progress(result: object) -> Progress | None:
    """Read ``{"current": n, "total": m}`` as a task's custom state meta (celery-progress's)."""
    if not isinstance(result, Mapping) or "current" not in result:
        return None
    try:
        return Progress(current=result["current"], total=result.get("total"), allow_overshoot=True)
    except InvalidProgress:
        return None


def _when(value: object) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
