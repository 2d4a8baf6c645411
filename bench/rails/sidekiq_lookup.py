"""Sidekiq lookup: how fast does ``SidekiqStrategy`` find a job among 100 000 queued ones?

Seeds a private redis-server with Sidekiq 6.4's layout: ``--jobs`` queued ActiveJob payloads
(100 000 by default) spread over three queues (60 %, 30 %, 10 %), 1 000 scheduled, 100 retrying,
100 dead, and one live process running 5 jobs. The payloads have the exact shape ActiveJob 6.1's
``sidekiq`` adapter writes (the interop tests check the strategy against real ones).

Then it looks up, ``--repeat`` times each (median and worst, in milliseconds):

- a job in a work hash (busy), a retrying one, the newest and the oldest queued job, an id that
  is nowhere (never seen: the whole walk), and a batch of 20 ids (``status_many``);
- with **naive**: read every structure into Python and decode every payload (what
  ``Sidekiq::Queue#find_job`` does), **naive+filter**: the same with a substring test before
  decoding, and **lua**: the strategy's chunked server-side scan (``--chunks``).

Then ``status()`` of a job that ended (seen queued, then gone), as a page polls it: the first
poll that finds it gone (the whole walk, once), every later poll of the same process (its
remembered verdict), and the first poll of another process (the verdict it shared).

It prints the tables, the ratio naive/lua, and the longest single script call Redis ran (from
``SLOWLOG``): how long Redis was busy at most, per call, for other clients; and it adds the
figures to ``bench/results/latest.json`` (:func:`bench.results.save`).

Run it from the repository root: ``.venv/bin/python -m bench.sidekiq_lookup [--quick | --full]
[--jobs 100000] [--repeat N] [--chunks 1000,5000,20000] [--url redis://...]``: quick (the
default) repeats each look-up 3 times with the strategy's default chunk (1 000) and without
naive+filter; full 7 times, with all three methods and chunks of 1 000, 5 000 and 20 000. The
naive reads are not warmed up (there is nothing to load). ``--url`` uses an existing, EMPTY
database: it is flushed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis

from bench import results
from bench.common import add_modes, log
from immortus.queues.sidekiq import SidekiqStrategy
from immortus.status import State

WRAPPER: Final = "ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper"
QUEUES: Final = (("default", 0.6), ("mail", 0.3), ("low", 0.1))
IDENTITY: Final = "bench-host:4242:0123456789ab"
NOW: Final = 1_800_000_000.0
BATCH: Final = 20


def payload(index: int, queue: str, **extra: Any) -> tuple[str, str, str]:
    """Return (job_id, jid, JSON) of an ActiveJob payload as Sidekiq 6.4 stores it."""
    job_id, jid = str(uuid.uuid4()), uuid.uuid4().hex[:24]
    active_job: dict[str, Any] = {
        "job_class": "ReportJob",
        "job_id": job_id,
        "provider_job_id": None,
        "queue_name": queue,
        "priority": None,
        "arguments": [index, {"customer": f"c-{index}", "_aj_symbol_keys": []}],
        "executions": 0,
        "exception_executions": {},
        "locale": "en",
        "timezone": None,
        "enqueued_at": "2027-01-15T08:00:00Z",
    }
    job = {
        "retry": True,
        "queue": queue,
        "class": WRAPPER,
        "wrapped": "ReportJob",
        "args": [active_job],
        "jid": jid,
        "created_at": NOW + index / 1000,
        "enqueued_at": NOW + index / 1000,
        **extra,
    }
    return job_id, jid, json.dumps(job, separators=(",", ":"))


@dataclass
class Seeded:
    """Ids of the seeded jobs the lookups ask for."""

    busy: str
    retrying: str
    newest: str
    oldest: str
    batch: list[str]


def seed(client: redis.Redis, jobs: int) -> Seeded:
    """Write the layout described in the module docstring; return ids to look up."""
    client.flushdb()
    index = 0
    newest = oldest = ""
    spread: list[str] = []
    for queue, share in QUEUES:
        count = round(jobs * share)
        pipe = client.pipeline(transaction=False)
        for position in range(count):
            job_id, _, text = payload(index, queue)
            index += 1
            pipe.lpush(f"queue:{queue}", text)  # as Sidekiq::Client: newest on the left
            if queue == "default" and position == 0:
                oldest = job_id  # pushed first: the right end, next to run
            if position % max(1, count // 7) == 0:
                spread.append(job_id)
            if len(pipe) >= 5000:
                pipe.execute()
        pipe.sadd("queues", queue)
        pipe.execute()
        if queue == "default":
            newest = job_id
    sets: dict[str, dict[str, float]] = {"schedule": {}, "retry": {}, "dead": {}}
    retrying = ""
    for number in range(1000):
        sets["schedule"][payload(index + number, "default")[2]] = NOW + 3600 + number
    for number in range(100):
        failed = {"error_class": "RuntimeError", "error_message": "boom", "retry_count": 0}
        job_id, _, text = payload(index + 2000 + number, "default", failed_at=NOW, **failed)
        sets["retry"][text] = NOW + 30 + number
        retrying = retrying or job_id
        sets["dead"][payload(index + 3000 + number, "default", **failed)[2]] = NOW - number
    for name, members in sets.items():
        client.zadd(name, members)
    work: dict[str, str] = {}
    busy = ""
    for thread in range(5):
        job_id, _, text = payload(index + 4000 + thread, "default")
        busy = busy or job_id
        work[f"tid-{thread}"] = json.dumps({"queue": "default", "payload": text, "run_at": NOW})
    client.sadd("processes", IDENTITY)
    client.hset(IDENTITY, mapping={"busy": 5, "beat": NOW, "quiet": "false"})
    for thread_id, entry in work.items():
        client.hset(f"{IDENTITY}:workers", thread_id, entry)
    batch = [*spread[: BATCH - 2], busy, retrying]
    return Seeded(busy=busy, retrying=retrying, newest=newest, oldest=oldest, batch=batch)


def _naive_find(client: redis.Redis, wanted: set[str], *, prefilter: bool) -> dict[str, str]:
    """Read every structure, decode every payload, compare ids in Python."""
    found: dict[str, str] = {}

    def consider(text: str, where: str, wrapped: bool = False) -> None:
        if prefilter and not any(job_id in text for job_id in wanted):
            return
        job = json.loads(text)
        if wrapped:
            inner = job["payload"]
            job = json.loads(inner) if isinstance(inner, str) else inner
        ids = {job.get("jid"), job["args"][0].get("job_id")}
        for job_id in wanted & ids:
            found.setdefault(job_id, where)

    identities: set[str] = client.smembers("processes")  # type: ignore[assignment]
    for identity in identities:
        works: list[str] = client.hvals(f"{identity}:workers")  # type: ignore[assignment]
        for text in works:
            consider(text, "busy", wrapped=True)
    for name in ("retry", "dead", "schedule"):
        members: list[str] = client.zrange(name, 0, -1)  # type: ignore[assignment]
        for text in members:
            consider(text, name)
    queues: set[str] = client.smembers("queues")  # type: ignore[assignment]
    for queue in sorted(queues):
        items: list[str] = client.lrange(f"queue:{queue}", 0, -1)  # type: ignore[assignment]
        for text in items:
            consider(text, "queue")
    return found


def first_look(client: redis.Redis, chunk: int, wanted: list[str]) -> object:
    """Look up with a strategy that has never seen the jobs (no hint where they were)."""
    return SidekiqStrategy(client=client, scan_chunk=chunk).find_many(wanted)


def timed(call: Callable[[], object], repeat: int) -> list[float]:
    """Return the durations of ``repeat`` calls, in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


@contextlib.contextmanager
def redis_url(url: str | None) -> Iterator[str]:
    """Yield ``url``, or the URL of a private redis-server stopped at the end."""
    if url:
        yield url
        return
    from devservices import RedisServer

    with RedisServer() as server:
        yield server.url


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table on stdout."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.rails.sidekiq_lookup",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    add_modes(
        parser,
        quick="each look-up 3 times, chunks of 1000, no naive+filter",
        full="each look-up 7 times, naive+filter too, chunks of 1000, 5000 and 20000",
    )
    parser.add_argument("--jobs", type=int, default=100_000, help="queued jobs (100000)")
    parser.add_argument(
        "--repeat", type=int, default=None, help="times each, instead of the mode's"
    )
    parser.add_argument("--chunks", default=None, help="comma-separated, instead of the mode's")
    parser.add_argument("--url", default=None, help="an EMPTY Redis database (flushed)")
    options = parser.parse_args(argv)
    started = time.perf_counter()
    options.repeat = options.repeat or (7 if options.full else 3)
    options.chunks = options.chunks or ("1000,5000,20000" if options.full else "1000")
    chunks = [int(chunk) for chunk in options.chunks.split(",")]
    with redis_url(options.url) as url:
        client = redis.Redis.from_url(url, decode_responses=True)
        log(f"seeding {options.jobs} queued jobs at {url}")
        ids = seed(client, options.jobs)
        absent = str(uuid.uuid4())
        cases: dict[str, list[str]] = {
            "busy (work hash)": [ids.busy],
            "retrying": [ids.retrying],
            "queued, newest": [ids.newest],
            "queued, oldest": [ids.oldest],
            "nowhere (never seen)": [absent],
            f"batch of {BATCH}": ids.batch,
        }
        methods: dict[str, Callable[[list[str]], object]] = {
            "naive": lambda wanted: _naive_find(client, set(wanted), prefilter=False),
        }
        if options.full:
            methods["naive+filter"] = lambda wanted: _naive_find(
                client, set(wanted), prefilter=True
            )
        longest: dict[str, float] = {}
        for chunk in chunks:
            methods[f"lua/{chunk}"] = functools.partial(first_look, client, chunk)
        methods["lua, polled again"] = SidekiqStrategy(client=client).find_many
        check = SidekiqStrategy(url)
        for name, wanted in cases.items():
            found = check.find_many(wanted)
            expected = set(wanted) - {absent}
            if set(found) != expected:
                raise SystemExit(f"{name}: found {sorted(found)}, expected {sorted(expected)}")
        if check.status(absent).state is not State.UNKNOWN:
            raise SystemExit("an id never seen is not reported unknown")
        timings: dict[str, dict[str, list[float]]] = {}
        for method, find in methods.items():
            client.config_set("slowlog-log-slower-than", 0)
            client.slowlog_reset()
            for wanted in cases.values() if method.startswith("lua") else ():
                find(wanted)  # warm up: scripts loaded; "polled again" learns where jobs are
            timings[method] = {
                case: timed(functools.partial(find, wanted), options.repeat)
                for case, wanted in cases.items()
            }
            if method.startswith("lua"):
                entries = client.slowlog_get(10_000)
                scans = [e["duration"] for e in entries if b"EVALSHA" in _command(e)]
                longest[method] = max(scans, default=0) / 1000
            client.config_set("slowlog-log-slower-than", 10_000)
        report(timings, longest, options.jobs, options.repeat)
        ended = ended_polls(client, options.repeat)
    duration_s = time.perf_counter() - started
    body = figures(timings, longest, options.jobs, options.repeat)
    body["ended_status_ms"] = {case: round(statistics.median(t), 3) for case, t in ended.items()}
    path = results.save("sidekiq_lookup", {**body, "duration_s": round(duration_s, 1)})
    log(f"whole run {duration_s:.0f} s; figures written to {path}")
    return 0


def ended_polls(client: redis.Redis, repeat: int) -> dict[str, list[float]]:
    """Time ``status()`` of jobs that were seen queued and then left (as when they finish)."""
    polls: dict[str, list[float]] = {"first poll that finds it gone": [], "polled again": []}
    polls["another process, first poll"] = []
    for _ in range(repeat):
        job_id, _, text = payload(0, "default")
        client.lpush("queue:default", text)
        seer = SidekiqStrategy(client=client, pickup_grace=0)
        if seer.status(job_id).state is not State.CREATED:
            raise SystemExit("a queued job is not reported created")
        client.lrem("queue:default", 1, text)  # what a worker's fetch does; then the job runs
        polls["first poll that finds it gone"] += timed(functools.partial(seer.status, job_id), 1)
        polls["polled again"] += timed(functools.partial(seer.status, job_id), 1)
        other = SidekiqStrategy(client=client)
        polls["another process, first poll"] += timed(functools.partial(other.status, job_id), 1)
        if (seer.status(job_id).state, other.status(job_id).state) != (State.FINISHED,) * 2:
            raise SystemExit("a job seen and then gone is not reported ended")
    print(f"\nstatus() of a job seen queued and then gone, median [worst] of {repeat}, ms\n")
    for case, times in polls.items():
        print(f"{case:<32}{statistics.median(times):9.2f} [{max(times):7.2f}]")
    return polls


def _command(entry: dict[str, Any]) -> bytes:
    command = entry.get("command", b"")
    return command if isinstance(command, bytes) else str(command).encode()


def figures(
    timings: dict[str, dict[str, list[float]]], longest: dict[str, float], jobs: int, repeat: int
) -> dict[str, Any]:
    """Every figure of the run, for ``bench/results/latest.json``."""
    median_ms = {
        method: {case: round(statistics.median(times), 3) for case, times in cases.items()}
        for method, cases in timings.items()
    }
    return {
        "jobs": jobs,
        "repeat": repeat,
        "median_ms": median_ms,
        "worst_ms": {
            method: {case: round(max(times), 3) for case, times in cases.items()}
            for method, cases in timings.items()
        },
        "naive_vs_lua": {
            method: {
                case: round(median_ms["naive"][case] / median_ms[method][case], 2)
                for case in median_ms[method]
            }
            for method in median_ms
            if method.startswith("lua")
        },
        "longest_script_call_ms": {method: round(ms, 3) for method, ms in longest.items()},
    }


def report(
    timings: dict[str, dict[str, list[float]]], longest: dict[str, float], jobs: int, repeat: int
) -> None:
    """Print medians (worst in brackets), then naive / lua ratios."""
    methods = list(timings)
    cases = list(next(iter(timings.values())))
    print(f"\nSidekiq lookup, {jobs} queued jobs, median [worst] of {repeat} runs, ms\n")
    print(f"{'case':<22}" + "".join(f"{method:>20}" for method in methods))
    for case in cases:
        cells = []
        for method in methods:
            times = timings[method][case]
            cells.append(f"{statistics.median(times):9.1f} [{max(times):7.1f}]")
        print(f"{case:<22}" + "".join(f"{cell:>20}" for cell in cells))
    print("\nnaive / lua (median)")
    for method in (m for m in methods if m.startswith("lua")):
        ratios = [
            statistics.median(timings["naive"][case]) / statistics.median(timings[method][case])
            for case in cases
        ]
        shown = ", ".join(
            f"{case}: {ratio:.0f}x" for case, ratio in zip(cases, ratios, strict=True)
        )
        print(f"  {method}: {shown}")
        print(f"  {method}: longest single script call in Redis: {longest[method]:.1f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
