from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

import immortus
from immortus import GroupStatus, JobError, JobStatus, State, TrackingStrategy, lifecycle
from immortus.exceptions import ConfigurationError, InvalidInput
from immortus.groups import current_group
from immortus.stores.memory import MemoryStore
from immortus.stores.spool import decode_event, encode_event
from immortus.transitions import Event, EventKind, apply

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Fixed(TrackingStrategy):
    def status(self, job_id: str) -> JobStatus:
        return JobStatus(job_id=job_id, state=State.STARTED)


# -- the group block ------------------------------------------------------------------------


def test_a_group_block_sets_the_group_of_its_thread_and_restores_it() -> None:
    assert current_group() is None
    with immortus.group("outer") as outer:
        assert (outer.group_id, current_group()) == ("outer", "outer")
        with immortus.group() as inner:
            assert len(inner.group_id) == 32
            assert current_group() == inner.group_id  # the innermost wins
        assert current_group() == "outer"
    assert current_group() is None


def test_fresh_group_ids_differ() -> None:
    assert immortus.group().group_id != immortus.group().group_id


@pytest.mark.parametrize("bad", ["", " x", "x\n", "x" * 256, 3])
def test_malformed_group_ids_are_refused_before_anything(bad: object) -> None:
    with pytest.raises(InvalidInput):
        immortus.group(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        immortus.group_status(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        Event(kind=EventKind.ENQUEUED, job_id="j", group_id=bad)  # type: ignore[arg-type]


def test_each_asyncio_task_sees_its_own_group() -> None:
    async def enqueue_in(group_id: str, seen: list[str | None]) -> None:
        with immortus.group(group_id):
            await asyncio.sleep(0)
            seen.append(current_group())

    async def main() -> list[str | None]:
        seen: list[str | None] = []
        await asyncio.gather(enqueue_in("a", seen), enqueue_in("b", seen))
        seen.append(current_group())
        return seen

    seen = asyncio.run(main())
    assert (sorted(map(str, seen[:2])), seen[2]) == (["a", "b"], None)


# -- the enqueue event carries the group ----------------------------------------------------


def test_jobs_enqueued_in_a_block_join_its_group(memory_store: MemoryStore) -> None:
    with immortus.group("batch-7"):
        lifecycle.job_enqueued("a")
        lifecycle.job_enqueued("b", "reports.build")
    lifecycle.job_enqueued("c")
    lifecycle.job_started("a")
    lifecycle.job_failed("b", ValueError("row 3 is empty"))
    assert immortus.status("a").group_id == "batch-7"
    assert immortus.status("c").group_id is None
    answer = immortus.group_status("batch-7")
    assert (answer.total, answer.completed, answer.state) == (2, 1, State.STARTED)
    assert answer.first_error == JobError(type="ValueError", message="row 3 is empty")


def test_the_first_group_is_kept_for_good() -> None:
    first = apply(None, Event(kind=EventKind.ENQUEUED, job_id="j", at=T0, group_id="one"))
    assert first is not None
    assert first.group_id == "one"
    again = Event(kind=EventKind.ENQUEUED, job_id="j", at=T0, group_id="two")
    assert apply(first, again) is None
    started = apply(first, Event(kind=EventKind.STARTED, job_id="j", at=T0, group_id="two"))
    assert started is not None
    assert started.group_id == "one"
    joined = apply(
        JobStatus(job_id="j", state=State.STARTED),
        Event(kind=EventKind.META, job_id="j", at=T0, meta={}, group_id="late"),
    )
    assert joined is not None
    assert joined.group_id == "late"


def test_a_job_body_names_its_group_only_when_it_has_one() -> None:
    assert "group_id" not in JobStatus(job_id="j", state=State.CREATED).to_dict()
    grouped = JobStatus(job_id="j", state=State.CREATED, group_id="g", meta={"group_id": "x"})
    assert grouped.to_dict()["group_id"] == "g"  # meta never overrides it


def test_the_spool_keeps_the_group_of_an_event() -> None:
    sent = Event(kind=EventKind.ENQUEUED, job_id="j", at=T0, group_id="g")
    assert decode_event(json.loads(json.dumps(encode_event(sent)))) == sent


# -- reading a group ------------------------------------------------------------------------


def test_an_unknown_group_reads_empty(memory_store: MemoryStore) -> None:
    answer = immortus.group_status("nobody")
    assert answer == GroupStatus.unknown("nobody")
    assert answer.state is State.UNKNOWN
    assert answer.to_dict() == {
        "group_id": "nobody",
        "status": "unknown",
        "total": 0,
        "completed": 0,
        "progress": None,
        "jobs": {},
        "error": None,
        "updated_at": None,
    }


def test_add_to_group_puts_a_job_from_elsewhere_in_a_group(memory_store: MemoryStore) -> None:
    lifecycle.job_started("elsewhere")
    immortus.add_to_group("g", "elsewhere")
    immortus.add_to_group("g", "not-yet-seen", "reports.build")
    immortus.add_to_group("other", "elsewhere")  # already in a group: stays in it
    answer = immortus.group_status("g")
    assert answer.jobs == {State.STARTED: 1, State.CREATED: 1}
    assert immortus.status("not-yet-seen").enqueued_at is None  # no time is made up
    assert immortus.group_status("other").total == 0


def test_the_async_twin_answers_the_same(memory_store: MemoryStore) -> None:
    with immortus.group("g"):
        lifecycle.job_enqueued("a")
    lifecycle.job_progress("a", immortus.Progress(current=1, total=4))
    answer = asyncio.run(immortus.agroup_status("g"))
    assert answer == immortus.group_status("g")
    assert answer.progress == 0.25
    assert answer.to_dict()["progress"] == {"fraction": 0.25, "percent": 25.0}


def test_without_a_store_a_group_read_is_a_configuration_error() -> None:
    immortus.configure(store=None, strategy=Fixed())
    with pytest.raises(ConfigurationError, match="keeps no store"):
        immortus.group_status("g")
    with pytest.raises(ConfigurationError, match="keeps no store"):
        immortus.add_to_group("g", "j")


# -- the aggregate answer -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jobs", "state"),
    [
        ({}, State.UNKNOWN),
        ({State.CREATED: 2}, State.CREATED),
        ({State.CREATED: 1, State.FINISHED: 1}, State.STARTED),
        ({State.RETRYING: 1}, State.STARTED),
        ({State.FINISHED: 2}, State.FINISHED),
        ({State.FINISHED: 1, State.CANCELLED: 1}, State.FINISHED),
        ({State.CANCELLED: 2}, State.CANCELLED),
        ({State.FINISHED: 1, State.LOST: 1}, State.FAILED),
        ({State.CANCELLED: 1, State.FAILED: 1}, State.FAILED),
    ],
)
def test_the_group_state_rule(jobs: dict[State, int], state: State) -> None:
    assert GroupStatus.of("g", jobs).state is state


def test_combined_progress_stays_within_its_bounds() -> None:
    assert GroupStatus.of("g", {State.STARTED: 2}, running=1.5).progress == 0.75
    assert GroupStatus.of("g", {State.STARTED: 1}, running=-1e-12).progress == 0.0  # float drift
    assert GroupStatus.of("g", {State.FINISHED: 3}, running=1e-9).progress == 1.0
    done = GroupStatus.of("g", {State.FINISHED: 1, State.STARTED: 1}, running=0.5)
    assert (done.progress, done.completed, done.total) == (0.75, 1, 2)
