"""DelayedJobStrategy against real Rails: ActiveJob enqueues, real Delayed::Job workers run.

Each backend class (SQLite, PostgreSQL) runs the Ruby scripts of ``tests/queues/rails/``:
``delayed_job_enqueue.rb`` enqueues one job of each kind through ActiveJob's ``delayed_job``
adapter, ``delayed_job_work.rb`` runs real ``Delayed::Worker`` s on chosen queues. The Python
strategy then reads the ``delayed_jobs`` table those wrote, as a web app next to Rails would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import psycopg
import pytest
import redis
import sqlalchemy as sa
from psycopg import sql

import immortus
from immortus.exceptions import ConfigurationError, InvalidJobId, StoreError, StoreUnavailable
from immortus.finder import resolve_strategy
from immortus.queues import delayed_job
from immortus.queues.delayed_job import DelayedJobStrategy, lookup_index_sql, parse_handler
from immortus.queues.rails.answers import conclude
from immortus.queues.rails.journal import Journal
from immortus.queues.rails.notes import Note, Notebook, Seen
from immortus.status import JobError, JobStatus, State
from tests.services import PostgresServer, RedisServer
from tests.services.base import free_port
from tests.support import pristine_immortus

RAILS = Path(__file__).with_name("rails")
#: The session redis-server's database these tests use for journals.
JOURNAL_DB = 13
#: Generous: Ruby loads Active Record in about a second, but CI machines are small and shared.
TIMEOUT = 120.0
#: Ids that must find nothing: LIKE wildcards, quotes, SQL, backslashes, the decoys that the
#: tricky job's arguments hold in job_id-like lines.
HOSTILE_IDS = (
    "%",
    "_",
    "%%",
    "%-%",
    "'",
    '"',
    "\\",
    "' OR '1'='1",
    "x'); DROP TABLE delayed_jobs; --",
    "job_id",
    "decoy-1",
    "decoy-2",
    "decoy-3",
)


def ruby(script: str, *args: str, database_url: str, journal: str = "") -> str:
    """Run a Ruby script of ``tests/queues/rails``; return its stdout, fail on an error."""
    ruby_binary = shutil.which("ruby")
    assert ruby_binary is not None, "ruby is missing: `make test` installs it"
    result = subprocess.run(
        [ruby_binary, str(RAILS / script), *args],
        env=rails_env(database_url, journal),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"ruby {script} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result.stdout


def rails_env(database_url: str, journal: str = "") -> dict[str, str]:
    """The environment of the Rails scripts: the database, and the journal's Redis if any."""
    return {**os.environ, "DATABASE_URL": database_url, "IMMORTUS_JOURNAL_URL": journal}


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` every 20 ms; fail after TIMEOUT seconds."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {TIMEOUT:g} s waiting for {what}")
        time.sleep(0.02)


@dataclass
class Rails:
    """A database holding Delayed::Job's table, the jobs enqueued in it, and what was seen."""

    sqlalchemy_url: str
    ruby_url: str
    flag: Path
    ids: dict[str, str]
    #: Statuses right after enqueueing, before any worker ran.
    enqueued: dict[str, JobStatus]
    #: Statuses after workers ran the fails (1 attempt), flaky and patient jobs once.
    worked: dict[str, JobStatus]

    def strategy(self) -> DelayedJobStrategy:
        return DelayedJobStrategy(self.sqlalchemy_url)


def set_up_rails(sqlalchemy_url: str, ruby_url: str, flag: Path) -> Rails:
    """Enqueue every job, snapshot, run the workers, snapshot again."""
    ids = json.loads(ruby("delayed_job_enqueue.rb", str(flag), database_url=ruby_url))
    strategy = DelayedJobStrategy(sqlalchemy_url)
    try:
        enqueued = {name: strategy.status(job_id) for name, job_id in ids.items()}
        ran = json.loads(
            ruby("delayed_job_work.rb", "fails:1", "flaky:5", "patient:5", database_url=ruby_url)
        )
        assert ran == {"fails": [0, 1], "flaky": [0, 1], "patient": [1, 0]}
        worked = {name: strategy.status(job_id) for name, job_id in ids.items()}
    finally:
        strategy.close()
    return Rails(sqlalchemy_url, ruby_url, flag, ids, enqueued, worked)


@pytest.fixture
def journal(redis_server: RedisServer) -> str:
    """A Redis database of its own for the readers' journal, emptied for the test."""
    redis_server.ensure_running()
    url = redis_server.url.rsplit("/", 1)[0] + f"/{JOURNAL_DB}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


class DelayedJobContract:
    """What every backend must show; subclasses provide the class-scoped ``rails`` fixture."""

    backend: ClassVar[str]

    def test_enqueued_jobs_are_created_with_their_details(self, rails: Rails) -> None:
        for name in rails.ids:
            status = rails.enqueued[name]
            assert status.state is State.CREATED, name
            assert status.certain
            assert status.attempts == 0
            assert status.error is None
        fails = rails.enqueued["fails"]
        assert fails.job_class == "FailingJob"
        assert fails.meta["queue"] == "fails"
        assert fails.meta["priority"] == 3
        assert isinstance(fails.meta["delayed_job_id"], int)
        assert fails.enqueued_at is not None
        assert fails.enqueued_at.utcoffset() is not None
        assert rails.enqueued["blocking"].meta["priority"] == 0
        scheduled = rails.enqueued["scheduled"]
        assert scheduled.job_class == "TrickyJob"
        run_at = str(scheduled.meta["run_at"])
        assert run_at.endswith("Z")
        assert run_at > str(fails.meta["run_at"])

    def test_a_job_failed_for_good_and_kept_is_failed_with_the_first_line(
        self, rails: Rails
    ) -> None:
        status = rails.worked["fails"]
        assert status.state is State.FAILED
        assert status.completed
        assert status.success is False
        assert status.error is not None
        assert status.error.message == "boom at 60%"
        assert status.attempts == 1
        assert status.finished_at is not None
        assert status.certain

    def test_a_job_rescheduled_by_delayed_job_is_retrying(self, rails: Rails) -> None:
        status = rails.worked["flaky"]
        assert status.state is State.RETRYING
        assert not status.completed
        assert status.error is not None
        assert status.error.message == "first attempt fails"
        assert status.attempts == 1
        assert str(status.meta["run_at"]) > str(rails.enqueued["flaky"].meta["run_at"])

    def test_a_job_re_enqueued_by_retry_on_is_retrying(self, rails: Rails) -> None:
        status = rails.worked["patient"]
        assert status.state is State.RETRYING
        assert status.attempts == 1
        assert status.job_class == "PatientJob"
        assert status.meta["delayed_job_id"] != rails.enqueued["patient"].meta["delayed_job_id"]

    def test_a_blocking_job_goes_started_then_finished_uncertain(
        self, rails: Rails, journal: str
    ) -> None:
        """Gone after it was seen: ended, success unknown; shared through the journal."""
        job_id = rails.ids["blocking"]
        strategy = DelayedJobStrategy(rails.sqlalchemy_url, journal=journal)
        ruby_binary = shutil.which("ruby")
        assert ruby_binary is not None
        with subprocess.Popen(  # the block's end closes the pipes and waits for the worker
            [ruby_binary, str(RAILS / "delayed_job_work.rb"), "blocking:1"],
            env={**os.environ, "DATABASE_URL": rails.ruby_url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as worker:
            try:

                def started_or_exited() -> bool:
                    if worker.poll() is not None:
                        _, err = worker.communicate()
                        pytest.fail(
                            f"the worker exited {worker.returncode} before the job started: {err}"
                        )
                    return strategy.status(job_id).state is State.STARTED

                wait_for(started_or_exited, "the blocking job to start")
                started = strategy.status(job_id)
                assert started.attempts == 1
                assert started.started_at is not None
                assert started.job_class == "BlockingJob"
                assert not started.completed
                rails.flag.touch()
                out, err = worker.communicate(timeout=TIMEOUT)
                assert worker.returncode == 0, err
                assert json.loads(out) == {"blocking": [1, 0]}
                finished = strategy.status(job_id)
                assert (finished.state, finished.completed, finished.certain) == (
                    State.FINISHED,
                    True,
                    False,
                )
                assert finished.success is None  # a failed job's row is deleted too
                body = finished.to_dict()
                assert (body["certain"], body["success"]) == (False, None)
                assert finished.job_class == "BlockingJob"
                other = DelayedJobStrategy(rails.sqlalchemy_url, journal=journal)
                assert other.status(job_id).to_dict() == body  # another web process
                alone = rails.strategy()  # no journal, never saw it: no evidence it existed
                assert alone.status(job_id) == JobStatus.unknown(job_id)
                other.close()
                alone.close()
            finally:
                if worker.poll() is None:
                    worker.kill()
                strategy.close()

    @pytest.mark.parametrize("job_id", HOSTILE_IDS)
    def test_hostile_and_unknown_ids_find_nothing(self, rails: Rails, job_id: str) -> None:
        strategy = rails.strategy()
        try:
            assert strategy.find(job_id) is None
            assert strategy.status(job_id) == JobStatus.unknown(job_id)  # never a success
        finally:
            strategy.close()

    def test_ids_that_almost_match_find_nothing(self, rails: Rails) -> None:
        real = rails.ids["tricky"]
        strategy = rails.strategy()
        try:
            for near in (real.upper(), real[:8], real + "x", f"{real[:-1]}%", f"{real[:-1]}_"):
                assert strategy.find(near) is None, near
            assert strategy.find(real) is not None
        finally:
            strategy.close()

    def test_status_many_answers_every_id_in_one_query(self, rails: Rails) -> None:
        strategy = rails.strategy()
        try:
            ids = [rails.ids["scheduled"], "%", rails.ids["fails"], rails.ids["scheduled"]]
            answers = strategy.status_many(ids)
            assert list(answers) == [rails.ids["scheduled"], "%", rails.ids["fails"]]
            assert answers[rails.ids["scheduled"]].state is State.CREATED
            assert answers[rails.ids["fails"]].state is State.FAILED
            assert answers["%"] == JobStatus.unknown("%")
            assert strategy.status_many([]) == {}
        finally:
            strategy.close()

    def test_real_handlers_parse_to_their_job_data(self, rails: Rails) -> None:
        engine = sa.create_engine(rails.sqlalchemy_url)
        try:
            with engine.connect() as conn:
                handlers = conn.execute(sa.text("SELECT handler FROM delayed_jobs")).scalars()
                parsed = [parse_handler(handler) for handler in handlers]
        finally:
            engine.dispose()
        found = {data.job_id: data for data in parsed if data is not None}
        kept = {name: job_id for name, job_id in rails.ids.items() if name != "blocking"}
        assert set(kept.values()) <= set(found)  # the blocking one is gone once it has run
        assert found[rails.ids["fails"]].priority == 3
        assert found[rails.ids["patient"]].executions == 1
        tricky = found[rails.ids["tricky"]]
        assert (tricky.job_class, tricky.queue_name, tricky.priority) == (
            "TrickyJob",
            "tricky",
            None,
        )

    def test_a_malformed_id_is_refused_before_any_query(self, rails: Rails) -> None:
        strategy = rails.strategy()
        try:
            for bad in ("", " padded", "x" * 256, "new\nline"):
                with pytest.raises(InvalidJobId):
                    strategy.status(bad)
        finally:
            strategy.close()


class TestSQLite(DelayedJobContract):
    backend = "sqlite"

    @pytest.fixture(scope="class")
    @classmethod
    def rails(cls, tmp_path_factory: pytest.TempPathFactory) -> Rails:
        directory = tmp_path_factory.mktemp("delayed_job_sqlite")
        path = directory / "rails.sqlite3"
        return set_up_rails(f"sqlite:///{path}", f"sqlite3:{path}", directory / "flag")

    def test_a_missing_table_is_a_store_error_not_unavailable(self, tmp_path: Path) -> None:
        strategy = DelayedJobStrategy(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
        with pytest.raises(StoreError) as caught:
            strategy.status("7f0c")
        assert not isinstance(caught.value, StoreUnavailable)
        assert strategy.lookup_index() is None  # no catalog to ask outside PostgreSQL


class TestPostgreSQL(DelayedJobContract):
    backend = "postgresql"

    @pytest.fixture(scope="class")
    @classmethod
    def rails(
        cls, postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[Rails]:
        postgres_server.ensure_running()
        database = "immortus_delayed_job"
        with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        url = sa.make_url(postgres_server.url).set(database=database)
        sqlalchemy_url = url.render_as_string(hide_password=False)
        ruby_url = url.set(drivername="postgresql").render_as_string(hide_password=False)
        flag = tmp_path_factory.mktemp("delayed_job_postgresql") / "flag"
        yield set_up_rails(sqlalchemy_url, ruby_url, flag)
        with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))

    @pytest.fixture
    def indexed(self, rails: Rails) -> Iterator[str]:
        """The look-up index, created as the docs say, dropped after the test."""
        engine = sa.create_engine(rails.sqlalchemy_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(lookup_index_sql()))
            yield "index_delayed_jobs_on_active_job_id"
            with engine.connect() as conn:
                conn.execute(sa.text("DROP INDEX index_delayed_jobs_on_active_job_id"))
        finally:
            engine.dispose()

    def test_the_index_is_detected_and_gives_the_same_answers(self, rails: Rails) -> None:
        strategy = DelayedJobStrategy(rails.sqlalchemy_url, index_check_interval=3600)
        engine = sa.create_engine(rails.sqlalchemy_url, isolation_level="AUTOCOMMIT")
        ids = [*rails.ids.values(), *HOSTILE_IDS, rails.ids["tricky"].upper()]
        try:
            assert strategy.lookup_index() is None
            scanned = strategy.status_many(ids)
            with engine.connect() as conn:
                conn.execute(sa.text(lookup_index_sql(index_name="ix_dj_job_id")))
            assert strategy.lookup_index() is None  # cached for index_check_interval
            assert strategy.lookup_index(refresh=True) == "ix_dj_job_id"
            assert strategy.status_many(ids) == scanned
            for name in ("scheduled", "fails", "flaky", "patient"):
                assert scanned[rails.ids[name]].state is not State.FINISHED
            with engine.connect() as conn:
                conn.execute(sa.text("DROP INDEX ix_dj_job_id"))
            assert strategy.lookup_index(refresh=True) is None
        finally:
            strategy.close()
            engine.dispose()

    def test_find_uses_the_index(self, rails: Rails, indexed: str) -> None:
        # The table is tiny: forbid sequential scans so that the planner takes the index, then
        # watch PostgreSQL's own count of scans of that index grow.
        options = {"options": "-c enable_seqscan=off"}
        engine = sa.create_engine(rails.sqlalchemy_url, connect_args=options)
        strategy = DelayedJobStrategy(engine)
        scans = sa.text(
            "SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes WHERE indexrelname = :ix"
        )

        def count() -> int:
            with engine.connect() as conn:
                return int(conn.execute(scans, {"ix": indexed}).scalar_one())

        try:
            before = count()
            assert strategy.lookup_index() == indexed
            assert strategy.find(rails.ids["fails"]) is not None
            wait_for(lambda: count() > before, "the index's scan count to grow")
        finally:
            strategy.close()
            engine.dispose()

    @pytest.mark.parametrize(
        "credentials", [("u:s3cret@", ""), ("u@", "password=s3cret&")], ids=["user", "query"]
    )
    def test_an_unreachable_database_is_unavailable_without_its_password(
        self, credentials: tuple[str, str]
    ) -> None:
        user, query = credentials
        url = f"postgresql+psycopg://{user}127.0.0.1:{free_port()}/db?{query}connect_timeout=2"
        strategy = DelayedJobStrategy(url)
        with pytest.raises(StoreUnavailable) as caught:
            strategy.status("7f0c")
        assert "s3cret" not in str(caught.value)
        assert "127.0.0.1" in str(caught.value)


class TestConfiguration:
    def test_without_arguments_it_reads_configure_then_the_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv(delayed_job.URL_ENV_VAR, raising=False)
        delayed_job.configure(None)
        with pytest.raises(ConfigurationError, match=delayed_job.URL_ENV_VAR):
            DelayedJobStrategy()
        monkeypatch.setenv(delayed_job.URL_ENV_VAR, f"sqlite:///{tmp_path / 'env.sqlite3'}")
        assert "env.sqlite3" in str(DelayedJobStrategy().engine.url)
        try:
            delayed_job.configure(f"sqlite:///{tmp_path / 'set.sqlite3'}", table_name="jobs")
            made = DelayedJobStrategy()
            assert "set.sqlite3" in str(made.engine.url)
            assert made.table.name == "jobs"
        finally:
            delayed_job.configure(None)

    def test_the_finder_makes_it_from_its_name(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(delayed_job.URL_ENV_VAR, f"sqlite:///{tmp_path / 'found.sqlite3'}")
        strategy = resolve_strategy("delayed_job")
        assert isinstance(strategy, DelayedJobStrategy)
        assert strategy.certain is False


class TestHandlerParsing:
    WRAPPER = "--- !ruby/object:ActiveJob::QueueAdapters::DelayedJobAdapter::JobWrapper\n"

    def handler(self, *lines: str) -> str:
        return self.WRAPPER + "job_data:\n" + "".join(f"  {line}\n" for line in lines)

    @pytest.mark.parametrize(
        ("written", "job_id"),
        [
            ("5e51670a-653e-4b3e-a53d-77055ebcaf5a", "5e51670a-653e-4b3e-a53d-77055ebcaf5a"),
            ("'123'", "123"),
            ("'it''s'", "it's"),
            ('"tab\\there \\"q\\" \\\\ \\u00e9"', 'tab\there "q" \\ é'),
        ],
    )
    def test_scalars_are_decoded_as_yaml_would(self, written: str, job_id: str) -> None:
        data = parse_handler(self.handler("job_class: Mail", f"job_id: {written}", "priority: 7"))
        assert data is not None
        assert (data.job_id, data.job_class, data.priority) == (job_id, "Mail", 7)

    @pytest.mark.parametrize(
        "handler",
        [
            "--- !ruby/object:Delayed::PerformableMethod\nobject: x\nmethod_name: :go\n",
            "not yaml at all",
            "",
            WRAPPER + "job_data:\n  job_class: Mail\n",  # no job_id
            WRAPPER + "job_data:\n  job_id: !ruby/object:Evil {}\n",  # a tag: never loaded
            WRAPPER + "job_data:\n  job_id: |\n    multi\n",  # a block scalar
            WRAPPER + "job_data:\n  job_id: 'unclosed\n    continued'\n",
            WRAPPER + "job_data:\n  arguments:\n  - job_id: nested\n",
        ],
    )
    def test_what_is_not_an_active_job_id_gives_none(self, handler: str) -> None:
        assert parse_handler(handler) is None

    def test_keys_after_job_data_are_not_read(self) -> None:
        handler = self.WRAPPER + "job_data:\n  job_class: A\nother:\n  job_id: stolen\n"
        assert parse_handler(handler) is None


class TestExactMode:
    """Rails jobs that include the docs' Immortus::Tracked module read exactly, with progress."""

    def test_a_tracked_rails_job_reads_exactly_with_progress(
        self, tmp_path: Path, journal: str
    ) -> None:
        path, flag = tmp_path / "rails.sqlite3", tmp_path / "flag"
        ruby_url = f"sqlite3:{path}"
        ids = json.loads(
            ruby("delayed_job_report.rb", str(flag), database_url=ruby_url, journal=journal)
        )
        delayed_job.configure(f"sqlite:///{path}", journal=journal)
        ruby_binary = shutil.which("ruby")
        assert ruby_binary is not None
        try:
            with pristine_immortus():
                immortus.declare("ReportJob", queue="delayed_job")
                immortus.declare("TrackedFailingJob", queue="delayed_job")
                created = immortus.status(ids["report"], "ReportJob")
                assert (created.state, created.certain) == (State.CREATED, True)
                assert created.enqueued_at is not None
                with subprocess.Popen(
                    [ruby_binary, str(RAILS / "delayed_job_work.rb"), "report:1"],
                    env=rails_env(ruby_url, journal),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ) as worker:
                    seen: list[JobStatus] = []

                    def half_way() -> bool:
                        seen.append(immortus.status(ids["report"], "ReportJob"))
                        progress = seen[-1].progress
                        return progress is not None and progress.current == 2

                    try:
                        wait_for(half_way, "the report job's progress")
                    finally:
                        flag.touch()
                    out, err = worker.communicate(timeout=TIMEOUT)
                    assert json.loads(out) == {"report": [1, 0]}, err
                running = seen[-1]
                assert (running.state, running.certain) == (State.STARTED, True)
                assert running.progress is not None
                assert (running.progress.total, running.progress.message) == (4, "half way")
                done = immortus.status(ids["report"], "ReportJob")
                assert (done.state, done.certain, done.success) == (State.FINISHED, True, True)
                assert done.progress is not None
                assert done.progress.current == 4
                assert done.job_class == "ReportJob"
                ran = ruby(
                    "delayed_job_work.rb", "tracked_fails:1", database_url=ruby_url, journal=journal
                )
                assert json.loads(ran) == {"tracked_fails": [0, 1]}
                failed = immortus.status(ids["fails"], "TrackedFailingJob")
                assert (failed.state, failed.certain, failed.success) == (State.FAILED, True, False)
                assert failed.error is not None
                assert (failed.error.type, failed.error.message) == (
                    "ArgumentError",
                    "tracked boom",
                )
        finally:
            delayed_job.configure(None)


class TestJournal:
    """What the Rails readers share and read in Redis, whatever wrote it."""

    def test_events_fold_by_the_stores_rules_and_malformed_ones_are_skipped(
        self, journal: str
    ) -> None:
        with redis.Redis.from_url(journal, decode_responses=True) as client:
            book = Journal(client)
            client.rpush(
                book.events_key("j1"),
                json.dumps({"kind": "started", "at": 2.0, "job_class": "ReportJob"}),
                "not json",
                "[]",
                json.dumps({"kind": "exploded", "at": 2.5}),
                json.dumps({"kind": "progress", "at": 3.0, "progress": {"current": -1}}),
                json.dumps({"kind": "enqueued", "at": 1.0}),  # late: never moves it backwards
                json.dumps({"kind": "progress", "at": 3.0, "progress": {"current": 3, "total": 4}}),
                json.dumps({"kind": "retrying", "at": 4.0, "error": {"type": "E", "message": "x"}}),
            )
            client.set(book.note_key("j2"), "{broken")
            entries = book.read(["j1", "j2", "j3"])
        assert set(entries) == {"j1"}  # a malformed note is no note
        recorded = entries["j1"].recorded
        assert recorded is not None
        assert (recorded.state, recorded.job_class, recorded.attempts) == (
            State.RETRYING,
            "ReportJob",
            1,
        )
        assert recorded.error == JobError(type="E", message="x")
        assert recorded.enqueued_at is not None

    def test_a_gone_job_whose_last_attempt_raised_is_failed(self) -> None:
        raised = JobStatus(
            job_id="j", state=State.RETRYING, error=JobError(type="E", message="boom")
        )
        answer, verdict = conclude("j", None, raised, lost_because=None)
        assert (answer.state, answer.success, answer.error, verdict) == (
            State.FAILED,
            False,
            raised.error,
            Seen.GONE,
        )
        seen_failed = Note(Seen.FAILED, 1.0, job_class="ReportJob")
        kept = conclude("j", seen_failed, None, lost_because=None)[0]
        assert (kept.state, kept.certain, kept.job_class) == (State.FAILED, False, "ReportJob")
        running = Note(Seen.RUNNING, 1.0, process="host:1")
        lost = conclude("j", running, None, lost_because="killed")[0]
        assert (lost.state, lost.success, lost.attempts) == (State.LOST, False, 1)
        assert lost.error == JobError(type="WorkerLost", message="killed")
        assert conclude("j", None, None, lost_because=None) == (JobStatus.unknown("j"), None)

    def test_a_process_keeps_a_bounded_notebook_whose_verdicts_stand(self) -> None:
        book = Notebook(capacity=2)
        assert book.put("a", Note(Seen.WAITING, 1.0))
        assert not book.put("a", Note(Seen.WAITING, 2.0))  # nothing new to share
        assert book.put("a", Note(Seen.GONE, 3.0))
        assert not book.put("a", Note(Seen.RUNNING, 4.0))  # a verdict is never replaced
        book.put("b", Note(Seen.WAITING, 1.0))
        book.put("c", Note(Seen.WAITING, 1.0))
        assert book.get("a") is None  # the oldest went
        assert Note.loads(Note(Seen.LOST, 5.0, "p", "C", "why").dumps()) == Note(
            Seen.LOST, 5.0, "p", "C", "why"
        )
