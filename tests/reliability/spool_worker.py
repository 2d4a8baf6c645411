"""A worker process for the spool tests: one tracked job, ended in the way the test asks.

``python -m tests.reliability.spool_worker MODE FOLDER`` tracks into the store that
``IMMORTUS_STORE`` names (``progress_interval=0``: every progress call is written), logging
immortus's log at INFO:

- ``exit``: runs ``job-x`` to its end (two progress steps, one meta, finished) while the
  store is away, prints how many events it holds, and ends with ``os._exit(0)``: no exit
  handler, no flush. What it held is in its spool file only.
- ``adopt``: the next process. Runs ``job-y`` (its first event for the store takes over what
  dead processes left), waits until ``job-x`` reads completed and the dead process's spool
  file is gone (the adoption, logged, is over), prints ``adopted`` and exits.
- ``long``: runs ``job-long``, heart-beating every 0.2 s (lost after 1 s without a beat);
  creates ``FOLDER/started`` once it runs, and ends when ``FOLDER/finish`` appears.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import immortus
from immortus import config, outbox
from immortus.stores.spool import SPOOL_DIR_ENV

#: Generous: how long a step waits for the test.
PATIENCE = 120.0


def wait_for_file(path: Path) -> None:
    """Wait until ``path`` exists (or PATIENCE runs out)."""
    deadline = time.monotonic() + PATIENCE
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def exit_holding() -> None:
    """Run job-x with the store away, then end without any exit handler."""
    with immortus.running("job-x", None):
        immortus.progress(1, 2, "first half")
        immortus.update_meta(rows=37)
        immortus.progress(2, 2, "second half")
    print(f"held {outbox.stats().buffered}", flush=True)
    os._exit(0)


def adopt() -> None:
    """Run job-y, then wait until job-x, which a dead process held, reads completed."""
    with immortus.running("job-y", None):
        pass
    store = config.get_store()
    assert store is not None
    deadline = time.monotonic() + PATIENCE
    spooled = Path(os.environ[SPOOL_DIR_ENV])
    while time.monotonic() < deadline:
        status = store.get("job-x")
        if status is not None and status.completed and not any(spooled.iterdir()):
            print("adopted", flush=True)
            return
        time.sleep(0.02)
    print("job-x never completed", flush=True)


def long_job(folder: Path) -> None:
    """Run job-long until the test lets it finish."""
    immortus.configure(heartbeat_interval=0.2, heartbeat_timeout=1.0)
    with immortus.running("job-long", None):
        (folder / "started").touch()
        wait_for_file(folder / "finish")


def main(mode: str, folder: Path) -> None:
    """Run ``mode`` (see the module docstring)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    immortus.configure(progress_interval=0)
    if mode == "long":
        long_job(folder)
    else:
        {"exit": exit_holding, "adopt": adopt}[mode]()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
