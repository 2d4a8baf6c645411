"""immortus: track background jobs from enqueue to done, across Python job queues.

Importing ``immortus`` loads only the standard library; stores, queues and frameworks are
imported when first used.

    import immortus

    @immortus.track
    def import_csv(path):
        for number, row in enumerate(rows(path), 1):
            immortus.progress(number, total, f"row {number}")

    immortus.status(job_id).to_dict()   # {"status": "started", "progress": {...}, ...}
    immortus.cancel(job_id).outcome      # CancelOutcome.CANCELLING, then "cancelled"
"""

from immortus import exceptions
from immortus.cancel_requests import JobCancelled
from immortus.cancelling import (
    Cancellation,
    CancelOutcome,
    acancel,
    cancel,
    register_canceller,
)
from immortus.config import Config, configure, get_config, get_store
from immortus.exceptions import *  # noqa: F403  # the one tree of errors, every one public
from immortus.finder import find_strategy, register_strategy, resolve_strategy
from immortus.groups import GroupStatus, add_to_group, agroup_status, group, group_status
from immortus.jobs import (
    JobContext,
    cancel_requested,
    current_job,
    progress,
    running,
    track,
    update_meta,
)
from immortus.query import astatus, astatus_many, status, status_many
from immortus.registry import declare
from immortus.status import HistoryEntry, HistoryEvent, JobError, JobStatus, Progress, State
from immortus.store_strategy import StoreStrategy
from immortus.stores import open_store
from immortus.strategy import TrackingStrategy

__version__ = "0.1.0"

__all__ = [
    "CancelOutcome",
    "Cancellation",
    "Config",
    "GroupStatus",
    "HistoryEntry",
    "HistoryEvent",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobStatus",
    "Progress",
    "State",
    "StoreStrategy",
    "TrackingStrategy",
    "__version__",
    "acancel",
    "add_to_group",
    "agroup_status",
    "astatus",
    "astatus_many",
    "cancel",
    "cancel_requested",
    "configure",
    "current_job",
    "declare",
    "find_strategy",
    "get_config",
    "get_store",
    "group",
    "group_status",
    "open_store",
    "progress",
    "register_canceller",
    "register_strategy",
    "resolve_strategy",
    "running",
    "status",
    "status_many",
    "track",
    "update_meta",
]
__all__ += exceptions.__all__
