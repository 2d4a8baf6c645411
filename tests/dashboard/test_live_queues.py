"""The dashboard over real RQ, Huey, Celery, Dramatiq and Django tasks workers, in chromium.

One SQLite store is shared by the test process (which enqueues, and serves the dashboard under
uvicorn, as a web app would), a Django project's process (which enqueues its tasks) and real
workers: ``rq worker``, a Huey consumer, a Celery worker, a Dramatiq worker and ``db_worker``.
The page lists the jobs of every queue, shows a running job's progress moving without a reload,
a retried job's first error in its timeline, a SIGKILLed consumer's job ``lost``, and a cancel
made from the job page ending ``cancelled``; axe-core finds nothing on any page of it.

Screenshots go to ``docs/images/dashboard-live-*.png`` when ``IMMORTUS_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest
from playwright.sync_api import Browser, Page
from redis import Redis
from starlette.applications import Starlette
from starlette.requests import Request

from immortus import State, registry
from immortus.config import HEARTBEAT_INTERVAL_ENV, HEARTBEAT_TIMEOUT_ENV
from immortus.jobs import job_class_of
from immortus.queues.celery import install as install_celery
from immortus.status import JobError, JobStatus
from immortus.stores.memory import MemoryStore
from immortus.transitions import Event, EventKind
from immortus.web.dashboard.core import Dashboard, DashboardRequest
from immortus.web.dashboard.starlette import dashboard_routes
from tests.dashboard.test_browser import IMAGES, _axe, browser
from tests.queues import celery_app, rq_app
from tests.queues.huey_storage import LOCATION_ENV, NAME_ENV, STORAGE_ENV
from tests.queues.scenarios import TIMEOUT, wait_for, wait_for_status
from tests.queues.stores import tracking_into_sqlite
from tests.queues.test_celery import CELERY_DB, CeleryHarness
from tests.queues.test_django_tasks import (
    DEAD_STORE,
    TASKS,
    DjangoSide,
    DjangoTasksHarness,
    project_env,
)
from tests.queues.test_dramatiq import DramatiqHarness
from tests.queues.test_dramatiq import app as dramatiq_module
from tests.queues.test_huey import HueyHarness
from tests.queues.test_rq import RQ_DB, RQHarness
from tests.queues.workers import ROOT, WorkerProcess
from tests.reliability.test_lost_huey import killed_consumer
from tests.web.servers import serve_asgi

#: Fixtures shared with other tests: the module's chromium, Dramatiq's actors on the test Redis.
__all__ = ["browser", "dramatiq_module"]

#: Celery 5.7's Redis result backend calls redis-py's deprecated ``setex`` (as test_celery says).
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")
#: The Huey consumer beats every 0.2 s; its jobs read ``lost`` 1.5 s after it stops.
HEARTBEAT = {HEARTBEAT_INTERVAL_ENV: "0.2", HEARTBEAT_TIMEOUT_ENV: "1.5"}
#: The longest wait for one outcome on the page (generous: never a timing assertion).
TIMEOUT_MS = 30_000


def _anyone(request: Request) -> bool:
    return True


def _shoot(page: Page, name: str) -> None:
    if os.environ.get("IMMORTUS_SCREENSHOTS") == "1":
        page.screenshot(path=str(IMAGES / f"dashboard-live-{name}.png"), full_page=True)


def _running(status: JobStatus) -> bool:
    return status.state is State.STARTED and status.progress is not None


def _fresh_redis(redis_url: str, db: int) -> str:
    url = redis_url.rpartition("/")[0] + f"/{db}"
    with Redis.from_url(url) as client:
        client.flushdb()
    return url


@contextmanager
def _huey(folder: Path, store_url: str) -> Iterator[HueyHarness]:
    """A Huey queue on SQLite in ``folder`` whose jobs track into ``store_url``."""
    names = (STORAGE_ENV, LOCATION_ENV, NAME_ENV)
    saved = {name: os.environ.get(name) for name in names}
    harness = HueyHarness("sqlite", str(folder / "huey.sqlite3"), folder, store_url)
    try:
        yield harness
    finally:
        harness.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _folder(root: Path, name: str) -> Path:
    made = root / name
    made.mkdir()
    return made


def _job_page(page: Page, site: str, job_id: str) -> None:
    page.goto(f"{site}/jobs/{job_id}")


def _wait_for_state(page: Page, site: str, job_id: str, state: State) -> None:
    """Reload the job's page until its record reads ``state`` (a lapsed lease writes nothing)."""

    def reads() -> bool:
        _job_page(page, site, job_id)
        return page.locator(f"dl .badge.state-{state.value}").count() == 1

    wait_for(reads, what=f"the page of {job_id} to read {state.value}")


@dataclass(frozen=True, slots=True)
class Queues:
    """The queues of the test, and the Huey consumer it kills."""

    rq: RQHarness
    huey: HueyHarness
    celery: CeleryHarness
    dramatiq: DramatiqHarness
    django_tasks: DjangoTasksHarness
    huey_consumer: WorkerProcess


@contextmanager
def _five_queues(tmp_path: Path, redis_url: str, dramatiq_app: ModuleType) -> Iterator[Queues]:
    """Workers of RQ, Celery, Dramatiq, Django tasks and Huey, all tracking into one store.

    The Huey consumer beats often: the test kills it.
    """
    with ExitStack() as stack:
        store_url = stack.enter_context(tracking_into_sqlite(tmp_path))
        rq = RQHarness(_fresh_redis(redis_url, RQ_DB), store_url, _folder(tmp_path, "rq"))
        stack.callback(rq.close)
        huey = stack.enter_context(_huey(_folder(tmp_path, "huey"), store_url))
        celery_url = _fresh_redis(redis_url, CELERY_DB)
        celery_app.configure(celery_url)
        install_celery(celery_app.app)
        celery = CeleryHarness(celery_url, store_url, _folder(tmp_path, "celery"))
        dramatiq = DramatiqHarness(dramatiq_app, store_url, _folder(tmp_path, "dramatiq"))
        django_tasks = stack.enter_context(_django_tasks(_folder(tmp_path, "django"), store_url))
        stack.enter_context(rq.worker())
        stack.enter_context(celery.worker())
        stack.enter_context(dramatiq.worker())
        stack.enter_context(django_tasks.worker())
        consumer = stack.enter_context(killed_consumer(huey, HEARTBEAT))
        yield Queues(rq, huey, celery, dramatiq, django_tasks, consumer)


@contextmanager
def _django_tasks(folder: Path, store_url: str) -> Iterator[DjangoTasksHarness]:
    """The Django task project on a new SQLite database, tracking into ``store_url``.

    Its tasks run in the project's own processes; here they are declared by name, as a
    dashboard serving another app's store declares them, so that it shows their queue.
    """
    database = str(folder / "tasks.sqlite3")
    migrate = [sys.executable, "-m", "django", "migrate", "--verbosity", "0"]
    env = project_env(database, DEAD_STORE)
    subprocess.run(migrate, cwd=ROOT, env=env, check=True, timeout=TIMEOUT)
    for job in ("steps", "fails"):
        registry.declare(f"{TASKS}.{job}", queue="django_tasks", strategy="store")
    side = DjangoSide(database, folder / "side.log")
    try:
        side.call("reset", store=store_url)
        yield DjangoTasksHarness(side, database, store_url, folder)
    finally:
        side.close()


def _enqueue_all(queues: Queues, release: Path) -> dict[str, tuple[str, str]]:
    """Enqueue the jobs of the test; return ``{"queue job": (job_id, job_class)}``.

    Returns once the short jobs have ended and the two long ones run.
    """
    rq, huey, celery, django = queues.rq, queues.huey, queues.celery, queues.django_tasks
    jobs = {
        "rq flaky": (rq.enqueue("flaky"), rq.job_class("flaky")),
        "celery steps": (celery.enqueue("steps"), celery.job_class("steps")),
        "celery fails": (celery.enqueue("fails"), celery.job_class("fails")),
        "huey steps": (huey.enqueue("steps"), huey.job_class("steps")),
        "dramatiq steps": (queues.dramatiq.enqueue("steps"), queues.dramatiq.job_class("steps")),
        "dramatiq fails": (queues.dramatiq.enqueue("fails"), queues.dramatiq.job_class("fails")),
        "django_tasks steps": (django.enqueue("steps"), django.job_class("steps")),
        "django_tasks fails": (django.enqueue("fails"), django.job_class("fails")),
        "huey slow": (huey.enqueue("slow"), huey.job_class("slow")),
    }
    for job_id, job_class in jobs.values():
        if job_class != huey.job_class("slow"):
            wait_for_status(job_id, job_class, lambda status: status.completed)
    # After the flaky job: RQ puts its retry at the end of the queue, behind a job that blocks.
    blocks = rq_app.blocks
    jobs["rq blocks"] = (rq.queue.enqueue(blocks, str(release)).id, job_class_of(blocks))
    for name in ("huey slow", "rq blocks"):
        wait_for_status(*jobs[name], _running)
    return jobs


def test_the_dashboard_over_five_queues_at_once(
    browser: Browser, redis_url: str, tmp_path: Path, dramatiq_module: ModuleType
) -> None:
    with (
        _five_queues(tmp_path, redis_url, dramatiq_module) as queues,
        serve_asgi(Starlette(routes=[dashboard_routes("/ops", authorize=_anyone)])) as url,
    ):
        site = f"{url}/ops"
        jobs = _enqueue_all(queues, tmp_path / "never")
        ids = {name: job_id for name, (job_id, _) in jobs.items()}
        page = browser.new_page(viewport={"width": 1440, "height": 900}, bypass_csp=True)  # axe
        page.set_default_timeout(TIMEOUT_MS)
        page.on("dialog", lambda dialog: dialog.accept())

        # The list: the jobs of every queue, each under its queue.
        page.goto(f"{site}/jobs")
        for name, job_id in ids.items():
            row = page.locator(f'#rows tr[data-job="{job_id}"]')
            assert row.locator('td[data-label="Queue"]').inner_text() == name.split()[0]
        _check(page, "list")

        # A running job's progress moves on its page, without a reload.
        _job_page(page, site, ids["huey slow"])
        first = page.locator("dl progress").get_attribute("value")
        page.wait_for_function(
            "first => document.querySelector('dl progress')?.getAttribute('value') !== first",
            arg=first,
        )
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
        _check(page, "running")

        # A SIGKILLed consumer: its running job reads lost once its lease lapses.
        queues.huey_consumer.kill()
        _wait_for_state(page, site, ids["huey slow"], State.LOST)
        assert "lost" in page.locator("ol.timeline li").last.inner_text()
        _check(page, "lost")

        # A retried job: its first attempt's error is in the timeline, then the second's end.
        _job_page(page, site, ids["rq flaky"])
        events = page.locator("ol.timeline li").all_inner_texts()
        retry = next(text for text in events if "retrying" in text)
        assert "attempt 1" in retry
        assert "RuntimeError: first attempt fails" in retry
        assert ("finished" in events[-1], "attempt 2" in events[-1]) == (True, True)
        _check(page, "history")

        # A cancel from the job page: the running RQ job ends cancelled.
        _job_page(page, site, ids["rq blocks"])
        page.get_by_role("button", name="Cancel this job").click()
        page.wait_for_load_state()
        _wait_for_state(page, site, ids["rq blocks"], State.CANCELLED)
        events = page.locator("ol.timeline li").all_inner_texts()
        assert [text.split()[0] for text in events[-2:]] == ["cancel", "cancelled"]
        _check(page, "cancelled")

        page.goto(f"{site}/")
        assert _axe(page) == []
        page.close()


def _check(page: Page, name: str) -> None:
    """axe-core finds nothing on the page; shoot it (when screenshots are asked for)."""
    assert _axe(page) == []
    _shoot(page, name)


def test_the_job_page_shows_every_kind_of_history_entry() -> None:
    """The timeline names each event, each failed attempt's error and its retry time."""
    store = MemoryStore()
    at = datetime(2030, 1, 1, tzinfo=UTC)
    due = at + timedelta(seconds=30)
    error = JobError(type="TimeoutError", message="slow <db>")
    for kind, fields in (
        (EventKind.ENQUEUED, {}),
        (EventKind.STARTED, {"attempt": 1}),
        (EventKind.RETRYING, {"attempt": 1, "error": error, "retry_at": due}),
        (EventKind.STARTED, {"attempt": 2}),
    ):
        store.record(Event(kind=kind, job_id="j", job_class="reports.build", at=at, **fields))
    store.request_cancel("j")
    store.record(Event(kind=EventKind.CANCELLED, job_id="j", job_class="reports.build", at=at))
    request = DashboardRequest(method="GET", path="/jobs/j", authorized=True)
    html = Dashboard(store=store).handle(request).body.decode()
    timeline = html[html.index('<ol class="timeline">') :]
    timeline = timeline[: timeline.index("</ol>")]
    assert timeline.count("<li>") == 6
    assert "TimeoutError: slow &lt;db&gt;" in timeline
    assert 'next attempt due <time datetime="2030-01-01T00:00:30.000Z">' in timeline
    assert '<span class="event">cancel requested</span>' in timeline
    assert 'class="badge state-cancelled"' in timeline
