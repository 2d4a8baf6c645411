"""Reading a group's aggregate vs Celery's ``GroupResult.completed_count()``, on one Redis.

A private redis-server (:mod:`devservices`) holds both sides, in two databases:

- **immortus**: a group of N jobs recorded through the Redis store's own writes (each job
  ``enqueued`` in the group, then most ``finished``, some ``failed``, the rest ``started``),
  read with ``store.group(group_id)``: one ``HGETALL`` of the group's hash, whatever N.
- **celery**: the N children's results stored with the Celery Redis backend's
  ``store_result`` (the same finished / failed / still-running split; no worker needed) and the
  group saved with ``GroupResult.save()``, read as a web request reads it:
  ``GroupResult.restore(group_id).completed_count()``, which asks the backend once per child.
  Celery's result cache is left at its default (off), so every read asks Redis.

The reads are interleaved (one Celery read, then a turn of immortus reads, the order reversed
each round), so a noisy neighbour slows both alike. The table gives each side's median and p99
per read and the ratio of the medians.

Run ``python -m bench.stores.groups [--quick | --full]`` from the repository root. The figures
go to stdout and ``bench/results/latest.json`` (section ``group_read``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from bench.common import BenchError, add_modes, log, table
from bench.results import save
from bench.stores.measure import percentile
from immortus.grouping import GroupStatus
from immortus.status import JobError, State
from immortus.transitions import Event, EventKind

if TYPE_CHECKING:
    from immortus.stores.redis import RedisStore

#: (group sizes, Celery reads per size, immortus reads per Celery read) in each mode.
QUICK: Final = ((10_000,), 5, 40)
FULL: Final = ((10_000, 100_000), 15, 100)
#: One job in this many fails, one in this many is still running; the rest finished.
FAILING_EVERY: Final = 50
RUNNING_EVERY: Final = 20


def _split(size: int) -> tuple[list[int], list[int], list[int]]:
    """The member indexes that finished, failed and still run."""
    failed = [i for i in range(size) if i % FAILING_EVERY == 1]
    running = [i for i in range(size) if i % RUNNING_EVERY == 2]
    finished = [i for i in range(size) if i % FAILING_EVERY != 1 and i % RUNNING_EVERY != 2]
    return finished, failed, running


def seed_immortus(url: str, size: int) -> tuple[RedisStore, str]:
    """Record a group of ``size`` jobs in a Redis store at ``url``; return the store and id."""
    from immortus.stores.redis import RedisStore

    store = RedisStore(url, ttl=None)
    group_id = f"bench-{size}"
    finished, failed, _ = _split(size)
    ending = dict.fromkeys(finished, EventKind.FINISHED) | dict.fromkeys(failed, EventKind.FAILED)
    error = JobError(type="ValueError", message="row 7 is empty")
    for i in range(size):
        job_id = f"job-{size}-{i}"
        store.record(Event(kind=EventKind.ENQUEUED, job_id=job_id, group_id=group_id))
        store.record(Event(kind=EventKind.STARTED, job_id=job_id))
        kind = ending.get(i)
        if kind is not None:
            store.record(Event(kind=kind, job_id=job_id, error=error))
        if i % 2000 == 1999:
            log(f"  immortus: {i + 1:,} of {size:,} jobs recorded")
    return store, group_id


def seed_celery(url: str, size: int) -> tuple[Any, str]:
    """Store ``size`` children's results and their group with Celery's Redis backend."""
    from celery import Celery  # type: ignore[import-untyped]
    from celery.result import AsyncResult, GroupResult  # type: ignore[import-untyped]

    app = Celery("bench_groups", broker="memory://", backend=url)
    backend = app.backend
    finished, failed, _ = _split(size)
    for i in finished:
        backend.store_result(f"task-{size}-{i}", {"rows": i}, "SUCCESS")
    for i in failed:
        backend.store_result(f"task-{size}-{i}", ValueError("row 7 is empty"), "FAILURE")
    # The running ones have no result yet: Celery reads them PENDING (or STARTED if tracked).
    children = [AsyncResult(f"task-{size}-{i}", app=app) for i in range(size)]
    group_id = f"bench-{size}"
    GroupResult(group_id, children, app=app).save()
    return app, group_id


def _release(app: Any) -> None:
    """Let Celery stop waiting on the unfinished children each restored group subscribed to.

    A restored group keeps every unfinished child's result object, subscribed to its result
    channel, until it is ready; released here, while the backend can still unsubscribe.
    """
    gc.collect()
    concrete = app.backend._pending_results[0]  # Celery keeps no public handle on them
    for waiters in list(concrete.values()):
        for result in list(waiters.values()):
            app.backend.remove_pending_result(result)
    gc.collect()


def measure(
    read_ours: Callable[[], GroupStatus],
    read_celery: Callable[[], int],
    *,
    celery_reads: int,
    ours_per_turn: int,
) -> dict[str, list[int]]:
    """Interleave the reads; return each side's durations in nanoseconds."""
    clock = time.perf_counter_ns
    durations: dict[str, list[int]] = {"immortus": [], "celery": []}

    def ours() -> None:
        for _ in range(ours_per_turn):
            start = clock()
            read_ours()
            durations["immortus"].append(clock() - start)

    def celery() -> None:
        start = clock()
        read_celery()
        durations["celery"].append(clock() - start)

    for turn in range(celery_reads):
        for step in (ours, celery) if turn % 2 == 0 else (celery, ours):
            step()
    return durations


def _check(answer: GroupStatus, size: int, completed: int) -> None:
    finished, failed, running = _split(size)
    expected = {State.FINISHED: len(finished), State.FAILED: len(failed)}
    expected[State.STARTED] = len(running)
    if answer.total != size or dict(answer.jobs) != expected:
        raise BenchError(f"the group read {answer.jobs} ({answer.total}), not {expected}")
    if completed != len(finished):
        raise BenchError(f"Celery counted {completed} successful children, not {len(finished)}")


def measure_size(
    url_ours: str, url_celery: str, size: int, mode: tuple[Any, ...]
) -> dict[str, Any]:
    """Seed one group of ``size`` on both sides, check both answers, time the reads."""
    from celery.result import GroupResult

    _, celery_reads, ours_per_turn = mode
    log(f"seeding a group of {size:,} jobs in the immortus Redis store")
    store, group_id = seed_immortus(url_ours, size)
    log(f"storing {size:,} child results with Celery's Redis backend")
    app, celery_group = seed_celery(url_celery, size)
    try:

        def read_ours() -> GroupStatus:
            answer = store.group(group_id)
            if answer is None:
                raise BenchError(f"group {group_id} not found")
            return answer

        def read_celery() -> int:
            restored = GroupResult.restore(celery_group, app=app)
            if restored is None:
                raise BenchError(f"Celery group {celery_group} not found")
            return int(restored.completed_count())

        _check(read_ours(), size, read_celery())  # also the warm-up of both
        log(f"timing {celery_reads} Celery reads and {celery_reads * ours_per_turn} of ours")
        durations = measure(
            read_ours, read_celery, celery_reads=celery_reads, ours_per_turn=ours_per_turn
        )
    finally:
        store.close()
        _release(app)
        app.close()
    ours, theirs = durations["immortus"], durations["celery"]
    return {
        "size": size,
        "immortus_p50_us": percentile(ours, 50) / 1e3,
        "immortus_p99_us": percentile(ours, 99) / 1e3,
        "immortus_reads": len(ours),
        "celery_p50_us": percentile(theirs, 50) / 1e3,
        "celery_p99_us": percentile(theirs, 99) / 1e3,
        "celery_reads": len(theirs),
        "ratio_p50": percentile(theirs, 50) / max(percentile(ours, 50), 1),
    }


def render(rows: Sequence[dict[str, Any]], version: str) -> str:
    """The report: per size, both sides' per-read times and the ratio."""
    head = ["group size", "immortus p50", "p99", "celery p50", "p99", "celery / immortus"]
    cells = [
        [
            f"{row['size']:,}",
            f"{row['immortus_p50_us']:,.0f} µs",
            f"{row['immortus_p99_us']:,.0f} µs",
            f"{row['celery_p50_us'] / 1e3:,.1f} ms",
            f"{row['celery_p99_us'] / 1e3:,.1f} ms",
            f"{row['ratio_p50']:,.0f}x",
        ]
        for row in rows
    ]
    return "\n".join(
        [
            f"reading a group's progress, one Redis ({version}), one client thread",
            "immortus: store.group(id), one HGETALL; celery: "
            "GroupResult.restore(id).completed_count(), one GET per child",
            "",
            *table(head, cells),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the report; return 0 (or 1 if it could not be measured)."""
    parser = argparse.ArgumentParser(prog="python -m bench.stores.groups", description=__doc__)
    add_modes(
        parser,
        quick=f"a group of {QUICK[0][0]:,}, {QUICK[1]} Celery reads",
        full=f"groups of {', '.join(f'{size:,}' for size in FULL[0])}, {FULL[1]} Celery reads",
    )
    args = parser.parse_args(argv)
    mode = FULL if args.full else QUICK
    rows: list[dict[str, Any]] = []
    try:
        with contextlib.ExitStack() as stack:
            from devservices import RedisServer

            log("starting a private redis-server")
            server = stack.enter_context(RedisServer())
            base = server.url.rsplit("/", 1)[0]
            for index, size in enumerate(mode[0]):
                ours, theirs = f"{base}/{2 * index}", f"{base}/{2 * index + 1}"
                rows.append(measure_size(ours, theirs, size, mode))
            import redis

            with redis.Redis.from_url(server.url) as client:
                version = str(client.info("server")["redis_version"])
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(render(rows, f"redis {version}"))
    save("group_read", {"sizes": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
