"""The scenario jobs as Django tasks: exactly what docs/queues/django_tasks.md shows."""

from __future__ import annotations

import time
from pathlib import Path

from django.tasks import task

import immortus


@task
@immortus.track(queue="django_tasks")
def steps() -> str:
    """Report progress 1, 2, 3 of 3."""
    for step in (1, 2, 3):
        immortus.progress(step, 3, f"step {step}")
    return "done"


@task
@immortus.track(queue="django_tasks")
def fails() -> None:
    """Report 3 of 5, then fail."""
    immortus.progress(3, 5)
    raise ValueError("boom at 60%")


@task
@immortus.track(queue="django_tasks")
def flaky(marker: str) -> str:
    """Fail the first time it runs for ``marker`` (a file path), succeed afterwards."""
    path = Path(marker)
    if not path.exists():
        path.touch()
        raise RuntimeError("first attempt fails")
    return "second attempt"


@task
@immortus.track(queue="django_tasks")
def slow() -> None:
    """Report progress every 50 ms for up to 30 s."""
    for tick in range(600):
        immortus.progress(tick, 600)
        time.sleep(0.05)


@task
@immortus.track(queue="django_tasks")
def stops_itself() -> None:
    """Report progress 1 of 2, then stop as a cancelled job does."""
    immortus.progress(1, 2)
    job = immortus.current_job()
    raise immortus.JobCancelled(job.job_id if job is not None else "?")


@task
def untracked() -> str:
    """A task that did not opt in: the hooks leave it alone."""
    return "quiet"


@task
@immortus.track(strategy="store")
def newsletter() -> None:
    """A task with an inline strategy: only what the hooks recorded, never the backend's rows."""
