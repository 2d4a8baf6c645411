"""One list of lifecycle events drives callbacks, lifecycle and the store strategy; shared
records cannot be changed by one of their readers."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import immortus
from immortus import Progress, State, TrackingStrategy, lifecycle
from immortus.exceptions import InvalidInput
from immortus.grouping import GroupStatus
from immortus.status import JobStatus, ReadOnlyDict
from immortus.store_strategy import StoreStrategy
from immortus.stores.base import Store
from immortus.stores.memory import MemoryStore
from immortus.strategy import CALLBACKS
from immortus.transitions import Event, EventKind

JOB_CLASS = "reports.build"
NAIVE = datetime(2026, 1, 1)  # an Event refuses it: a callback that builds one raises


class Plain(TrackingStrategy):
    """A strategy with no callback and no ``on_event``."""

    def completed(self, job_id: str) -> bool:
        return False


class Sink(Plain):
    """Overrides ``on_event`` alone."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_event(self, event: Event) -> None:
        self.events.append(event)


def test_the_callbacks_are_the_event_kinds_in_the_order_a_job_meets_them() -> None:
    assert tuple(kind.callback for kind in EventKind) == CALLBACKS
    assert EventKind.FINISHED.callback == "job_finished"
    assert next(iter(EventKind)) is EventKind.ENQUEUED
    lifecycle_functions = {name for name in lifecycle.__all__ if name.startswith("job_")}
    protocol = {name for name in dir(TrackingStrategy) if name.startswith("job_")}
    assert set(CALLBACKS) == lifecycle_functions == protocol
    assert len(CALLBACKS) == len(EventKind) == 9


def test_a_strategy_overriding_on_event_alone_receives_every_kind() -> None:
    sink = Sink()
    immortus.configure(strategy=sink)
    lease = datetime.now(UTC) + timedelta(minutes=1)
    with immortus.group("batch-1"):
        assert lifecycle.job_enqueued("j", JOB_CLASS)
    assert lifecycle.job_started("j", JOB_CLASS, attempt=1, alive_until=lease)
    assert lifecycle.job_progress("j", Progress(current=1, total=2), JOB_CLASS, attempt=1)
    assert lifecycle.job_retrying("j", ValueError("bad"), JOB_CLASS, attempt=1, retry_at=lease)
    assert lifecycle.job_finished("j", JOB_CLASS, attempt=2)
    assert lifecycle.job_failed("j", ValueError("worse"), JOB_CLASS, attempt=2)
    assert lifecycle.job_cancelled("j", JOB_CLASS)
    assert lifecycle.job_lost("j", None, JOB_CLASS, attempt=2)
    assert lifecycle.job_meta("j", {"rows": 3}, JOB_CLASS)

    events = sink.events
    assert [event.kind for event in events] == list(EventKind)
    assert {(event.job_id, event.job_class) for event in events} == {("j", JOB_CLASS)}
    by_kind = {event.kind: event for event in events}
    assert by_kind[EventKind.ENQUEUED].group_id == "batch-1"
    assert by_kind[EventKind.STARTED].alive_until == lease
    assert by_kind[EventKind.PROGRESS].progress == Progress(current=1, total=2)
    retrying = by_kind[EventKind.RETRYING]
    assert (retrying.error and retrying.error.message, retrying.retry_at) == ("bad", lease)
    assert [event.attempt for event in events] == [None, 1, 1, 1, 2, 2, None, 2, None]
    assert by_kind[EventKind.META].meta == {"rows": 3}


def test_a_plain_strategy_builds_no_event() -> None:
    plain, sink = Plain(), Sink()
    for name in CALLBACKS:
        getattr(plain, name)("j", at=NAIVE)  # nothing built, so nothing refused
        with pytest.raises(InvalidInput, match="timezone-aware"):
            getattr(sink, name)("j", at=NAIVE)
    assert sink.events == []


def test_a_callback_refuses_an_argument_past_its_payload() -> None:
    with pytest.raises(TypeError, match="job_finished"):
        Sink().job_finished("j", "extra")


def test_notify_takes_a_kind_or_a_callback_name() -> None:
    sink = Sink()
    assert lifecycle.notify(sink, EventKind.FINISHED, "j", job_class=JOB_CLASS)
    assert lifecycle.notify(sink, "job_failed", "j", None, attempt=3)
    assert [(event.kind, event.attempt) for event in sink.events] == [
        (EventKind.FINISHED, None),
        (EventKind.FAILED, 3),
    ]


class Audited(StoreStrategy):
    """A store strategy subclass that watches starts and still records them."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.started: list[str] = []

    def job_started(self, job_id: str, **details: Any) -> None:
        self.started.append(job_id)
        super().job_started(job_id, **details)

    def job_finished(self, job_id: str) -> None:  # the minimal signature
        super().job_finished(job_id)


def test_a_store_strategy_subclass_calling_super_still_records() -> None:
    store = MemoryStore()
    audited = Audited(store)
    immortus.configure(strategy=audited)
    assert lifecycle.job_started("j", JOB_CLASS, attempt=2)
    assert audited.started == ["j"]
    started = store.get("j")
    assert started is not None
    assert (started.state, started.job_class, started.attempts) == (
        State.STARTED,
        JOB_CLASS,
        2,
    )
    assert lifecycle.job_finished("j", JOB_CLASS)
    finished = store.get("j")
    assert finished is not None
    assert finished.state is State.FINISHED


# -- immutable shared records ---------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """The configured store: one that hands out its own record, one with a decoding cache."""
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    immortus.configure(store=url)
    configured = immortus.config.get_store()
    assert configured is not None
    return configured


def test_a_status_read_twice_cannot_be_changed_through_the_first(store: Store) -> None:
    lifecycle.job_started("j")
    lifecycle.job_meta("j", {"rows": 3})
    first = immortus.status("j")
    meta: Any = first.meta
    with pytest.raises(TypeError, match="read-only"):
        meta["rows"] = 4
    for change in (
        lambda: meta.update(rows=4),
        lambda: meta.pop("rows"),
        lambda: meta.setdefault("more", 1),
        meta.clear,
        meta.popitem,
        lambda: meta.__delitem__("rows"),
        lambda: meta.__ior__({"rows": 4}),
    ):
        with pytest.raises(TypeError, match="read-only"):
            change()
    assert immortus.status("j").meta == {"rows": 3}
    assert store.get("j") == first


def test_read_only_meta_behaves_as_the_dict_it_was_made_from() -> None:
    status = JobStatus(job_id="j", state=State.STARTED, meta={"rows": 3, "tags": ["a"]})
    assert isinstance(status.meta, ReadOnlyDict)
    assert status.meta == {"rows": 3, "tags": ["a"]}
    assert json.dumps(status.meta) == json.dumps({"rows": 3, "tags": ["a"]})
    pickled = pickle.loads(pickle.dumps(status))  # noqa: S301 - our own bytes
    for copied in (pickled, copy.deepcopy(status), copy.copy(status)):
        assert copied == status
        assert isinstance(copied.meta, ReadOnlyDict)
    changed = dict(status.meta) | {"rows": 4}
    replaced = dataclasses.replace(status, meta=changed)
    assert isinstance(replaced.meta, ReadOnlyDict)
    assert replaced.to_dict()["rows"] == 4
    assert status.meta["rows"] == 3


def test_event_meta_and_group_counts_are_read_only() -> None:
    given = {"rows": 3}
    event = Event(kind=EventKind.META, job_id="j", meta=given)
    given["rows"] = 4  # the caller's dict is not the event's
    assert event.meta == {"rows": 3}
    group = GroupStatus.of("g", {State.STARTED: 2})
    for mapping in (event.meta, group.jobs):
        with pytest.raises(TypeError, match="read-only"):
            mapping.clear()  # type: ignore[union-attr]
