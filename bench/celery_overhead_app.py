"""The Celery app of ``bench/tracking_overhead.py``'s Celery section: two no-op tasks.

The benchmark enqueues from its own process (importing this module) and drains the queue with
``celery -A bench.celery_overhead_app worker``, which imports it too. The environment tells the
worker what to do:

- ``IMMORTUS_BENCH_CELERY_URL``: the Redis database, broker and result backend;
- ``IMMORTUS_BENCH_CELERY_TRACKED``: ``1`` installs immortus's hooks (the tracked run);
- ``IMMORTUS_BENCH_CELERY_JOBS``: how many tasks the worker will run;
- ``IMMORTUS_BENCH_CELERY_OUT``: a path prefix for the worker's reports: ``.timing.json`` (the
  seconds and CPU seconds from the first task's start to the last task's end, written by the last
  task) and ``.calls.json`` (the calls immortus's store received, written at worker shutdown);
- ``IMMORTUS_STORE``: immortus's store, read by immortus itself.

The clock is read inside the tasks, by both kinds alike, so worker start-up is not timed and the
untracked worker carries no signal receiver of the benchmark's own.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from celery import Celery, signals  # type: ignore[import-untyped]

import immortus
import immortus.queues.celery
from immortus.stores.base import Store

#: The queue both kinds of task go to (so a stray ``celery`` queue is never drained).
QUEUE: Final = "immortus-bench"
#: What the store calls are counted by (one call, one round trip to the SQLite file).
COUNTED: Final = ("record", "get", "get_many", "get_nowait")

app = Celery("bench.celery_overhead_app", set_as_current=False)
app.conf.update(
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"polling_interval": 0.2},  # a worker stops within 0.2 s
    worker_hijack_root_logger=False,
)


def configure(url: str) -> None:
    """Point the app at the Redis database ``url`` (broker and result backend)."""
    app.conf.update(broker_url=url, result_backend=url)


class _Clock:
    """The worker's clock: when the first task started and the last one ended."""

    def __init__(self, jobs: int, out: str | None) -> None:
        self.jobs, self.out = jobs, out
        self.count = 0
        self.first = (0.0, 0.0)

    def tick(self) -> None:
        """Count a task; at the first, read the clocks; at the last, read them and report."""
        self.count += 1
        if self.count == 1:
            self.first = (time.perf_counter(), time.process_time())
        if self.count == self.jobs:
            seconds, cpu = time.perf_counter() - self.first[0], time.process_time() - self.first[1]
            _write(self.out, "timing", {"jobs": self.count, "seconds": seconds, "cpu": cpu})


def _write(out: str | None, kind: str, report: dict[str, Any]) -> None:
    if out:
        path = Path(f"{out}.{kind}.json")
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(report))
        partial.replace(path)  # the benchmark never reads half a file


_clock = _Clock(
    int(os.environ.get("IMMORTUS_BENCH_CELERY_JOBS") or 0),
    os.environ.get("IMMORTUS_BENCH_CELERY_OUT"),
)


@app.task  # type: ignore[untyped-decorator]
def untracked_noop() -> None:
    """A task that does nothing (but count itself): no immortus anywhere near it."""
    _clock.tick()


@app.task  # type: ignore[untyped-decorator]
@immortus.track(queue="celery")
def tracked_noop() -> None:
    """The same task, opted in to tracking."""
    _clock.tick()


def count_calls(store: Store, calls: Counter[str]) -> None:
    """Make ``store`` count every call it receives in ``calls``, by method name.

    The store is the one immortus opened from ``IMMORTUS_STORE`` (a subclass would need
    ``configure(store=...)``, which takes another path to it), so its methods are wrapped.
    """
    for name in COUNTED:
        setattr(store, name, _counted(getattr(store, name), name, calls))


def _counted(method: Callable[..., Any], name: str, calls: Counter[str]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return method(*args, **kwargs)

    return counted


if "IMMORTUS_BENCH_CELERY_URL" in os.environ:  # the worker
    configure(os.environ["IMMORTUS_BENCH_CELERY_URL"])
    if os.environ.get("IMMORTUS_BENCH_CELERY_TRACKED") == "1":
        immortus.queues.celery.install(app)
        _store = immortus.get_store()
        _calls: Counter[str] = Counter()
        if _store is not None:
            count_calls(_store, _calls)

        @signals.worker_shutdown.connect(weak=False)  # type: ignore[untyped-decorator]
        def _report_calls(**_: Any) -> None:
            _write(_clock.out, "calls", dict(_calls))
