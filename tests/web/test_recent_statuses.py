"""Verify answering from the statuses it read lately: never staler than its stated bounds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import immortus
from immortus import Progress, config, lifecycle
from immortus.stores.base import Changes
from immortus.web.core import Verifier
from immortus.web.recent import RecentStatuses
from tests.web.conftest import FaultyStore

JOB_CLASS = "reports.recent"
STALENESS = 0.05
SECRET = "s3cret"  # noqa: S105  # a test key


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def tracked() -> None:
    immortus.track(name=JOB_CLASS)(lambda: None)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def caching_verifier(clock: Clock, **options: Any) -> Verifier:
    """A verifier with a secret key whose recent statuses follow ``clock``."""
    verifier = Verifier(secret_key=SECRET, answer_staleness=STALENESS)
    verifier.recent = RecentStatuses(STALENESS, clock=clock, **options)
    return verifier


def ask(verifier: Verifier, job_id: str, job_class: str | None = JOB_CLASS) -> dict[str, Any]:
    token = verifier.token_for(job_id, job_class)
    answer = verifier.verify(job_id, job_class, token)
    assert answer.status == 200, answer.content()
    body: dict[str, Any] = json.loads(answer.content())
    return body


def current(body: dict[str, Any]) -> object:
    return body["progress"]["current"] if body["progress"] else None


def start(job_id: str, at: int = 1) -> None:
    lifecycle.job_enqueued(job_id, JOB_CLASS)
    lifecycle.job_started(job_id, JOB_CLASS)
    lifecycle.job_progress(job_id, Progress(current=at, total=10), JOB_CLASS)


def test_an_unchanged_job_is_answered_without_a_store_read(
    store: FaultyStore, clock: Clock
) -> None:
    verifier = caching_verifier(clock)
    start("job-1")
    assert current(ask(verifier, "job-1")) == 1
    reads = store.reads
    for _ in range(5):
        clock.now += STALENESS / 2
        assert current(ask(verifier, "job-1")) == 1
    assert store.reads == reads


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_write_shows_once_the_staleness_bound_passes(
    backend: str, clock: Clock, tmp_path: Path
) -> None:
    if backend == "sqlite":
        config.configure(store=f"sqlite:///{tmp_path / 'jobs.sqlite3'}", progress_interval=0)
    else:
        config.configure(store="memory://", progress_interval=0)
    verifier = caching_verifier(clock)
    start("job-1")
    assert current(ask(verifier, "job-1")) == 1
    lifecycle.job_progress("job-1", Progress(current=2, total=10), JOB_CLASS)
    assert current(ask(verifier, "job-1")) == 1  # within the bound: may lag the write
    clock.now += STALENESS + 0.001
    assert current(ask(verifier, "job-1")) == 2  # past it: never
    lifecycle.job_finished("job-1", JOB_CLASS)
    clock.now += STALENESS + 0.001
    finished = ask(verifier, "job-1")
    assert (finished["status"], finished["completed"]) == ("finished", True)


class SilentStore(FaultyStore):
    """A store that names no change: what a change without a write looks like to a reader."""

    def changes_since(self, cursor: int | None) -> Changes:
        return 1, frozenset()


def test_a_kept_status_is_read_again_after_max_age(clock: Clock) -> None:
    store = SilentStore()
    config.configure(store=store, progress_interval=0)
    verifier = caching_verifier(clock, max_age=1.0)
    start("job-1")
    assert current(ask(verifier, "job-1")) == 1
    lifecycle.job_progress("job-1", Progress(current=2, total=10), JOB_CLASS)
    clock.now += 0.9
    assert current(ask(verifier, "job-1")) == 1
    clock.now += 0.2
    assert current(ask(verifier, "job-1")) == 2


def test_a_store_that_cannot_name_its_changes_forgets_everything(
    store: FaultyStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = caching_verifier(clock)
    start("job-1")
    ask(verifier, "job-1")
    lifecycle.job_progress("job-1", Progress(current=2, total=10), JOB_CLASS)
    monkeypatch.setattr(store, "changes_since", lambda cursor: (0, None))
    clock.now += STALENESS + 0.001
    assert current(ask(verifier, "job-1")) == 2


def test_the_token_is_checked_before_a_kept_answer(store: FaultyStore, clock: Clock) -> None:
    verifier = caching_verifier(clock)
    start("job-1")
    ask(verifier, "job-1")
    assert verifier.verify("job-1", JOB_CLASS, None).status == 404
    other = verifier.token_for("job-1", JOB_CLASS, subject="alice")
    assert verifier.verify("job-1", JOB_CLASS, other, subject="bob").status == 404
    assert verifier.verify("job-1", JOB_CLASS, other, subject="alice").status == 200


def test_a_status_is_kept_for_its_job_class_only(store: FaultyStore, clock: Clock) -> None:
    recent = RecentStatuses(STALENESS, clock=clock)
    start("job-1")
    status, ticket = recent.lookup("job-1", JOB_CLASS)
    assert status is None
    found = immortus.status("job-1", JOB_CLASS)
    recent.keep(ticket, "job-1", JOB_CLASS, found)
    assert recent.lookup("job-1", JOB_CLASS)[0] is found
    assert recent.lookup("job-1", "reports.other")[0] is None
    assert recent.lookup("job-2", JOB_CLASS)[0] is None


def test_a_read_older_than_a_check_is_not_kept(store: FaultyStore, clock: Clock) -> None:
    recent = RecentStatuses(STALENESS, clock=clock)
    start("job-1")
    _, ticket = recent.lookup("job-1", JOB_CLASS)
    read_before = immortus.status("job-1", JOB_CLASS)
    lifecycle.job_progress("job-1", Progress(current=2, total=10), JOB_CLASS)
    clock.now += STALENESS + 0.001
    assert recent.lookup("job-1", JOB_CLASS)[0] is None  # this check saw the write
    recent.keep(ticket, "job-1", JOB_CLASS, read_before)  # a read from before that check
    assert recent.lookup("job-1", JOB_CLASS)[0] is None


def test_the_kept_statuses_are_bounded(store: FaultyStore, clock: Clock) -> None:
    recent = RecentStatuses(STALENESS, clock=clock, max_jobs=2)
    for number in range(3):
        job_id = f"job-{number}"
        start(job_id)
        _, ticket = recent.lookup(job_id, JOB_CLASS)
        recent.keep(ticket, job_id, JOB_CLASS, immortus.status(job_id, JOB_CLASS))
    assert recent.lookup("job-0", JOB_CLASS)[0] is None
    assert recent.lookup("job-2", JOB_CLASS)[0] is not None


def test_averify_follows_the_same_bound(store: FaultyStore, clock: Clock) -> None:
    verifier = caching_verifier(clock)
    start("job-1")
    token = verifier.token_for("job-1", JOB_CLASS)

    async def progress_seen() -> list[object]:
        seen = []
        for step in (2, 3):
            seen.append(
                current(json.loads((await verifier.averify("job-1", JOB_CLASS, token)).content()))
            )
            lifecycle.job_progress("job-1", Progress(current=step, total=10), JOB_CLASS)
            clock.now += STALENESS + 0.001
        seen.append(
            current(json.loads((await verifier.averify("job-1", JOB_CLASS, token)).content()))
        )
        return seen

    assert asyncio.run(progress_seen()) == [1, 2, 3]


@pytest.mark.parametrize("staleness", [0, -1, float("nan"), float("inf")])
def test_an_unusable_staleness_is_refused(staleness: float) -> None:
    with pytest.raises(ValueError, match="staleness"):
        Verifier(secret_key=SECRET, answer_staleness=staleness)


def test_the_setting_reaches_the_default_verifier() -> None:
    immortus.configure(secret_key=SECRET, answer_staleness=0.5)
    verifier = Verifier.from_config()
    assert verifier.recent is not None
    assert verifier.recent.staleness == 0.5
    immortus.configure(answer_staleness=None)
    assert Verifier.from_config().recent is None


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "1", True])
def test_the_setting_is_a_positive_number_of_seconds(bad: object) -> None:
    with pytest.raises(immortus.ConfigurationError, match="answer_staleness"):
        immortus.configure(answer_staleness=bad)
