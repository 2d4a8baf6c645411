"""A worker process for the outage tests: tracked jobs in threads, as a queue worker runs them.

``python -m tests.reliability.outage_worker FOLDER JOBS STEPS`` tracks into the store that
``IMMORTUS_STORE`` names, every progress call written (``progress_interval=0``). Each job
``job-N`` runs in a thread of its own inside :func:`immortus.running`:

1. reports progress 1 .. STEPS/2, then creates ``FOLDER/job-N.half``;
2. waits for ``FOLDER/resume`` (the test takes the store down first);
3. reports the rest of its progress, a step every 10 ms, and ends: the last job raises
   ``ValueError("boom at the end")``, the others return;
4. creates ``FOLDER/job-N.done``: the job's side effect, which happens whatever the store does.

Then it logs ``all jobs done`` and waits for SIGINT, on which it exits 0 (through the normal
interpreter exit, so immortus's exit handler runs). Its log is immortus's log, at INFO.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

import immortus
from immortus import outbox

#: Generous: how long a job waits for the test to let it go on.
PATIENCE = 120.0


def job_id(number: int) -> str:
    """The id of job ``number``."""
    return f"job-{number}"


def run_job(folder: Path, number: int, steps: int, fails: bool) -> None:
    """Run job ``number`` (see the module docstring); its exception stays in its thread."""
    try:
        with immortus.running(job_id(number), None):
            for step in range(1, steps + 1):
                if step == steps // 2 + 1:
                    (folder / f"{job_id(number)}.half").touch()
                    deadline = time.monotonic() + PATIENCE
                    while not (folder / "resume").exists() and time.monotonic() < deadline:
                        time.sleep(0.01)
                immortus.progress(step, steps, f"step {step}")
                if step > steps // 2:
                    time.sleep(0.01)
            if fails:
                raise ValueError("boom at the end")
    except ValueError:
        pass
    finally:
        (folder / f"{job_id(number)}.done").touch()


def main(folder: Path, jobs: int, steps: int) -> None:
    """Run the jobs, then wait for SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    immortus.configure(progress_interval=0)
    threads = [
        threading.Thread(target=run_job, args=(folder, number, steps, number == jobs - 1))
        for number in range(jobs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logging.getLogger("immortus").info("all jobs done; %s", outbox.stats())
    try:
        while True:
            time.sleep(0.1)
    except KeyboardInterrupt:
        logging.getLogger("immortus").info("stopping; %s", outbox.stats())


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
