"""The dashboard over real RQ, Huey, Celery, Dramatiq and Django tasks workers, in chromium.

One SQLite store is shared by the test process (which enqueues, and serves the dashboard as a
Starlette app and as a Flask app would), a Django project's process (which enqueues its tasks),
a Django project serving the dashboard, the standalone ``immortus dashboard`` and real workers:
``rq worker``, a Huey consumer, a Celery worker, a Dramatiq worker and ``db_worker``. The
queues start once; the four dashboards serve the same store at the same time
(:mod:`tests.dashboard.live_sites`). On each, the page lists the jobs of every queue, shows a
running job's progress moving without a reload, a retried job's first error in its timeline, a
SIGKILLed consumer's job ``lost``, and a cancel made from the job page (through that
framework's CSRF protection) ending ``cancelled``; axe-core finds nothing on any page of it.

Screenshots (of the Starlette pages) go to ``docs/images/dashboard-live-*.png`` when
``IMMORTUS_SCREENSHOTS=1``.
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

from immortus import State, registry
from immortus.config import HEARTBEAT_INTERVAL_ENV, HEARTBEAT_TIMEOUT_ENV
from immortus.jobs import job_class_of
from immortus.queues.celery import install as install_celery
from immortus.status import JobError, JobStatus
from immortus.stores.memory import MemoryStore
from immortus.stores.sqlite import SQLiteStore
from immortus.transitions import Event, EventKind
from immortus.web.dashboard.core import Dashboard, DashboardRequest
from tests.dashboard.live_sites import Site, four_sites
from tests.dashboard.test_browser import IMAGES, _axe, browser
from tests.queues import celery_app, rq_app
from tests.queues.huey_storage import LOCATION_ENV, NAME_ENV, STORAGE_ENV
from tests.queues.scenarios import TIMEOUT, Job, QueueHarness, wait_for, wait_for_status
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

#: Fixtures shared with other tests: the module's chromium, Dramatiq's actors on the test Redis.
__all__ = ["browser", "dramatiq_module"]

#: Celery 5.7's Redis result backend calls redis-py's deprecated ``setex`` (as test_celery says).
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")
#: The Huey consumer beats every 0.2 s; its jobs read ``lost`` 1.5 s after it stops.
HEARTBEAT = {HEARTBEAT_INTERVAL_ENV: "0.2", HEARTBEAT_TIMEOUT_ENV: "1.5"}


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


def _job_page(site: Site, job_id: str) -> None:
    site.page.goto(f"{site.url}/jobs/{job_id}")


def _wait_for_state(site: Site, job_id: str, state: State) -> None:
    """Reload the job's page until its record reads ``state`` (a lapsed lease writes nothing)."""

    def reads() -> bool:
        _job_page(site, job_id)
        return site.page.locator(f"dl .badge.state-{state.value}").count() == 1

    wait_for(reads, what=f"the {site.name} page of {job_id} to read {state.value}")


@dataclass(frozen=True, slots=True)
class Queues:
    """The queues of the test, the store they track into, and the Huey consumer it kills."""

    store_url: str
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
        yield Queues(store_url, rq, huey, celery, dramatiq, django_tasks, consumer)


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


def _enqueue_all(queues: Queues) -> dict[str, tuple[str, str]]:
    """Enqueue the jobs of the test; return ``{"queue job": (job_id, job_class)}``.

    Returns once the short jobs have ended and the slow one runs.
    """
    jobs = {
        f"{queue} {job}": (harness.enqueue(job), harness.job_class(job))
        for queue, job, harness in _jobs_of(queues)
    }
    for name, (job_id, job_class) in jobs.items():
        if name != "huey slow":
            wait_for_status(job_id, job_class, lambda status: status.completed)
    wait_for_status(*jobs["huey slow"], _running)
    return jobs


def _jobs_of(queues: Queues) -> list[tuple[str, Job, QueueHarness]]:
    """The jobs of the test: ``(queue, job, harness)``, the slow one last."""
    return [
        ("rq", "flaky", queues.rq),
        ("celery", "steps", queues.celery),
        ("celery", "fails", queues.celery),
        ("huey", "steps", queues.huey),
        ("dramatiq", "steps", queues.dramatiq),
        ("dramatiq", "fails", queues.dramatiq),
        ("django_tasks", "steps", queues.django_tasks),
        ("django_tasks", "fails", queues.django_tasks),
        ("huey", "slow", queues.huey),
    ]


def _blocking(queues: Queues, count: int, release: Path) -> list[str]:
    """Enqueue ``count`` RQ jobs that block; one worker runs them one after the other.

    Enqueued after the flaky job has ended: RQ puts a retry at the end of its queue.
    """
    blocks = rq_app.blocks
    return [queues.rq.queue.enqueue(blocks, str(release)).id for _ in range(count)]


@pytest.mark.alone
@pytest.mark.timeout(400)  # it may wait for another test marked alone
def test_the_dashboard_over_five_queues_at_once_on_every_framework(
    browser: Browser, redis_url: str, tmp_path: Path, dramatiq_module: ModuleType
) -> None:
    """The same jobs, seen and cancelled on the Starlette, Flask, Django and standalone pages."""
    with _five_queues(tmp_path, redis_url, dramatiq_module) as queues:
        others = {
            harness.job_class(job): queue
            for queue, job, harness in _jobs_of(queues)
            if queue != "rq"
        }
        sites_folder = _folder(tmp_path, "sites")
        SQLiteStore.from_url(queues.store_url).close()  # the standalone one refuses no file
        with four_sites(browser, sites_folder, queues.store_url, others, queues.rq.url) as sites:
            jobs = _enqueue_all(queues)
            ids = {name: job_id for name, (job_id, _) in jobs.items()}
            _check_every_site(sites, queues, ids, tmp_path / "never")


def _check_every_site(
    sites: list[Site], queues: Queues, ids: dict[str, str], release: Path
) -> None:
    """Each check on every site in turn; the screenshots are the first site's."""
    # A running job's progress moves on its page, without a reload.
    for site in sites:
        _job_page(site, ids["huey slow"])
    for site in sites:
        page = site.page
        first = page.locator("dl progress").get_attribute("value")
        page.wait_for_function(
            "first => document.querySelector('dl progress')?.getAttribute('value') !== first",
            arg=first,
        )
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
        _check(site, sites, "running")

    # A SIGKILLed consumer: its running job reads lost once its lease lapses.
    queues.huey_consumer.kill()
    for site in sites:
        _wait_for_state(site, ids["huey slow"], State.LOST)
        assert "lost" in site.page.locator("ol.timeline li").last.inner_text()
        _check(site, sites, "lost")

    # The list: the jobs of every queue, each under its queue.
    for site in sites:
        site.page.goto(f"{site.url}/jobs")
        for name, job_id in ids.items():
            row = site.page.locator(f'#rows tr[data-job="{job_id}"]')
            assert row.locator('td[data-label="Queue"]').inner_text() == name.split()[0]
        _check(site, sites, "list")

    # A retried job: its first attempt's error is in the timeline, then the second's end.
    for site in sites:
        _job_page(site, ids["rq flaky"])
        events = site.page.locator("ol.timeline li").all_inner_texts()
        retry = next(text for text in events if "retrying" in text)
        assert "attempt 1" in retry
        assert "RuntimeError: first attempt fails" in retry
        assert ("finished" in events[-1], "attempt 2" in events[-1]) == (True, True)
        _check(site, sites, "history")

    # A cancel from each site's job page (its own CSRF): one running RQ job each, in turn.
    blocking = _blocking(queues, len(sites), release)
    for site, job_id in zip(sites, blocking, strict=True):
        wait_for_status(job_id, job_class_of(rq_app.blocks), _running)
        _job_page(site, job_id)
        site.page.get_by_role("button", name="Cancel this job").click()
        site.page.wait_for_load_state()
        assert site.page.locator("h1").inner_text() == "Cancel", site.name
        _wait_for_state(site, job_id, State.CANCELLED)
        events = site.page.locator("ol.timeline li").all_inner_texts()
        assert [text.split()[0] for text in events[-2:]] == ["cancel", "cancelled"]
        _check(site, sites, "cancelled")

    for site in sites:
        site.page.goto(f"{site.url}/")
        assert _axe(site.page) == [], site.name


def _check(site: Site, sites: list[Site], name: str) -> None:
    """axe-core finds nothing on the page; shoot it (the first site's, when asked for)."""
    assert _axe(site.page) == [], f"{site.name}: {name}"
    if site is sites[0]:
        _shoot(site.page, name)


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
