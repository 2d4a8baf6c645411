"""The store strategy: every lifecycle callback is persisted as an event in a store.

It works for every queue, adds progress, meta and errors where a queue keeps none, and tells
"never heard of" (``unknown``) from "waiting" (``created``): what immortus infers for jobs whose
queue keeps no state of its own, and for jobs immortus runs itself.

Every lifecycle event reaches :meth:`StoreStrategy.on_event` and is written with
:meth:`Store.record`; while the store cannot be reached it waits in the store's outbox and is
written, in order, when the store is back (:mod:`immortus.outbox`).

It cancels cooperatively (:meth:`StoreStrategy.cancel`): it records a cancel request that the
running job sees at its next :func:`immortus.progress`; see :mod:`immortus.cancel_requests`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from immortus import cancel_requests, config, outbox
from immortus.exceptions import ConfigurationError
from immortus.status import HistoryEntry, JobStatus
from immortus.stores.base import Store
from immortus.strategy import ChangeSource, TrackingStrategy
from immortus.transitions import Event

__all__ = ["StoreStrategy"]


class StoreStrategy(TrackingStrategy):
    """Tracks jobs by recording their lifecycle in a :class:`~immortus.stores.base.Store`.

    With no ``store`` it uses the configured one (:func:`immortus.configure`), looked up at each
    call so that re-configuring takes effect at once. Every method that reaches the store may
    raise :class:`~immortus.exceptions.ConfigurationError` (no store given and store tracking
    disabled) and :class:`~immortus.exceptions.StoreUnavailable`; each says what else it raises.
    """

    certain: ClassVar[bool] = True
    supports_progress: ClassVar[bool] = True
    supports_cancel: ClassVar[bool] = True

    def __init__(self, store: Store | None = None) -> None:
        self._store = store

    @property
    def store(self) -> Store:
        """The store written to."""
        store = self._store if self._store is not None else config.get_store()
        if store is None:
            raise ConfigurationError(
                "the store strategy needs a store, but store tracking is disabled (store=None)"
            )
        return store

    def status(self, job_id: str) -> JobStatus:
        """Return the recorded status, or ``unknown`` when the store has no record."""
        return self.store.get(job_id) or JobStatus.unknown(job_id)

    def history(self, job_id: str) -> tuple[HistoryEntry, ...]:
        """Return the job's history from the store, oldest first; empty if it keeps none.

        Raises:
            CorruptRecord: the stored history cannot be decoded.
        """
        store = self.store
        return store.history(job_id) if store.keeps_history else ()

    def status_nowait(self, job_id: str) -> JobStatus:
        """Return the recorded status if the store can read it without waiting.

        Raises:
            BlockingIOError: the store's reads may wait (see :meth:`Store.get_nowait`), or a
                subclass adds :meth:`meta`, which may.
        """
        if type(self).meta is not TrackingStrategy.meta:
            raise BlockingIOError(f"{type(self).__qualname__}.meta() may wait")
        return self.store.get_nowait(job_id) or JobStatus.unknown(job_id)

    def status_many(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Return the recorded statuses with one :meth:`Store.get_many` (one round trip).

        Ids the store has no record of are ``unknown``.
        """
        found = self.store.get_many(job_ids)
        return {job_id: found.get(job_id) or JobStatus.unknown(job_id) for job_id in job_ids}

    def changes(self) -> ChangeSource | None:
        """Return the store's change source (:meth:`Store.change_source`).

        Only for exactly this class, whose answer is the record and nothing else: a subclass
        (a queue's strategy, which also asks the queue) answers ``None`` unless it overrides
        this to return :meth:`record_changes`.
        """
        return self.record_changes() if type(self) is StoreStrategy else None

    def record_changes(self) -> ChangeSource:
        """Return the store's change source, whatever the class (what a subclass opts in with)."""
        return self.store.change_source()

    def beat(self, job_ids: Sequence[str], alive_until: datetime) -> int:
        """Extend the heartbeat lease of the running jobs among ``job_ids``; see ``Store.beat``.

        Called by the worker process's heartbeat (:mod:`immortus.heartbeat`), once per interval
        with every job of this strategy's store that the process runs.

        Raises:
            NotImplementedError: the store keeps no leases (``Store.supports_heartbeat``).
        """
        return self.store.beat(job_ids, alive_until)

    def cancel(self, job_id: str) -> None:
        """Request the job's cancellation; it stops when it next looks (cooperative).

        The request is recorded in this process, where every job sees it at once, and, when
        the store can carry it (:class:`~immortus.cancel_requests.CancelRequestStore`), in the
        store for a job running in another process. It does not wait for the job to stop.
        """
        store = self.store
        if isinstance(store, cancel_requests.CancelRequestStore):
            store.request_cancel(job_id)
        cancel_requests.request(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        """Tell whether the job's cancellation was requested, here or (if it can say) in the store.

        Called in the worker by the running job (:attr:`immortus.JobContext.cancel_requested`),
        at most once per :data:`~immortus.cancel_requests.POLL_INTERVAL`. A request found in the
        store is remembered in this process.
        """
        if cancel_requests.is_requested(job_id):
            return True
        store = self.store
        if isinstance(store, cancel_requests.CancelRequestStore) and store.cancel_requested(job_id):
            cancel_requests.request(job_id)
            return True
        return False

    def on_event(self, event: Event) -> None:
        """Write ``event``; while the store is away it waits in the store's outbox.

        ``StoreUnavailable`` reaches the caller only with the outbox off (``outbox_limit=0``).
        """
        outbox.record(self.store, event)
