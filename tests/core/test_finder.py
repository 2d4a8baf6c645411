from __future__ import annotations

import asyncio
import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest

import immortus
from immortus import (
    JobStatus,
    State,
    StoreStrategy,
    TrackingStrategy,
    finder,
    lifecycle,
    query,
    registry,
    runtime,
)
from immortus.exceptions import (
    ConfigurationError,
    InvalidJobClass,
    InvalidStrategy,
    StrategyNotFound,
    UntrackedJobClass,
)


class Named(TrackingStrategy):
    def __init__(self, name: str = "default") -> None:
        self.name = name

    def status(self, job_id: str) -> JobStatus:
        return JobStatus(job_id=job_id, state=State.CREATED, meta={"by": self.name})


def test_resolution_order_inline_then_global_then_inferred() -> None:
    immortus.configure(store="memory://")

    @immortus.track(name="jobs.inline", strategy=Named("inline"))
    def inline() -> None: ...

    @immortus.track(name="jobs.plain")
    def plain() -> None: ...

    assert isinstance(immortus.find_strategy("jobs.plain"), StoreStrategy)  # inferred
    assert isinstance(immortus.find_strategy(None), StoreStrategy)
    immortus.configure(strategy=Named("global"))
    assert immortus.status("j", "jobs.plain").meta == {"by": "global"}
    assert immortus.status("j", "jobs.inline").meta == {"by": "inline"}
    assert immortus.status("j").meta == {"by": "global"}


def test_inferred_from_the_queue_the_job_declares() -> None:
    immortus.register_strategy("somequeue", Named("queue"))

    @immortus.track(name="jobs.queued", queue="somequeue")
    def queued() -> None: ...

    assert immortus.status("j", "jobs.queued").meta == {"by": "queue"}


def test_nothing_found_lists_every_step_tried() -> None:
    immortus.configure(store=None)

    @immortus.track(name="jobs.orphan")
    def orphan() -> None: ...

    with pytest.raises(StrategyNotFound) as caught:
        immortus.find_strategy("jobs.orphan")
    message = str(caught.value)
    assert "job class 'jobs.orphan'" in message
    assert "inline: 'jobs.orphan' declares no strategy" in message
    assert "global: no strategy configured" in message
    assert "store tracking is disabled" in message
    assert len(caught.value.tried) == 3


def test_names_resolve_through_registry_builtins_and_import_paths() -> None:
    immortus.register_strategy("mine", Named)
    assert isinstance(immortus.resolve_strategy("mine"), Named)
    assert isinstance(immortus.resolve_strategy("store"), StoreStrategy)
    assert isinstance(immortus.resolve_strategy("tests.core.test_finder:Named"), Named)
    assert isinstance(immortus.resolve_strategy("tests.core.test_finder.Named"), Named)
    immortus.register_strategy("alias", "tests.core.test_finder:Named")
    assert isinstance(immortus.resolve_strategy("alias"), Named)
    instance = Named("x")
    assert immortus.resolve_strategy(instance) is instance
    assert immortus.resolve_strategy("mine") is immortus.resolve_strategy("mine")  # cached


def test_immortus_s_own_strategies_are_entry_points_like_anyone_s() -> None:
    from importlib.metadata import entry_points

    own = {point.name for point in entry_points(group="immortus.strategies")}
    assert own >= {"store", "celery", "rq", "huey", "dramatiq", "django_tasks", "sidekiq"}
    assert type(immortus.resolve_strategy("huey").hook_target).__name__ == "StoreStrategy"


def test_unresolvable_names_say_what_was_tried() -> None:
    with pytest.raises(StrategyNotFound) as caught:
        immortus.resolve_strategy("nosuch")
    assert [place.split(":")[0] for place in caught.value.tried] == [
        "registered strategies",
        "entry points in group 'immortus.strategies'",
        "import path",
    ]
    with pytest.raises(StrategyNotFound, match="No module named 'no_such_module'") as imported:
        immortus.resolve_strategy("no_such_module:Thing")
    assert isinstance(imported.value.__cause__, ImportError)
    with pytest.raises(StrategyNotFound, match="has no attribute 'Missing'"):
        immortus.resolve_strategy("tests.core.test_finder:Missing")


def test_entry_points_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "plugin_strategy.py").write_text(
        textwrap.dedent(
            """
            from immortus import JobStatus, State, TrackingStrategy

            class PluginStrategy(TrackingStrategy):
                def status(self, job_id):
                    return JobStatus(job_id=job_id, state=State.FINISHED, meta={"by": "plugin"})
            """
        )
    )
    dist = tmp_path / "immortus_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: immortus-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[immortus.strategies]\nplugin = plugin_strategy:PluginStrategy\n"
        "broken = no_such_plugin_module:X\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    immortus.configure(strategy="plugin")
    assert immortus.status("j").to_dict()["by"] == "plugin"
    with pytest.raises(StrategyNotFound, match="no_such_plugin_module"):
        immortus.resolve_strategy("broken")


def test_registering_and_configuring_empty_the_caches() -> None:
    immortus.register_strategy("swap", Named("first"))
    immortus.configure(strategy="swap")
    assert immortus.status("j").meta == {"by": "first"}
    immortus.register_strategy("swap", Named("second"))
    assert immortus.status("j").meta == {"by": "second"}


def test_names_from_outside_never_grow_the_cache() -> None:
    immortus.configure(store="memory://")
    for index in range(50):
        with pytest.raises(UntrackedJobClass):
            immortus.find_strategy(f"random.name{index}")
    assert len(runtime.part(finder.Strategies).by_job_class) == 0
    immortus.configure(strategy=Named("global"))
    for index in range(50):
        immortus.find_strategy(f"random.name{index}")
    assert len(runtime.part(finder.Strategies).by_job_class) == 1


# -- one rule for every surface -----------------------------------------------------------------


def test_under_a_global_strategy_an_untracked_class_is_answered_by_it_everywhere() -> None:
    immortus.configure(store="memory://", strategy=Named("global"))
    assert immortus.status("j", "FailJob").meta == {"by": "global"}
    assert immortus.status("j", "FailJob").job_class == "FailJob"  # the class asked about
    assert [s.meta for s in immortus.status_many([("j", "FailJob"), ("k", None)])] == [
        {"by": "global"},
        {"by": "global"},
    ]
    [settled] = query.settle_many([("j", "FailJob")])
    assert isinstance(settled, JobStatus)
    assert (settled.meta, settled.job_class) == ({"by": "global"}, "FailJob")
    assert asyncio.run(immortus.astatus("j", "FailJob")).meta == {"by": "global"}


def test_without_one_an_untracked_class_is_untracked_everywhere() -> None:
    immortus.configure(store="memory://")
    with pytest.raises(UntrackedJobClass) as caught:
        immortus.status("j", "FailJob")
    assert caught.value.tried == (
        "inline: 'FailJob' is not a tracked job (see @immortus.track, and immortus.declare for "
        "a job with no Python function)",
        "global: no strategy configured (immortus.configure(strategy=...))",
        "inferred: 'FailJob' is not tracked: no queue or store answers for it",
    )
    assert isinstance(caught.value, StrategyNotFound)
    with pytest.raises(UntrackedJobClass):
        immortus.status_many([("k", None), ("j", "FailJob")])
    with pytest.raises(UntrackedJobClass):
        asyncio.run(immortus.astatus("j", "FailJob"))
    known, untracked = query.settle_many([("k", None), ("j", "FailJob")])
    assert isinstance(known, JobStatus)
    assert known.state is State.UNKNOWN
    assert isinstance(untracked, UntrackedJobClass)
    immortus.configure(store=None)
    with pytest.raises(UntrackedJobClass):
        immortus.status("j", "FailJob")


def test_events_of_an_untracked_class_are_kept_as_of_no_class_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    immortus.configure(store="memory://")
    with caplog.at_level(logging.WARNING, logger="immortus"):
        assert lifecycle.job_enqueued("j", "FailJob")
        assert lifecycle.job_started("j", "FailJob")
    assert immortus.status("j").state is State.STARTED
    with pytest.raises(UntrackedJobClass):
        immortus.status("j", "FailJob")
    [warning] = [record.getMessage() for record in caplog.records]
    assert "job class 'FailJob' is not tracked" in warning
    assert "immortus.declare" in warning


# -- declaring a job with no Python function ----------------------------------------------------


def test_declare_tracks_a_foreign_job_by_name() -> None:
    immortus.register_strategy("railsqueue", Named("rails"))
    declared = immortus.declare("ReportJob", queue="railsqueue")
    assert (declared.job_class, declared.queue, declared.function) == (
        "ReportJob",
        "railsqueue",
        None,
    )
    assert immortus.declare("ReportJob", queue="railsqueue") is declared  # idempotent
    assert immortus.status("r1", "ReportJob").meta == {"by": "rails"}
    assert registry.lookup("ReportJob") is declared
    immortus.declare("MailJob", strategy=Named("inline"))
    assert immortus.status("m1", "MailJob").meta == {"by": "inline"}


def test_declaring_a_tracked_function_again_by_name_keeps_it() -> None:
    @immortus.track(name="jobs.both", queue="huey")
    def both() -> None: ...

    kept = immortus.declare("jobs.both", queue="huey")
    assert kept.function is both
    with pytest.raises(ConfigurationError, match="already tracked"):
        immortus.declare("jobs.both", queue="rq")


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"job_class": "has space"}, InvalidJobClass, "job class"),
        ({"job_class": "ReportJob", "queue": ""}, ConfigurationError, "queue must be the name"),
        ({"job_class": "ReportJob", "queue": 3}, ConfigurationError, "queue must be the name"),
        ({"job_class": "ReportJob", "strategy": object()}, InvalidStrategy, "neither"),
    ],
)
def test_declare_refuses_what_could_never_work(
    arguments: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        immortus.declare(**arguments)
    assert registry.lookup("ReportJob") is None


def test_a_declared_name_that_resolves_to_nothing_says_so_at_first_use() -> None:
    immortus.declare("ReportJob", queue="delayed_jobs")  # a typo: names may be registered later
    with pytest.raises(StrategyNotFound) as caught:
        immortus.status("r1", "ReportJob")
    assert caught.value.subject == "job class 'ReportJob'"
    assert "'ReportJob' declares queue 'delayed_jobs', which names no strategy" in str(caught.value)
    assert "no 'delayed_jobs' (installed, immortus's own among them:" in str(caught.value)
    assert "delayed_job, django_tasks, dramatiq, huey" in str(caught.value)  # the typo shows


def test_track_given_a_name_points_to_declare() -> None:
    with pytest.raises(ConfigurationError, match=r"immortus\.declare\('ReportJob', queue=\.\.\.\)"):
        immortus.track("ReportJob", queue="delayed_job")  # type: ignore[call-overload]
    assert registry.lookup("ReportJob") is None
