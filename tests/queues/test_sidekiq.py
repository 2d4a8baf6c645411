"""SidekiqStrategy against a real Sidekiq 6.4 running real ActiveJob jobs on a real Redis.

Ruby enqueues (``rails/sidekiq_enqueue.rb``) and a ``sidekiq -r rails/sidekiq_jobs.rb`` process
runs the jobs; Python only reads. Debian's ``ruby-activejob`` and ``ruby-sidekiq`` are needed
(``make test`` installs them): without them these tests fail, they never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

import immortus
from immortus import JobStatus, State
from immortus.exceptions import InvalidInput, InvalidJobId, NotCancellable, StoreUnavailable
from immortus.finder import resolve_strategy
from immortus.queues import sidekiq
from immortus.queues.sidekiq import Location, SidekiqStrategy
from tests.services import RedisServer
from tests.services.base import free_port, tail, wait_until
from tests.support import pristine_immortus

RAILS = Path(__file__).with_name("rails")
DOCS = Path(__file__).parents[2] / "docs" / "queues"
JOBS_RB = RAILS / "sidekiq_jobs.rb"
ENQUEUE_RB = RAILS / "sidekiq_enqueue.rb"
INSTALL = "install Debian's ruby-activejob and ruby-sidekiq (`make test` does)"
#: Generous: a loaded 2-core machine, and Sidekiq writes busy jobs at its 5 s heartbeat.
TIMEOUT = 40.0
DB = 12  # the session's redis-server, a database of its own


@dataclass(frozen=True)
class Enqueued:
    job_id: str  # ActiveJob's id; the jid for a plain Sidekiq worker
    jid: str


def _sidekiq_binary() -> str:
    binary = shutil.which("sidekiq")
    if binary is None or shutil.which("ruby") is None:
        pytest.fail(f"ruby or sidekiq is not installed: {INSTALL}")
    return binary


def enqueue(url: str, *specs: dict[str, Any]) -> list[Enqueued]:
    """Enqueue jobs from Ruby, as the Rails app would; return their ids."""
    if shutil.which("ruby") is None:
        pytest.fail(f"ruby is not installed: {INSTALL}")
    result = subprocess.run(
        ["ruby", str(ENQUEUE_RB), json.dumps(specs)],
        env={**os.environ, "REDIS_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"enqueuing failed:\n{result.stderr[-3000:]}"
    return [Enqueued(ids["job_id"] or ids["jid"], ids["jid"]) for ids in json.loads(result.stdout)]


class SidekiqWorker:
    """A real ``sidekiq -r sidekiq_jobs.rb`` process on ``queues``, stopped with SIGTERM."""

    def __init__(self, url: str, log: Path, *queues: str) -> None:
        self.url, self.log = url, log
        args = [_sidekiq_binary(), "-r", str(JOBS_RB), "-c", "5", "-t", "3"]
        for queue in queues:
            args += ["-q", queue]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                args,
                env={**os.environ, "REDIS_URL": url},
                cwd=RAILS,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        if not wait_until(self._beating, TIMEOUT, interval=0.1):
            self.stop()
            pytest.fail(f"sidekiq did not start within {TIMEOUT}s:\n{tail(log)}")

    def _beating(self) -> bool:
        assert self.proc.poll() is None, f"sidekiq exited:\n{tail(self.log)}"
        with redis.Redis.from_url(self.url, decode_responses=True) as client:
            for identity in client.smembers("processes"):
                info = client.hget(identity, "info")
                if info and json.loads(info).get("pid") == self.proc.pid:
                    return True
        return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def url(redis_server: RedisServer) -> str:
    """A database of the session's redis-server for this module, emptied once."""
    redis_server.ensure_running()
    address = redis_server.url.rsplit("/", 1)[0] + f"/{DB}"
    with redis.Redis.from_url(address) as client:
        client.flushdb()
    return address


@pytest.fixture(scope="module")
def worker(url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidekiqWorker]:
    """One Sidekiq process for the module, working the ``default`` queue."""
    running = SidekiqWorker(url, tmp_path_factory.mktemp("sidekiq") / "worker.log", "default")
    yield running
    running.stop()


@pytest.fixture
def strategy(url: str) -> SidekiqStrategy:
    return SidekiqStrategy(url)


@pytest.fixture
def flag(tmp_path: Path) -> Iterator[Path]:
    """A file whose creation releases the blocking jobs waiting on it (also at teardown)."""
    path = tmp_path / "release"
    yield path
    path.touch()


@pytest.fixture
def settings() -> Iterator[None]:
    """Restore sidekiq.configure()'s defaults after the test."""
    yield
    sidekiq.configure()


def reach(strategy: SidekiqStrategy, job_id: str, state: State, **meta: Any) -> JobStatus:
    """Poll until the job is in ``state`` (and has ``meta``); return that status."""
    seen: list[JobStatus] = []

    def there() -> bool:
        seen.append(strategy.status(job_id))
        now = seen[-1]
        return now.state is state and all(now.meta.get(k) == v for k, v in meta.items())

    assert wait_until(there, TIMEOUT, interval=0.1), f"never {state} {meta}; last: {seen[-1]}"
    return seen[-1]


# -- against the real worker ------------------------------------------------------------------


def test_created_started_finished(url: str, tmp_path: Path, flag: Path) -> None:
    """One job through its life: queued, taken by a worker, running, gone."""
    (job,) = enqueue(url, {"job": "SidekiqBlockingJob", "args": [str(flag)], "queue": "life"})
    strategy = SidekiqStrategy(url)
    created = strategy.status(job.job_id)
    assert (created.state, created.job_class, created.certain) == (
        State.CREATED,
        "SidekiqBlockingJob",
        True,
    )
    assert created.meta["queue"] == "life"
    assert created.meta["jid"] == job.jid
    assert created.enqueued_at is not None
    lifecycle = SidekiqWorker(url, tmp_path / "life.log", "life")
    try:
        assert wait_until(lambda: strategy.status(job.job_id).state is not State.CREATED, TIMEOUT)
        # Between the fetch and the heartbeat the job is in no structure: still "started".
        assert strategy.status(job.job_id).state is State.STARTED
        busy = reach(strategy, job.job_id, State.STARTED, location="busy")
        assert busy.certain
        assert busy.attempts == 1
        assert busy.started_at is not None
        assert SidekiqStrategy(url).status(job.jid).state is State.STARTED  # by jid, fresh
        flag.touch()
        finished = reach(strategy, job.job_id, State.FINISHED)
        assert finished.certain is False  # gone from Redis: an inference
        assert finished.completed
        assert finished.success is None  # gone whether it succeeded or failed: cannot say
        body = finished.to_dict()
        assert (body["certain"], body["completed"], body["success"]) == (False, True, None)
        assert finished.job_class == "SidekiqBlockingJob"
    finally:
        lifecycle.stop()


def test_running_jobs_are_found_in_the_work_hash(
    url: str, worker: SidekiqWorker, strategy: SidekiqStrategy, flag: Path
) -> None:
    """Found by job_id and jid; a jid needing JSON escapes is found inside the work entry."""
    odd = 'an "odd"\\jid/é'
    active, plain = enqueue(
        url,
        {"job": "SidekiqBlockingJob", "args": [str(flag)]},
        {"job": "SidekiqBlockingWorker", "args": [str(flag)], "jid": odd},
    )
    assert plain.jid == odd
    loose = SidekiqStrategy(url, id_pattern=None)
    reach(strategy, active.job_id, State.STARTED, location="busy")
    reach(loose, odd, State.STARTED, location="busy")
    found = loose.find(odd)
    assert found is not None
    assert found.location is Location.BUSY
    assert found.payload["jid"] == odd
    assert found.work["queue"] == "default"
    statuses = strategy.status_many([active.job_id, active.jid])
    assert {status.state for status in statuses.values()} == {State.STARTED}


def test_failing_job_is_retrying(
    url: str, worker: SidekiqWorker, strategy: SidekiqStrategy
) -> None:
    (job,) = enqueue(url, {"job": "SidekiqFailingJob"})
    status = reach(strategy, job.job_id, State.RETRYING)
    assert status.error is not None
    assert (status.error.type, status.error.message) == ("ArgumentError", "always fails")
    assert status.attempts == 1
    assert status.meta["location"] == "retry"
    assert status.meta["run_at"] > status.to_dict()["enqueued_at"]  # the next try is later
    assert strategy.status(job.jid).state is State.RETRYING


def test_job_without_retries_left_is_failed(
    url: str, worker: SidekiqWorker, strategy: SidekiqStrategy
) -> None:
    (job,) = enqueue(url, {"job": "SidekiqDoomedJob"})
    status = reach(strategy, job.job_id, State.FAILED)
    assert status.completed
    assert status.success is False
    assert status.certain
    assert status.error is not None
    assert (status.error.type, status.error.message) == ("IOError", "doomed\nsecond line")
    assert status.finished_at is not None
    assert status.meta["location"] == "dead"


def test_activejob_retry_on_is_retrying(
    url: str, worker: SidekiqWorker, strategy: SidekiqStrategy
) -> None:
    """ActiveJob's retry_on re-enqueues the same job_id with a new jid into the schedule."""
    (job,) = enqueue(url, {"job": "SidekiqPatientJob"})
    status = reach(strategy, job.job_id, State.RETRYING, location="schedule")
    assert status.attempts == 1
    assert status.meta["jid"] != job.jid
    # That Sidekiq job ended (unknown if no poll saw it run): never read as a success.
    assert SidekiqStrategy(url, pickup_grace=0).status(job.jid).success is None


# -- without a worker: what the Rails app wrote -------------------------------------------------


def test_queued_and_scheduled_jobs_are_created(url: str, strategy: SidekiqStrategy) -> None:
    queued, scheduled = enqueue(
        url,
        {"job": "SidekiqQuickJob", "args": [1], "queue": "parked"},
        {"job": "SidekiqQuickJob", "args": [2], "queue": "parked", "wait": 3600},
    )
    for job_id in (queued.job_id, queued.jid):
        status = strategy.status(job_id)
        assert (status.state, status.meta["location"]) == (State.CREATED, "queue")
    status = strategy.status(scheduled.job_id)
    assert (status.state, status.meta["location"]) == (State.CREATED, "schedule")
    assert status.meta["run_at"] > status.to_dict()["enqueued_at"]
    body = strategy.status(scheduled.jid).to_dict()
    assert json.loads(json.dumps(body)) == body
    assert body["job_class"] == "SidekiqQuickJob"
    assert body["priority"] is None


def test_many_queues_small_chunks_and_moving_jobs(url: str) -> None:
    """Every job is found whatever the chunk size, also after newer pushes moved it."""
    specs = [{"job": "SidekiqQuickJob", "args": [n], "queue": f"q{n % 3}"} for n in range(30)]
    jobs = enqueue(url, *specs)
    strategy = SidekiqStrategy(url, scan_chunk=2)
    absent = str(uuid.uuid4())
    ids = [job.job_id for job in jobs] + [jobs[0].jid, absent]
    statuses = strategy.status_many(ids)
    assert list(statuses) == ids
    assert [statuses[job.job_id].meta["queue"] for job in jobs] == [f"q{n % 3}" for n in range(30)]
    assert statuses[absent] == JobStatus.unknown(absent)  # never seen: no evidence it existed
    enqueue(url, *specs[:9])  # newer jobs on the left: the known ones move right
    again = strategy.status_many(ids)
    assert [again[job.job_id].state for job in jobs] == [State.CREATED] * 30


def test_a_job_taken_from_its_queue_is_started_for_the_grace(url: str) -> None:
    """Sidekiq 6.4 writes a running job at its next heartbeat: until then it is nowhere."""
    (job,) = enqueue(url, {"job": "SidekiqQuickJob", "queue": "grace"})
    now = [100.0]
    strategy = SidekiqStrategy(url, pickup_grace=7.0, clock=lambda: now[0])
    assert strategy.status(job.job_id).state is State.CREATED
    with redis.Redis.from_url(url) as client:
        assert client.rpop("queue:grace") is not None  # what Sidekiq's fetch does
    taken = strategy.status(job.job_id)
    assert (taken.state, taken.certain) == (State.STARTED, False)
    now[0] += 6.9
    assert strategy.status(job.job_id).state is State.STARTED
    now[0] += 0.1
    assert strategy.status(job.job_id).state is State.FINISHED
    assert SidekiqStrategy(url, pickup_grace=0).status(job.job_id).state is State.FINISHED


def test_namespaced_sidekiq(url: str, settings: None) -> None:
    """redis-namespace prefixes every key (but not the queue names in the queues set)."""
    (job,) = enqueue(url, {"job": "SidekiqQuickJob", "queue": "spaced"})
    with redis.Redis.from_url(url) as client:
        client.rename("queue:spaced", "myapp:queue:spaced")
        client.srem("queues", "spaced")
        client.sadd("myapp:queues", "spaced")
    assert SidekiqStrategy(url).status(job.job_id).state is State.UNKNOWN
    assert SidekiqStrategy(url, namespace="myapp").status(job.job_id).state is State.CREATED
    sidekiq.configure(url=url, namespace="myapp")
    assert SidekiqStrategy().status(job.jid).state is State.CREATED


# -- ids ------------------------------------------------------------------------------------


def test_unknown_and_hostile_ids(url: str, strategy: SidekiqStrategy) -> None:
    (job,) = enqueue(url, {"job": "SidekiqQuickJob", "queue": "parked"})
    absent = str(uuid.uuid4())
    assert strategy.status(absent) == JobStatus.unknown(absent)  # never there: not a success
    hostile = ["*", "%", "_", '"', "\\", "a", job.jid[:-1], job.jid + "%", f'{job.jid}"', "[a-f]*"]
    for job_id in hostile:  # cannot be a jid nor an ActiveJob id: unknown, Redis not asked
        assert strategy.status(job_id) == JobStatus.unknown(job_id)
    loose = SidekiqStrategy(url, id_pattern=None)
    for job_id in hostile:  # asked, and never matched by pattern or substring
        assert loose.status(job_id).state is State.UNKNOWN
    assert loose.status(job.jid).state is State.CREATED
    with pytest.raises(InvalidJobId):
        strategy.status("")


def test_a_process_timeout_shorter_than_two_beats_is_refused(url: str) -> None:
    """A live process would be taken for dead, and its running jobs for lost."""
    with pytest.raises(InvalidInput, match="process_timeout"):
        SidekiqStrategy(url, process_timeout=9)


def test_unreachable_redis(url: str) -> None:
    down = SidekiqStrategy(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreUnavailable):
        down.status(str(uuid.uuid4()))
    assert down.status("not-an-id").state is State.UNKNOWN  # refused before any I/O


def test_made_without_arguments(url: str, settings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The finder builds it with no arguments: configure() or the environment say where."""
    (job,) = enqueue(url, {"job": "SidekiqQuickJob", "queue": "parked"})
    monkeypatch.setenv(sidekiq.URL_ENV, url)
    assert SidekiqStrategy().status(job.job_id).state is State.CREATED
    monkeypatch.delenv(sidekiq.URL_ENV)
    monkeypatch.setenv("REDIS_URL", url)  # Sidekiq's own variable, as the Rails app has it
    assert SidekiqStrategy().status(job.job_id).state is State.CREATED
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    with pristine_immortus():
        resolved = resolve_strategy("sidekiq")
        assert isinstance(resolved, SidekiqStrategy)
        sidekiq.configure(url=url)  # wins over the environment, also for one made before
        assert resolved.status(job.job_id).state is State.CREATED


def test_rails_jobs_cannot_be_cancelled_from_python() -> None:
    """Refused with the reason, before anything is read: the Redis here is not even there."""
    with pristine_immortus():
        sidekiq.configure(url=f"redis://127.0.0.1:{free_port()}/0")
        immortus.declare("ReportJob", queue="sidekiq")
        with pytest.raises(NotCancellable) as refused:
            immortus.cancel("b5c3a9e2d1f04a6b8c7d9e0f", "ReportJob")
    assert "Rails jobs are read from the Rails database or Sidekiq's Redis and cannot be " in (
        str(refused.value)
    )
    assert "cancelled from Python" in str(refused.value)


# -- honest endings: lost, gone, never there ----------------------------------------------------


def test_a_killed_sidekiq_process_loses_its_job(url: str, tmp_path: Path, flag: Path) -> None:
    """SIGKILL mid-job: Sidekiq's basic fetch drops the job; it reads lost, never a success."""
    (job,) = enqueue(url, {"job": "SidekiqBlockingJob", "args": [str(flag)], "queue": "doomed"})
    strategy = SidekiqStrategy(url, process_timeout=12)
    victim = SidekiqWorker(url, tmp_path / "doomed.log", "doomed")
    try:
        reach(strategy, job.job_id, State.STARTED, location="busy")
        victim.proc.kill()
        victim.proc.wait()
        lost = reach(strategy, job.job_id, State.LOST)
    finally:
        victim.stop()
    assert (lost.completed, lost.success) == (True, False)
    assert lost.error is not None
    assert lost.error.type == "WorkerLost"
    assert "stopped heart-beating" in lost.error.message
    assert lost.job_class == "SidekiqBlockingJob"
    assert lost.finished_at is not None
    elsewhere = SidekiqStrategy(url).status(job.job_id)  # another web process: the shared verdict
    assert (elsewhere.state, elsewhere.success) == (State.LOST, False)


def test_another_process_reads_a_finished_job_as_ended_uncertain(
    url: str, worker: SidekiqWorker, flag: Path
) -> None:
    """What one web process saw is shared: another reads the ended job, not "unknown"."""
    (job,) = enqueue(url, {"job": "SidekiqBlockingJob", "args": [str(flag)]})
    seer = SidekiqStrategy(url)
    reach(seer, job.job_id, State.STARTED)
    flag.touch()
    reach(seer, job.job_id, State.FINISHED)
    for job_id in (job.job_id, job.jid):
        other = SidekiqStrategy(url).status(job_id)
        assert (other.state, other.completed, other.success, other.certain) == (
            State.FINISHED,
            True,
            None,
            False,
        )
    alone = SidekiqStrategy(url, journal=False).status(job.job_id)  # shares nothing: no evidence
    assert alone == JobStatus.unknown(job.job_id)


def test_an_ended_job_is_answered_without_asking_redis_again(
    url: str, worker: SidekiqWorker, flag: Path, settings: None
) -> None:
    """A verdict is remembered: polling a finished job costs no look-up at all."""
    (job,) = enqueue(url, {"job": "SidekiqBlockingJob", "args": [str(flag)]})
    sidekiq.configure(url=url)
    strategy = SidekiqStrategy()
    reach(strategy, job.job_id, State.STARTED)
    flag.touch()
    ended = reach(strategy, job.job_id, State.FINISHED)
    sidekiq.configure(url=f"redis://127.0.0.1:{free_port()}/0")  # Redis is away from now on
    assert strategy.status(job.job_id) == ended
    assert strategy.status_many([job.job_id]) == {job.job_id: ended}
    with pytest.raises(StoreUnavailable):
        strategy.status(str(uuid.uuid4()))


# -- the exact mode: the Rails jobs write their events with the Ruby module of the docs ---------


def test_a_tracked_rails_job_reads_exactly_with_progress(
    url: str, worker: SidekiqWorker, tmp_path: Path, flag: Path, settings: None
) -> None:
    """Immortus::Tracked: created, started with progress, finished (certain); failed, exactly."""
    sidekiq.configure(url=url)
    with pristine_immortus():
        immortus.declare("SidekiqReportJob", queue="sidekiq")
        immortus.declare("SidekiqTrackedDoomedJob", queue="sidekiq")
        report, doomed = enqueue(
            url,
            {"job": "SidekiqReportJob", "args": [str(flag)], "queue": "reports"},
            {"job": "SidekiqTrackedDoomedJob"},
        )
        created = immortus.status(report.job_id, "SidekiqReportJob")
        assert (created.state, created.certain, created.progress) == (State.CREATED, True, None)
        assert created.enqueued_at is not None
        reports = SidekiqWorker(url, tmp_path / "reports.log", "reports")
        try:
            seen: list[JobStatus] = []

            def half_way() -> bool:
                seen.append(immortus.status(report.job_id, "SidekiqReportJob"))
                progress = seen[-1].progress
                return progress is not None and progress.current == 2

            assert wait_until(half_way, TIMEOUT, interval=0.05), seen[-1]
            running = seen[-1]
            assert (running.state, running.certain, running.attempts) == (State.STARTED, True, 1)
            assert running.progress is not None
            assert (running.progress.total, running.progress.message) == (4, "half way")
            assert running.started_at is not None
            flag.touch()

            def finished() -> bool:
                seen.append(immortus.status(report.job_id, "SidekiqReportJob"))
                return seen[-1].completed

            assert wait_until(finished, TIMEOUT, interval=0.05)
        finally:
            reports.stop()
        done = seen[-1]
        assert (done.state, done.certain, done.success) == (State.FINISHED, True, True)
        assert done.progress is not None
        assert done.progress.current == 4
        assert done.finished_at is not None
        assert done.to_dict()["success"] is True

        def failed() -> bool:
            seen.append(immortus.status(doomed.job_id, "SidekiqTrackedDoomedJob"))
            return seen[-1].completed

        assert wait_until(failed, TIMEOUT, interval=0.1)
        dead = seen[-1]
        assert (dead.state, dead.certain, dead.success) == (State.FAILED, True, False)
        assert dead.error is not None
        assert (dead.error.type, dead.error.message) == ("IOError", "tracked doom")


def test_the_ruby_module_is_the_one_the_docs_show() -> None:
    """The module these tests run is, verbatim, the one both Rails pages tell users to copy."""
    module = (RAILS / "immortus_tracked.rb").read_text()
    for page in ("sidekiq.md", "delayed_job.md"):
        text = (DOCS / page).read_text()
        assert f"```ruby\n{module}```" in text, f"docs/queues/{page} shows another module"
