"""Rails jobs read from Python give one answer on every surface: Delayed::Job and Sidekiq.

Real Ruby enqueues and runs the jobs (the scripts of ``tests/queues/rails/``); this process reads
them as a web app next to Rails would, with the job classes declared
(``immortus.declare("FailingJob", queue="delayed_job")``), declared with an inline strategy, or
read by the global strategy (``immortus.configure(strategy="delayed_job")``), and asks every
surface (:mod:`tests.surfaces`) about a created, started, finished, failed and unknown job.

Asked without a class, a Rails job is read by the global strategy when there is one; without
one it is the store's to answer, and no Python hook wrote there: so the class-less surfaces are
compared under the global styles only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import immortus
from immortus import State
from immortus.queues import delayed_job, sidekiq
from tests.queues.test_delayed_job import RAILS, rails_env, ruby
from tests.queues.test_delayed_job import TIMEOUT as RUBY_TIMEOUT
from tests.queues.test_delayed_job import wait_for as wait_for_ruby
from tests.queues.test_sidekiq import SidekiqWorker
from tests.queues.test_sidekiq import enqueue as enqueue_sidekiq
from tests.services import RedisServer
from tests.services.base import wait_until
from tests.support import pristine_immortus
from tests.surfaces import STABLE_KEYS, Style, answers, one_answer_in_every_style, reading_as

#: Databases of the session's redis-server: Sidekiq's, and the Delayed::Job reader's journal.
SIDEKIQ_DB = 14
JOURNAL_DB = 15
#: What a running job is compared on: what does not move while it runs.
RUNNING = (*STABLE_KEYS, "started_at")

Ask = Callable[[str, str, Style], dict[str, dict[str, Any]]]


def reader(queue: str) -> Ask:
    """Ask every surface about a job of the Rails queue ``queue`` (``"delayed_job"``)."""

    def ask(job_id: str, job_class: str, style: Style) -> dict[str, dict[str, Any]]:
        with reading_as(style, queue, job_class) as asked:
            return answers(job_id, asked, classless=style.startswith("global"))

    return ask


def redis_database(server: RedisServer, number: int) -> str:
    """The URL of database ``number`` of the session's redis-server, emptied."""
    server.ensure_running()
    url = server.url.rsplit("/", 1)[0] + f"/{number}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


@pytest.fixture
def reading(tmp_path: Path) -> Iterator[None]:
    """Default settings, a store of the test's own (what the class-less surfaces read)."""
    with pristine_immortus():
        immortus.configure(store=f"sqlite:///{tmp_path / 'immortus.sqlite3'}")
        yield


def status_of(job_id: str, job_class: str) -> State:
    return immortus.status(job_id, job_class).state


def wait_ended(job_id: str, job_class: str) -> None:
    ended = wait_until(lambda: immortus.status(job_id, job_class).completed, RUBY_TIMEOUT)
    assert ended, f"{job_class} {job_id} never ended"


# -- Delayed::Job over SQLite -----------------------------------------------------------------


@pytest.fixture
def rails_database(tmp_path: Path, redis_server: RedisServer) -> Iterator[tuple[str, Path]]:
    """Delayed::Job's table in an SQLite file, read with a journal; yields Ruby's URL, the flag."""
    path = tmp_path / "rails.sqlite3"
    journal = redis_database(redis_server, JOURNAL_DB)
    delayed_job.configure(f"sqlite:///{path}", journal=journal)
    try:
        yield f"sqlite3:{path}", tmp_path / "flag"
    finally:
        delayed_job.configure(None)


def test_delayed_job_reads_alike_everywhere(
    reading: None, rails_database: tuple[str, Path]
) -> None:
    ruby_url, flag = rails_database
    for job_class in ("BlockingJob", "FailingJob", "TrickyJob"):
        immortus.declare(job_class, queue="delayed_job")
    ask = reader("delayed_job")
    ids = json.loads(ruby("delayed_job_enqueue.rb", str(flag), database_url=ruby_url))

    unknown = one_answer_in_every_style(str(uuid.uuid4()), "FailingJob", ask)
    assert unknown["status"] == "unknown"
    created = one_answer_in_every_style(ids["fails"], "FailingJob", ask)
    assert (created["status"], created["certain"]) == ("created", True)

    ran = json.loads(ruby("delayed_job_work.rb", "fails:1", database_url=ruby_url))
    assert ran == {"fails": [0, 1]}
    failed = one_answer_in_every_style(ids["fails"], "FailingJob", ask)
    assert (failed["status"], failed["error"]["message"]) == ("failed", "boom at 60%")

    ruby_binary = shutil.which("ruby")
    assert ruby_binary is not None
    with subprocess.Popen(
        [ruby_binary, str(RAILS / "delayed_job_work.rb"), "blocking:1"],
        env=rails_env(ruby_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as worker:
        try:
            wait_for_ruby(
                lambda: status_of(ids["blocking"], "BlockingJob") is State.STARTED,
                "the blocking job to start",
            )
            running = one_answer_in_every_style(ids["blocking"], "BlockingJob", ask, RUNNING)
            assert running["status"] == "started"
        finally:
            flag.touch()
        out, err = worker.communicate(timeout=RUBY_TIMEOUT)
    assert json.loads(out) == {"blocking": [1, 0]}, err
    finished = one_answer_in_every_style(ids["blocking"], "BlockingJob", ask)
    assert (finished["status"], finished["certain"], finished["success"]) == (
        "finished",
        False,
        None,
    )


# -- Sidekiq ----------------------------------------------------------------------------------


@pytest.fixture
def sidekiq_url(redis_server: RedisServer) -> Iterator[str]:
    """Sidekiq's Redis: a database of its own, where strategies made without a URL read."""
    url = redis_database(redis_server, SIDEKIQ_DB)
    sidekiq.configure(url=url)
    try:
        yield url
    finally:
        sidekiq.configure()


def test_sidekiq_reads_alike_everywhere(reading: None, sidekiq_url: str, tmp_path: Path) -> None:
    flag = tmp_path / "release"
    for job_class in ("SidekiqBlockingJob", "SidekiqDoomedJob", "SidekiqQuickJob"):
        immortus.declare(job_class, queue="sidekiq")
    ask = reader("sidekiq")
    parked, blocking, doomed = enqueue_sidekiq(
        sidekiq_url,
        {"job": "SidekiqQuickJob", "queue": "surfaces-parked"},
        {"job": "SidekiqBlockingJob", "args": [str(flag)], "queue": "surfaces"},
        {"job": "SidekiqDoomedJob", "queue": "surfaces"},
    )
    unknown = one_answer_in_every_style(str(uuid.uuid4()), "SidekiqQuickJob", ask)
    assert unknown["status"] == "unknown"
    created = one_answer_in_every_style(parked.job_id, "SidekiqQuickJob", ask)
    assert (created["status"], created["certain"]) == ("created", True)

    worker = SidekiqWorker(sidekiq_url, tmp_path / "sidekiq.log", "surfaces")
    try:

        def busy() -> bool:
            found = immortus.status(blocking.job_id, "SidekiqBlockingJob")
            return found.meta.get("location") == "busy"  # written at Sidekiq's heartbeat

        assert wait_until(busy, RUBY_TIMEOUT, interval=0.1), "the blocking job never ran"
        running = one_answer_in_every_style(blocking.job_id, "SidekiqBlockingJob", ask, RUNNING)
        assert running["status"] == "started"
        flag.touch()
        wait_ended(blocking.job_id, "SidekiqBlockingJob")
        wait_ended(doomed.job_id, "SidekiqDoomedJob")
    finally:
        flag.touch()
        worker.stop()
    finished = one_answer_in_every_style(blocking.job_id, "SidekiqBlockingJob", ask)
    assert (finished["status"], finished["certain"], finished["success"]) == (
        "finished",
        False,
        None,
    )
    failed = one_answer_in_every_style(doomed.job_id, "SidekiqDoomedJob", ask)
    assert (failed["status"], failed["error"]["message"]) == ("failed", "doomed\nsecond line")
