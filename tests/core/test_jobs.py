from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import warnings
from functools import partial

import pytest

import immortus
from immortus import State, jobs, lifecycle, registry
from immortus.exceptions import ConfigurationError, InvalidInput, InvalidProgress
from immortus.jobs import job_class_of, start_attempt
from immortus.status import JobStatus
from immortus.stores.memory import MemoryStore
from immortus.transitions import Event
from tests.queues.scenarios import wait_for


@immortus.track
def module_level_job() -> str:
    return "ran"


def test_track_registers_the_job_under_its_dotted_name_and_returns_it_unchanged() -> None:
    assert module_level_job() == "ran"
    assert job_class_of(module_level_job) == "tests.core.test_jobs.module_level_job"
    assert registry.lookup("tests.core.test_jobs.module_level_job") is not None


def test_track_with_options() -> None:
    @immortus.track(name="reports.build", strategy="store", queue="rq")
    def build() -> None: ...

    job = registry.lookup("reports.build")
    assert job is not None
    assert (job.strategy, job.queue, job.function) == ("store", "rq", build)
    assert job_class_of(build) == "reports.build"


def test_two_different_jobs_cannot_share_a_name_but_redeclaring_one_can() -> None:
    def declare() -> None:
        @immortus.track(name="same.name")
        def first() -> None: ...

    declare()
    declare()  # the same function declared again (a re-import) is fine
    with pytest.raises(ConfigurationError, match="already tracked"):

        @immortus.track(name="same.name", strategy="store")
        def second() -> None: ...


def test_progress_and_meta_outside_a_job_record_nothing_and_say_why_once(
    memory_store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="immortus"):
        immortus.progress(1, 2)  # a worker without immortus's hooks: the job must run on
        immortus.update_meta(x=1)
        immortus.progress(2, 2)
    assert immortus.current_job() is None
    assert memory_store.list_jobs().jobs == ()
    [warning] = [record.getMessage() for record in caplog.records]
    assert warning.startswith("immortus.progress() was called outside a tracked job")
    assert "'immortus.queues.django_tasks' to INSTALLED_APPS" in warning
    assert "immortus.queues.celery.install(app)" in warning


def test_bad_progress_or_meta_is_refused_inside_a_job_or_not() -> None:
    with pytest.raises(InvalidProgress):
        immortus.progress(-1)
    with pytest.raises(InvalidInput):
        immortus.update_meta(when=object())


def test_a_job_reports_its_whole_life(memory_store: MemoryStore) -> None:
    lifecycle.job_enqueued("j1", "reports.build")
    assert immortus.status("j1").state is State.CREATED
    with immortus.running("j1", "reports.build") as job:
        assert immortus.current_job() is job
        immortus.progress(1, 3, "one")
        assert immortus.status("j1").state is State.STARTED
        immortus.update_meta(rows=3)
    status = immortus.status("j1")
    assert status.state is State.FINISHED
    assert status.to_dict()["rows"] == 3
    assert status.progress is not None
    assert status.progress.message == "one"
    assert immortus.current_job() is None


def test_failure_retry_and_cancel(memory_store: MemoryStore) -> None:
    with pytest.raises(TimeoutError), immortus.running("r", attempt=1, final_attempt=False):
        raise TimeoutError("slow upstream")
    retrying = immortus.status("r")
    assert retrying.state is State.RETRYING
    assert retrying.error is not None
    assert retrying.error.type == "TimeoutError"
    with immortus.running("r", attempt=2):
        pass
    assert (immortus.status("r").state, immortus.status("r").attempts) == (State.FINISHED, 2)

    with pytest.raises(KeyError), immortus.running("f"):
        raise KeyError("gone")
    assert immortus.status("f").state is State.FAILED

    with pytest.raises(KeyboardInterrupt), immortus.running("c"):
        raise KeyboardInterrupt
    assert immortus.status("c").state is State.CANCELLED


def test_invalid_progress_is_the_callers_error(memory_store: MemoryStore) -> None:
    with immortus.running("j"):
        with pytest.raises(InvalidProgress):
            immortus.progress(-1)
        with pytest.raises(InvalidInput):
            immortus.update_meta(when=object())


def test_progress_is_coalesced_and_the_latest_written_at_the_end() -> None:
    store = MemoryStore()
    immortus.configure(store=store, progress_interval=3600)
    written: list[float] = []
    original = store.record

    def spy(event: Event) -> JobStatus | None:
        if event.progress is not None:
            written.append(event.progress.current)
        return original(event)

    store.record = spy  # type: ignore[method-assign]
    with immortus.running("j"):
        for step in range(1, 50):
            immortus.progress(step, 100)
        assert written == [1]
        immortus.progress(100, 100)  # reaching the total is always written
        immortus.progress(100, 100, "again")
    assert written == [1, 100, 100]
    with immortus.running("k"):
        immortus.progress(1, 10)
        immortus.progress(7, 10, "latest")
    assert written[-2:] == [1, 7]
    progress = immortus.status("k").progress
    assert progress is not None
    assert progress.message == "latest"


def test_each_thread_and_task_sees_its_own_job(memory_store: MemoryStore) -> None:
    seen: dict[str, str | None] = {}
    barrier = threading.Barrier(3)

    def worker(job_id: str) -> None:
        with immortus.running(job_id):
            barrier.wait()
            job = immortus.current_job()
            seen[job_id] = None if job is None else job.job_id
            immortus.progress(1, 1)

    threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"t0": "t0", "t1": "t1", "t2": "t2"}

    async def task(job_id: str) -> str | None:
        with immortus.running(job_id):
            await asyncio.sleep(0.01)
            job = immortus.current_job()
            return None if job is None else job.job_id

    async def main() -> list[str | None]:
        return await asyncio.gather(*(task(f"a{i}") for i in range(5)))

    assert asyncio.run(main()) == [f"a{i}" for i in range(5)]
    assert {immortus.status(f"a{i}").state for i in range(5)} == {State.FINISHED}


def test_cancelled_asyncio_task_reports_cancelled(memory_store: MemoryStore) -> None:
    async def long_job() -> None:
        with immortus.running("long"):
            await asyncio.sleep(60)

    async def main() -> None:
        task = asyncio.create_task(long_job())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert immortus.status("long").state is State.CANCELLED


class DownStore(MemoryStore):
    """Fault injection: a store whose every write fails as if its server were gone."""

    def record(self, event: Event) -> JobStatus | None:
        raise immortus.StoreUnavailable("redis://127.0.0.1:6379 refused the connection")


def test_a_job_runs_on_when_the_store_is_down(caplog: pytest.LogCaptureFixture) -> None:
    # The outbox off (it would hold the events): each failed write is logged, and lost.
    immortus.configure(store=DownStore(), progress_interval=0, outbox_limit=0)
    result = []
    with caplog.at_level(logging.ERROR, logger="immortus"):
        assert lifecycle.job_enqueued("j", "a.b") is False
        with immortus.running("j", "a.b"):
            immortus.progress(1, 2)
            immortus.update_meta(x=1)
            result.append("done")
    assert result == ["done"]
    assert len(caplog.records) == 5  # enqueued, started, progress, meta, finished
    assert all("refused the connection" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_a_job_runs_on_when_the_job_id_is_unusable(caplog: pytest.LogCaptureFixture) -> None:
    immortus.configure(store="memory://")
    with caplog.at_level(logging.ERROR, logger="immortus"), immortus.running("x" * 300):
        pass
    assert "cannot track job_started" in caplog.records[0].getMessage()


class StopJob(Exception):
    """A queue's own "stop this job" exception."""


def test_running_reports_a_queues_stop_exception_as_cancelled(memory_store: MemoryStore) -> None:
    def stopped_at_a_quarter() -> None:
        with immortus.running("s", cancel_on=(StopJob,)):
            immortus.progress(1, 4)
            raise StopJob

    with pytest.raises(StopJob):
        stopped_at_a_quarter()
    stopped = immortus.status("s")
    assert (stopped.state, stopped.error) == (State.CANCELLED, None)
    with pytest.raises(StopJob), immortus.running("f"):
        raise StopJob  # not declared: an ordinary failure
    assert immortus.status("f").state is State.FAILED


def test_an_attempt_begun_and_ended_by_separate_hooks(memory_store: MemoryStore) -> None:
    run = start_attempt("a", "reports.build", attempt=1)
    assert immortus.current_job() is run.job
    immortus.progress(2, 4, "half")  # the job's own code, between the two hooks
    assert immortus.status("a").state is State.STARTED
    run.fail(TimeoutError("slow"), final_attempt=False)
    assert immortus.current_job() is None
    retrying = immortus.status("a")
    assert retrying.state is State.RETRYING
    assert retrying.progress is not None
    assert retrying.progress.current == 2

    second = start_attempt("a", "reports.build", attempt=2)
    second.finish()
    second.fail(ValueError("late"))  # a second ending reports nothing
    second.cancel()
    done = immortus.status("a")
    assert (done.state, done.attempts, done.error) == (State.FINISHED, 2, None)

    handed_on = start_attempt("h")
    immortus.progress(1, 2)
    handed_on.leave()
    assert immortus.current_job() is None
    left = immortus.status("h")
    assert (left.state, left.progress is not None) == (State.STARTED, True)

    third = start_attempt("c")
    third.cancel()
    assert immortus.status("c").state is State.CANCELLED
    failed = start_attempt("f")
    failed.fail(KeyError("gone"))
    assert immortus.status("f").state is State.FAILED


def test_an_attempt_may_end_in_another_context_than_it_began(memory_store: MemoryStore) -> None:
    run = start_attempt("x")
    ended: list[BaseException] = []

    def end_elsewhere() -> None:
        try:
            run.finish()
        except BaseException as exc:  # noqa: BLE001 - the test reports anything raised
            ended.append(exc)

    other = threading.Thread(target=end_elsewhere)
    other.start()
    other.join()
    assert ended == []
    assert immortus.status("x").state is State.FINISHED
    assert immortus.current_job() is run.job  # this thread's context was not the one reset
    immortus.jobs._current.set(None)


def test_pending_progress_is_written_when_an_attempt_ends() -> None:
    store = MemoryStore()
    immortus.configure(store=store, progress_interval=3600)
    run = start_attempt("p")
    immortus.progress(1, 10)  # the first write goes through at once
    immortus.progress(7, 10)  # coalesced: held back by the interval
    progress = immortus.status("p").progress
    assert progress is not None
    assert progress.current == 1
    run.finish()
    progress = immortus.status("p").progress
    assert progress is not None
    assert progress.current == 7


def test_a_callable_without_a_name_needs_one_given() -> None:
    class TaskObject:  # what a queue's decorator returns: an instance, not a function
        def __call__(self) -> None: ...

    task = TaskObject()
    with pytest.raises(ConfigurationError, match=r"track\(name=\.\.\.\)"):
        immortus.track(task)
    assert immortus.track(name="named.task")(task) is task


# -- held progress lands without another call ---------------------------------------------------


def _read_progress(job_id: str) -> float | None:
    progress = immortus.status(job_id).progress
    return None if progress is None else progress.current


def _reads(job_id: str, current: float) -> bool:
    return _read_progress(job_id) == current


def test_held_progress_reaches_the_store_while_the_job_blocks() -> None:
    immortus.configure(store=MemoryStore(), progress_interval=1.0)
    release = threading.Event()
    seen_inside: list[float | None] = []

    def job() -> None:
        with immortus.running("blocked"):
            immortus.progress(1, 4)  # written at once
            immortus.progress(2, 4)  # inside the interval: held
            seen_inside.append(_read_progress("blocked"))
            release.wait(timeout=60)

    worker = threading.Thread(target=job)
    worker.start()
    try:
        wait_for(partial(_reads, "blocked", 2), timeout=30, what="the held 2/4")
        assert not release.is_set()  # it landed while the job still blocked
    finally:
        release.set()
        worker.join()
    assert seen_inside == [1]
    assert immortus.status("blocked").state is State.FINISHED


def test_an_ending_job_cancels_its_flush_and_writes_what_it_holds() -> None:
    immortus.configure(store=MemoryStore(), progress_interval=3600)
    with immortus.running("ends"):
        immortus.progress(1, 4)
        immortus.progress(3, 4)
        assert len(jobs._flusher._due) == 1
    assert jobs._flusher._due == {}
    assert _read_progress("ends") == 3


def test_the_flusher_writes_nothing_when_nothing_is_held() -> None:
    store = MemoryStore()
    immortus.configure(store=store, progress_interval=0.05)
    kinds: list[float | None] = []
    original = store.record

    def spy(event: Event) -> JobStatus | None:
        if event.progress is not None:
            kinds.append(event.progress.current)
        return original(event)

    store.record = spy  # type: ignore[method-assign]
    with immortus.running("done-early"):
        immortus.progress(1, 4)
        immortus.progress(2, 4)  # held, flush scheduled
        immortus.progress(4, 4)  # reaches the total: written at once, nothing held any more
        wait_for(lambda: not jobs._flusher._due, timeout=30, what="the flusher's turn")
        run = immortus.current_job()
        assert run is not None
        with run._writing:  # a flush in flight holds this lock: wait for it to end
            pass
        assert kinds == [1, 4]
    assert kinds == [1, 4]


def test_one_flusher_thread_serves_every_job_of_the_process() -> None:
    immortus.configure(store=MemoryStore(), progress_interval=0.5)
    release = threading.Event()

    def job(job_id: str) -> None:
        with immortus.running(job_id):
            immortus.progress(1, 4)
            immortus.progress(2, 4)
            release.wait(timeout=60)

    workers = [threading.Thread(target=job, args=(f"many-{n}",)) for n in range(3)]
    for worker in workers:
        worker.start()
    try:
        for job_id in [f"many-{n}" for n in range(3)]:
            wait_for(partial(_reads, job_id, 2), timeout=30, what=f"the held 2/4 of {job_id}")
    finally:
        release.set()
        for worker in workers:
            worker.join()
    flushers = [t for t in threading.enumerate() if t.name == "immortus-progress"]
    assert len(flushers) == 1
    assert flushers[0].daemon


def test_a_forked_child_flushes_with_its_own_thread() -> None:
    immortus.configure(store=MemoryStore(), progress_interval=3600)
    with immortus.running("parent"):  # the parent's flusher runs and holds an entry
        immortus.progress(1, 4)
        immortus.progress(2, 4)
        assert jobs._flusher._thread is not None
        with warnings.catch_warnings():
            # Forking a threaded process is what RQ's work horse and prefork pools do.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: report through the exit code, never return into pytest
            code = 1
            try:
                code = _child_flushes_its_own()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "see _child_flushes_its_own for the code"
    assert _read_progress("parent") == 2


def _child_flushes_its_own() -> int:
    if jobs._flusher._due or jobs._flusher._thread is not None:
        return 2  # it inherited the parent's entries or thread
    immortus.jobs._current.set(None)
    immortus.configure(store=MemoryStore(), progress_interval=0.05)
    with immortus.running("child"):
        immortus.progress(1, 4)
        immortus.progress(2, 4)
        deadline = time.monotonic() + 30
        while _read_progress("child") != 2:
            if time.monotonic() > deadline:
                return 3
            time.sleep(0.01)
    return 0
