"""The processes of the PostgreSQL many-writers test: workers and a janitor.

Each **worker** runs four jobs of its own, one of each :data:`KINDS`, through the job API
(``immortus.running``, ``immortus.progress`` at every step, ``immortus.update_meta``), with its
heartbeat beating every :data:`BEAT_INTERVAL`. Between two steps it meddles with the jobs of the
next worker (:class:`Meddler`), as a second process writing the same rows would: it enqueues
them (racing their owner's ``started``), adds meta keys of its own, beats their leases, and
sends stale events of an attempt that is over and late duplicate endings. The **janitor**
reaps lost jobs and prunes expired records in a loop, and writes throwaway records that expire
at once, so that the prune has something to delete.

Every event the meddler sends is ignored or merges by the ordering rules, whatever the order in
which the rows' locks are granted, so each job's final record is known in advance
(:func:`expected_progress`). Each process writes a JSON report of what it saw.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import immortus
from immortus import lifecycle, outbox
from immortus.status import JobStatus, Progress
from immortus.stores.sql import SQLStore
from immortus.transitions import Event, EventKind, utcnow

#: The jobs each worker owns, by what happens to them:
#: ``plain``: one attempt that finishes; its meta gets keys from two processes.
#: ``retried``: attempt 1 fails and is retried; attempt 2 finishes while the neighbour sends
#: stale attempt-1 events. ``failed``: fails for good; the neighbour sends late endings.
#: ``revived``: started with a short lease that lapses (the janitor may reap it ``lost``), then
#: the worker comes back to it and finishes it, still attempt 1.
KINDS: Final = ("plain", "retried", "failed", "revived")
#: Progress steps of a job's last attempt.
STEPS: Final = 10
#: The step at which the ``failed`` job raises.
FAIL_AT: Final = 6
#: Progress steps of the ``retried`` job's first attempt.
FIRST_ATTEMPT_STEPS: Final = 3
#: The owner adds a meta key every this many steps of its ``plain`` job.
META_EVERY: Final = 5
#: Seconds between two heartbeats of a worker; leases last :data:`LEASE`.
BEAT_INTERVAL: Final = 2.0
LEASE: Final = 60.0
#: Seconds the ``revived`` job's first lease lasts.
SHORT_LEASE: Final = 0.3
#: Seconds the janitor's throwaway records live.
THROWAWAY_TTL: Final = 0.5
#: Generous: the machine may be loaded.
TIMEOUT: Final = 120.0


def job_id(worker: int, kind: str) -> str:
    """The id of ``worker``'s job of ``kind``."""
    return f"w{worker}-{kind}"


def expected_progress(kind: str) -> Progress:
    """The progress the attempt that owns a job of ``kind`` wrote last."""
    step = FAIL_AT if kind == "failed" else STEPS
    attempt = 2 if kind == "retried" else 1
    return Progress(current=step, total=STEPS, message=f"a{attempt} step {step}")


def owner_meta() -> dict[str, int]:
    """The meta keys a worker adds to its own ``plain`` job."""
    return {f"owner_{step}": step for step in range(META_EVERY, STEPS + 1, META_EVERY)}


class _Kept(logging.Handler):
    """Keeps every WARNING or worse that immortus logs in this process."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.levelname} {record.getMessage()}")


class Meddler:
    """Writes to the jobs of another worker, one round at a time, as a second process would."""

    def __init__(self, worker: int, neighbour: int) -> None:
        self.worker = worker
        self.ids = {kind: job_id(neighbour, kind) for kind in KINDS}
        self.meta_sent: list[str] = []
        self.rounds = 0
        self.done = False
        store = immortus.get_store()
        assert store is not None
        self.store = store
        for ident in self.ids.values():  # as the web process would, racing the worker's start
            lifecycle.job_enqueued(ident)

    def round(self) -> None:
        """Read the neighbour's jobs and write one batch of events to them."""
        if self.done:
            return
        self.rounds += 1
        found = self.store.get_many(list(self.ids.values()))
        key = f"n{self.worker}_{self.rounds}"
        lifecycle.job_meta(self.ids["plain"], {key: self.rounds})
        self.meta_sent.append(key)
        retried = found.get(self.ids["retried"])
        if retried is not None and retried.attempts >= 2:  # attempt 1 is over: this is stale
            self._stale(self.ids["retried"])
        failed = found.get(self.ids["failed"])
        if failed is not None and failed.state.completed:  # a late duplicate of the ending
            self._late(self.ids["failed"])
        if self.rounds % 4 == 0:
            running = [self.ids[kind] for kind in ("plain", "retried", "failed")]
            self.store.beat(running, utcnow() + timedelta(seconds=LEASE))
        self.done = len(found) == len(KINDS) and all(_ended(status) for status in found.values())

    def _stale(self, ident: str) -> None:
        """Send one event of attempt 1, over: progress, retrying or finished in turn."""
        turn = self.rounds % 3
        if turn == 0:
            stale = Progress(current=1, total=1, message="stale")
            lifecycle.job_progress(ident, stale, attempt=1)
        elif turn == 1:
            lifecycle.job_retrying(ident, RuntimeError("stale"), attempt=1)
        else:
            lifecycle.job_finished(ident, attempt=1)

    def _late(self, ident: str) -> None:
        """Send one ending after the job ended: finished or cancelled in turn."""
        if self.rounds % 2:
            lifecycle.job_finished(ident, attempt=1)
        else:
            lifecycle.job_cancelled(ident)


def _ended(status: JobStatus) -> bool:
    return status.state.completed and status.state is not immortus.State.LOST


def _run_steps(meddler: Meddler, attempt: int, last: int) -> None:
    for step in range(1, last + 1):
        immortus.progress(step, STEPS, f"a{attempt} step {step}")
        meddler.round()


def _own_jobs(worker: int, meddler: Meddler) -> None:
    """Run the worker's four jobs, meddling with the neighbour's between two steps."""
    revived = job_id(worker, "revived")
    lapses_at = time.monotonic() + SHORT_LEASE
    lifecycle.job_started(revived, attempt=1, alive_until=utcnow() + timedelta(seconds=SHORT_LEASE))

    with immortus.running(job_id(worker, "plain"), attempt=1):
        for step in range(1, STEPS + 1):
            immortus.progress(step, STEPS, f"a1 step {step}")
            if step % META_EVERY == 0:
                immortus.update_meta(**{f"owner_{step}": step})
            meddler.round()

    try:
        with immortus.running(job_id(worker, "retried"), attempt=1, final_attempt=False):
            _run_steps(meddler, 1, FIRST_ATTEMPT_STEPS)
            raise RuntimeError("attempt 1 fails")
    except RuntimeError:
        pass
    with immortus.running(job_id(worker, "retried"), attempt=2):
        _run_steps(meddler, 2, STEPS)

    try:
        with immortus.running(job_id(worker, "failed"), attempt=1):
            _run_steps(meddler, 1, FAIL_AT)
            raise ValueError("fails for good")
    except ValueError:
        pass

    while time.monotonic() < lapses_at + SHORT_LEASE:  # let the janitor see it lapsed
        meddler.round()
        time.sleep(0.01)
    with immortus.running(revived, attempt=1):
        _run_steps(meddler, 1, STEPS)


def work(url: str, worker: int, workers: int, go: Any, report: str) -> None:
    """In a spawned process: run worker ``worker``'s jobs; write what happened to ``report``."""
    kept = _Kept()
    logging.getLogger("immortus").addHandler(kept)
    immortus.configure(
        store=url, progress_interval=0, heartbeat_interval=BEAT_INTERVAL, heartbeat_timeout=LEASE
    )
    raised: list[str] = []
    assert go.wait(TIMEOUT)
    started = time.monotonic()
    meddler = Meddler(worker, (worker + 1) % workers)
    try:
        _own_jobs(worker, meddler)
        deadline = time.monotonic() + TIMEOUT
        while not meddler.done and time.monotonic() < deadline:
            meddler.round()
            time.sleep(0.05)
    except Exception as exc:  # noqa: BLE001 - what the test checks is that none comes
        raised.append(repr(exc))
    seconds = time.monotonic() - started
    flushed = outbox.flush(TIMEOUT)
    stats = outbox.stats()
    figures = {
        "raised": raised,
        "flushed": flushed,
        "meddled": meddler.done,
        "meta_sent": meddler.meta_sent,
        "rounds": meddler.rounds,
        "seconds": seconds,
        "stats": {
            "buffered": stats.buffered,
            "dropped": stats.dropped,
            "replayed": stats.replayed,
            "outages": stats.outages,
        },
        "logged": kept.records,
    }
    Path(report).write_text(json.dumps(figures), encoding="utf-8")


def janitor(url: str, go: Any, stop: Any, report: str) -> None:
    """In a spawned process: reap and prune until ``stop``; write the counts to ``report``."""
    kept = _Kept()
    logging.getLogger("immortus").addHandler(kept)
    keeper = SQLStore(url)  # reaps with the workers' retention
    throwaway = SQLStore(url, ttl=THROWAWAY_TTL)
    reaped = pruned = written = 0
    raised: list[str] = []
    assert go.wait(TIMEOUT)
    try:
        while not stop.is_set():
            reaped += keeper.reap_lost()
            throwaway.record(Event(kind=EventKind.ENQUEUED, job_id=f"throwaway-{written}"))
            written += 1
            pruned += throwaway.prune()
            time.sleep(0.1)
        time.sleep(THROWAWAY_TTL * 1.1)  # past the expiry of the last one, rounding included
        pruned += throwaway.prune()
    except Exception as exc:  # noqa: BLE001 - what the test checks is that none comes
        raised.append(repr(exc))
    keeper.close()
    throwaway.close()
    figures = {
        "raised": raised,
        "reaped": reaped,
        "pruned": pruned,
        "written": written,
        "logged": kept.records,
    }
    Path(report).write_text(json.dumps(figures), encoding="utf-8")
