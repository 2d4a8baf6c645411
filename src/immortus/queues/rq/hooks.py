"""Installing immortus on an RQ queue or worker, and the job id and job class of an RQ job."""

from __future__ import annotations

from typing import Any, Final, TypeVar

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.worker import BaseWorker

from immortus import runtime
from immortus.queues._kit import tracked_path
from immortus.queues.rq.job import TrackedJob, tracked_job_class, untracked_job_class

__all__ = ["identify", "install", "installed", "uninstall"]

Target = TypeVar("Target", Queue, BaseWorker)


class RQInstalls(runtime.LockedPart):
    """The connections of the RQ queues and workers installed here: a runtime part.

    ``installed`` holds one ``(connection, serializer)`` per installed connection, oldest
    first; the last answers, so the latest :func:`install` wins (and an :func:`uninstall`
    gives the word back to the one before). A reset keeps them: :func:`uninstall` undoes one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.installed: list[tuple[Redis, Any]] = []

    def add(self, connection: Redis, serializer: Any) -> None:
        """Make ``connection`` (with ``serializer``) the one that answers."""
        with self.lock:
            self._drop(connection)
            self.installed.append((connection, serializer))
            self._answer()

    def remove(self, connection: Redis) -> None:
        """Forget ``connection``; the one installed before it answers again."""
        with self.lock:
            self._drop(connection)
            self._answer()

    def _drop(self, connection: Redis) -> None:
        self.installed = [entry for entry in self.installed if entry[0] is not connection]

    def _answer(self) -> None:
        _Installed.connection, _Installed.serializer = (
            self.installed[-1] if self.installed else (None, None)
        )

    def reset(self) -> None:
        """Keep the installs: they are the application's wiring."""


class _Installed:
    """The last entry of :attr:`RQInstalls.installed`: what the strategy and the canceller read."""

    connection: Redis | None = None
    serializer: Any = None


_installs: Final = runtime.part(RQInstalls)


def install(target: Target) -> Target:
    """Install immortus's hooks on an RQ ``Queue`` (or ``Worker``) and return it.

    Sets its job class to :class:`TrackedJob` (or a subclass of its own job class that
    reports), and lets :class:`RQStrategy` read job hashes over its connection. Installing
    twice changes nothing. A worker started with ``rq worker`` needs ``--job-class
    immortus.queues.rq.TrackedJob`` instead.

    Raises:
        TypeError: ``target`` is neither an RQ queue nor an RQ worker.
    """
    if not isinstance(target, Queue | BaseWorker):
        raise TypeError(f"install() takes an RQ Queue or Worker, not {type(target).__name__}")
    target.job_class = tracked_job_class(target.job_class)
    _installs.add(target.connection, target.serializer)
    return target


def uninstall(target: Target) -> Target:
    """Undo :func:`install` on ``target``: give it back the job class it had, and return it."""
    target.job_class = untracked_job_class(target.job_class)
    _installs.remove(target.connection)
    return target


def installed(target: Queue | BaseWorker) -> bool:
    """Tell whether ``target``'s jobs report to immortus: its job class is a ``TrackedJob``."""
    return issubclass(target.job_class, TrackedJob)


def identify(job: object) -> tuple[str | None, str | None] | None:
    """Return the ``(job_id, job_class)`` of an RQ ``Job``; ``None`` for anything else.

    The job class is the tracked one of the job's function, found from RQ's ``func_name``
    without importing it; ``None`` when the function is not tracked.
    """
    if not isinstance(job, Job):
        return None
    try:
        name = job.func_name
    except Exception:  # noqa: BLE001 - a job whose data RQ cannot read has no name to give
        name = None
    return job.id, tracked_path(name)
