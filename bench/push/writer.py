"""The worker side of ``bench/push/``: jobs reporting progress on a timetable.

    python -m bench.push.writer STORE_URL JOB_CLASS IDS_FILE OUT_FILE --steps 20 --seconds 10

It opens the store as a worker would (``immortus.configure``), prints ``waiting`` and waits for
a line on stdin. Then each job reports ``--steps`` progress values (1 to steps, of steps)
with ``immortus.lifecycle.job_progress``, one every ``seconds / steps``; job ``i`` of ``n``
starts ``i / n`` of a step late, so the writes spread evenly. Right after its last step a job
is ``finished``. Each write is stamped on the system-wide monotonic clock once the store has
it; ``OUT_FILE`` gets the stamps of every job's steps and how late the writes ran.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import immortus
from immortus import Progress, lifecycle


def run(
    store: str, job_class: str, job_ids: Sequence[str], steps: int, seconds: float
) -> dict[str, Any]:
    """Report every job's steps on the timetable; return the stamps and the writes' lateness."""
    immortus.configure(store=store, progress_interval=0)
    immortus.track(name=job_class)(lambda: None)
    step = seconds / steps
    count = len(job_ids)
    timetable = sorted(
        ((number / count) * step + (current - 1) * step, current, job_id)
        for number, job_id in enumerate(job_ids)
        for current in range(1, steps + 1)
    )
    stamps: dict[str, list[float]] = {job_id: [0.0] * steps for job_id in job_ids}
    lags: list[float] = []
    print("waiting", flush=True)
    sys.stdin.readline()
    start = time.monotonic() + 0.05
    for offset, current, job_id in timetable:
        due = start + offset
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        progress = Progress(current=current, total=steps, message=f"step {current} of {steps}")
        lifecycle.job_progress(job_id, progress, job_class)
        written = time.monotonic()
        stamps[job_id][current - 1] = written
        lags.append(written - due)
        if current == steps:
            lifecycle.job_finished(job_id, job_class)
    lags.sort()
    return {
        "stamps": stamps,
        "writes": len(lags),
        "lag_p50_ms": lags[len(lags) // 2] * 1000,
        "lag_max_ms": lags[-1] * 1000,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.push.writer", description=__doc__)
    parser.add_argument("store")
    parser.add_argument("job_class")
    parser.add_argument("ids_file")
    parser.add_argument("out_file")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    with open(args.ids_file, encoding="utf-8") as file:
        job_ids = json.load(file)
    report = run(args.store, args.job_class, job_ids, args.steps, args.seconds)
    with open(args.out_file, "w", encoding="utf-8") as file:
        json.dump(report, file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
