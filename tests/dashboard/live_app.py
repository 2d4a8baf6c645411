"""The app a dashboard of the live test loads in a process of its own (Django, standalone).

As a dashboard serving another app's store would, it names the jobs it shows, with their
queues, and installs RQ's queue so that a cancel from its pages stops a running RQ job. It
reads :data:`JOBS_ENV` (JSON: ``{job_class: queue}``) and :data:`RQ_ENV` (RQ's Redis URL):
``immortus dashboard --app tests.dashboard.live_app:setup()``.
"""

from __future__ import annotations

import json
import os
from typing import Final

from redis import Redis

from immortus import registry
from tests.queues import rq_app

#: The job classes the dashboard shows, other than RQ's, and their queues (JSON).
JOBS_ENV: Final = "IMMORTUS_LIVE_JOBS"
#: The Redis URL of RQ's queue.
RQ_ENV: Final = "IMMORTUS_LIVE_RQ"


def setup() -> None:
    """Install RQ's queue (its canceller) and declare the other jobs, from the environment."""
    rq_app.make_queue(Redis.from_url(os.environ[RQ_ENV]))
    for job_class, queue in json.loads(os.environ[JOBS_ENV]).items():
        registry.declare(job_class, queue=queue, strategy="store")
