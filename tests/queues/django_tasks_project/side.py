"""The Django side of the tests: enqueues tasks and answers status questions, as a web app would.

Run as ``python -m tests.queues.django_tasks_project.side`` with ``DJANGO_SETTINGS_MODULE``,
``IMMORTUS_DJANGO_TASKS_DB`` and ``IMMORTUS_STORE`` set. It reads one JSON command a line on
stdin and writes one JSON answer a line on stdout, until stdin closes. Statuses travel as the
stores' flat records (:func:`immortus.stores.records.encode`).
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import django

django.setup()

from django.db import connection  # noqa: E402
from django.tasks import signals, task_backends  # noqa: E402
from django_tasks_db.models import DBTaskResult  # noqa: E402

import immortus  # noqa: E402
from immortus.exceptions import ImmortusError  # noqa: E402
from immortus.finder import find_strategy  # noqa: E402
from immortus.queues import django_tasks  # noqa: E402
from immortus.queues import identify as identify_job  # noqa: E402
from immortus.status import JobStatus  # noqa: E402
from immortus.stores.memory import MemoryStore  # noqa: E402
from immortus.stores.records import encode  # noqa: E402
from immortus.transitions import Event  # noqa: E402
from immortus.web.core import render_job  # noqa: E402
from tests.queues.django_tasks_project import tasks  # noqa: E402
from tests.surfaces import answers, reading_as  # noqa: E402

Answer = dict[str, Any]


class FailingStore(MemoryStore):
    """A store that raises on every write: fault injection for the hooks."""

    def record(self, event: Event) -> JobStatus | None:
        raise RuntimeError("injected store failure")


class LogRecorder(logging.Handler):
    """Keeps what the ``immortus`` logger says, for the tests to read."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


recorder = LogRecorder()
logging.getLogger("immortus").addHandler(recorder)
logging.getLogger("immortus").propagate = False  # keep stdout for answers, stderr quiet


def encoded(status: JobStatus) -> Answer:
    return encode(status, created=0.0, expires=None)


def enqueue(
    job: str, args: Sequence[Any] = (), backend: str = "default", tracked: bool = True
) -> Answer:
    chosen = getattr(tasks, job).using(backend=backend)
    if not tracked:
        django_tasks.uninstall()
    try:
        result = chosen.enqueue(*args)
    finally:
        django_tasks.install()
    return {"id": str(result.id), "queue_status": str(result.status)}


def render() -> Answer:
    """What the docs' view does: enqueue, then hand the page what it needs to follow the task."""
    immortus.configure(open_endpoints=True)  # no secret key here: the page gets no token
    result = tasks.steps.enqueue()
    response = render_job(result, tasks.steps.module_path)
    return {"id": str(result.id), "code": response.status, "body": json.loads(response.content())}


def identify() -> Answer:
    """What ``immortus.queues.identify`` says of the results of a tracked and an untracked task."""
    tracked, untracked = tasks.steps.enqueue(), tasks.untracked.enqueue()
    return {
        "ids": [str(tracked.id), str(untracked.id)],
        "tracked": list(identify_job(tracked)),
        "untracked": list(identify_job(untracked)),
    }


def status(id: str, job_class: str | None = None) -> Answer:
    try:
        return {"status": encoded(immortus.status(id, job_class))}
    except ImmortusError as exc:
        return {"raised": type(exc).__name__}


def surfaces(id: str, job_class: str, style: str) -> Answer:
    """What every surface answers here about the task, read the way of ``style``."""
    with reading_as(style, "django_tasks", job_class) as asked:  # type: ignore[arg-type]
        return {"surfaces": answers(id, asked)}


def strategy_status(id: str, backend: str | None = None) -> Answer:
    strategy = django_tasks.DjangoTaskStrategy(backend=backend)
    return {
        "status": encoded(strategy.status(id)),
        "native": strategy.native_status(id) is not None,
    }


def native(id: str) -> Answer:
    """What the queue alone says: Django's own result, through the default backend."""
    try:
        result = task_backends["default"].get_result(id)
    except Exception:  # noqa: BLE001  # any failure to find it: the queue does not know it
        return {"status": None}
    errors = [error.exception_class_path for error in result.errors]
    return {"status": str(result.status), "errors": errors, "attempts": result.attempts}


def cancel(id: str) -> Answer:
    return {"cancelled": django_tasks.cancel(id)}


def immortus_cancel(id: str, job_class: str) -> Answer:
    """``immortus.cancel`` here, where the queue's canceller is registered."""
    return {"outcome": str(immortus.cancel(id, job_class).outcome)}


def delete(id: str) -> Answer:
    """Delete the task's row the way the admin does (no lock, no status check)."""
    return {"deleted": DBTaskResult.objects.filter(id=id).delete()[0]}


def reset(store: str) -> Answer:
    """Empty the task table (without signals) and switch immortus to ``store``."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {DBTaskResult._meta.db_table}")  # noqa: S608
    immortus.configure(store=FailingStore() if store == "failing" else store)
    recorder.messages.clear()
    return {}


def configure(store: str) -> Answer:
    """Switch immortus to ``store`` (an unreachable one, say), keeping the tasks."""
    immortus.configure(store=store)
    return {}


def setup() -> Answer:
    """What is installed: the inferred strategy, and our receivers after a second install()."""
    django_tasks.install()
    library = django_tasks.DjangoTaskStrategy.__module__
    receivers = [key for key, *_ in signals.task_enqueued.receivers if "immortus" in str(key)]
    inferred = find_strategy(tasks.steps.module_path)
    inline = find_strategy(tasks.newsletter.module_path)
    immortus.configure(strategy="django_tasks")  # the global strategy, for every job
    try:
        global_ = find_strategy(None)
    finally:
        immortus.configure(strategy=None)
    return {
        "inferred": type(inferred).__name__,
        "inline": type(inline).__name__,
        "global": type(global_).__name__,
        "module": library,
        "receivers": len(receivers),
    }


def logs() -> Answer:
    messages, recorder.messages = recorder.messages, []
    return {"logs": messages}


COMMANDS: dict[str, Callable[..., Answer]] = {
    "enqueue": enqueue,
    "render": render,
    "identify": identify,
    "status": status,
    "surfaces": surfaces,
    "strategy_status": strategy_status,
    "native": native,
    "cancel": cancel,
    "immortus_cancel": immortus_cancel,
    "delete": delete,
    "reset": reset,
    "configure": configure,
    "setup": setup,
    "logs": logs,
}


def main() -> None:
    for line in sys.stdin:
        command = json.loads(line)
        try:
            answer = COMMANDS[command.pop("op")](**command)
        except Exception:  # noqa: BLE001  # the test process shows it
            answer = {"failure": traceback.format_exc()}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
