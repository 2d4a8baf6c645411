"""The done-when page of the widget sites: 50 jobs of every ending and one 1 000-job group.

``start()`` sets the scene in the site's process and returns what the page shows; the page is
written with the framework's helpers only (the script tag, one ``<immortus-job>`` per job, one
``<immortus-group>``), as ``docs/widget.md`` shows. ``finish(scene)`` then lets every job end.

- 40 jobs that finish and 4 that fail: real jobs of :data:`~tests.browser.sites.jobs.BOARD`,
  run inside ``immortus.running`` in threads of the site, released step by step;
- 1 job retrying with a countdown (``retry_at`` 20 s ahead), later started again and finished;
- 1 running job whose Cancel button the test clicks: it stops at its next progress report;
- 2 jobs lost: started, then reported ``lost`` as a worker-death detector reports it;
- 2 unknown jobs: ids nobody recorded;
- a group of 1 000 jobs recorded by a thread through the public lifecycle API
  (``immortus.add_to_group`` and ``immortus.lifecycle``): a group of real worker jobs that
  large is too slow for the suite.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import immortus
from immortus import lifecycle
from tests.browser.sites import jobs

#: How many members the page's group has.
GROUP_SIZE: Final = 1000
#: The job class of the recorded (not run) jobs: tracked, cancellable.
RECORDED: Final = "browser.recorded"
immortus.declare(RECORDED, cancellable=True)

_SCENES: dict[str, dict[str, Any]] = {}

_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Imports</title>
  {csrf}
  {script}
</head>
<body>
  <main>
    <h1>Imports</h1>
    {group}
    {jobs}
  </main>
</body>
</html>
"""

#: The page as a Jinja2 template (Flask, Starlette).
JINJA_PAGE: Final = _PAGE.format(
    csrf="",
    script="{{ immortus_script() }}",
    group='{{ immortus_group(group_id, label="Import") }}',
    jobs="{% for job in jobs %}"
    "{{ immortus_job(job, label=job.label, cancel_url=job.cancel_url) }}"
    "{% endfor %}",
)
#: The page as a Django template.
DJANGO_PAGE: Final = "{% load immortus %}" + _PAGE.format(
    csrf='<meta name="csrf-token" content="{{ csrf_token }}">',
    script="{% immortus_script %}",
    group='{% immortus_group group_id label="Import" %}',
    jobs="{% for job in jobs %}"
    "{% immortus_job job label=job.label cancel_url=job.cancel_url %}"
    "{% endfor %}",
)


def _job(job_id: str, job_class: str, ending: str) -> dict[str, Any]:
    return {"job_id": job_id, "job_class": job_class, "ending": ending, "label": ending}


def start() -> dict[str, Any]:
    """Set the scene; return ``{"id", "group_id", "jobs": [{job_id, job_class, ending}]}``."""
    scene_id = uuid.uuid4().hex
    page_jobs = [_job(*jobs.BOARD.start("slow"), "finished") for _ in range(40)]
    page_jobs += [_job(*jobs.BOARD.start("fails"), "failed") for _ in range(4)]
    retrying = uuid.uuid4().hex
    lifecycle.job_started(retrying, RECORDED)
    retry_at = datetime.now(UTC) + timedelta(seconds=20)
    lifecycle.job_retrying(retrying, ValueError("rate limited"), RECORDED, retry_at=retry_at)
    page_jobs.append(_job(retrying, RECORDED, "retried"))
    cancelled = _job(*jobs.BOARD.start("steps"), "cancelled")
    cancelled["cancel_url"] = f"/immortus/cancel/{cancelled['job_id']}/{cancelled['job_class']}"
    page_jobs.append(cancelled)
    for _ in range(2):
        lost = uuid.uuid4().hex
        lifecycle.job_started(lost, RECORDED)
        lifecycle.job_lost(lost, RuntimeError("worker killed"), RECORDED)
        page_jobs.append(_job(lost, RECORDED, "lost"))
    page_jobs += [_job(uuid.uuid4().hex, RECORDED, "unknown") for _ in range(2)]
    for job in page_jobs:
        job.setdefault("cancel_url", None)
    group_id = f"import-{scene_id[:8]}"
    members = [f"{group_id}-{number}" for number in range(GROUP_SIZE)]
    for member in members:
        immortus.add_to_group(group_id, member, RECORDED)
    lifecycle.job_started(members[0], RECORDED)
    scene = {"id": scene_id, "group_id": group_id, "jobs": page_jobs, "members": members}
    _SCENES[scene_id] = scene
    return {key: scene[key] for key in ("id", "group_id", "jobs")}


def page_context(scene_id: str) -> dict[str, Any] | None:
    """What the page's template renders: ``{"jobs", "group_id"}``; ``None`` if no such scene."""
    scene = _SCENES.get(scene_id)
    return None if scene is None else {"jobs": scene["jobs"], "group_id": scene["group_id"]}


def finish(scene_id: str) -> bool:
    """Let every job of the scene end; ``False`` if there is no such scene.

    The run jobs are released at once; the retried job starts again and finishes; the group's
    members start and finish in a thread, one after another.
    """
    scene = _SCENES.get(scene_id)
    if scene is None:
        return False
    for job in scene["jobs"]:
        if job["ending"] == "cancelled":  # asked to stop: it does at its next report
            jobs.BOARD.step(job["job_id"])
        elif job["ending"] in ("finished", "failed"):
            for _ in range(1 if job["ending"] == "finished" else 2):
                jobs.BOARD.step(job["job_id"])
        elif job["ending"] == "retried":
            lifecycle.job_started(job["job_id"], RECORDED)
            lifecycle.job_finished(job["job_id"], RECORDED)

    def members() -> None:
        for member in scene["members"]:
            lifecycle.job_started(member, RECORDED)
            lifecycle.job_finished(member, RECORDED)

    threading.Thread(target=members, name="group-members", daemon=True).start()
    return True
